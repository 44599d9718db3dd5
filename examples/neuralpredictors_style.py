"""A neuralpredictors-style multi-mouse model, wrapped per mouse, exported and served.

The Sensorium 2023 baselines are one module for all mice, called with a data key:
``model(x, data_key=mouse, behavior=..., pupil_center=...)``, where ``x`` (B, C, T, H, W)
holds the normalised video plus behaviour as extra input channels. This one is written
from that description: a factorised 3D core (spatial 3x3 convolutions, then temporal
convolutions with *valid* padding, so the core returns T - (receptive field - 1)
frames), a Gaussian readout per mouse (grid sampling at learned positions) moved by a
shifter on the pupil centre, and an ELU + 1 output.

Serving takes one module per mouse with the raw-input contract; :class:`PerMouse` is
the whole adapter: normalise, stack the channels, pad the start of the clip so that
every frame gets a response (repeating the first frame), call the shared model with
the mouse's data key, and put time before neurons. The core is causal with a finite
receptive field, so the export declares ``causal=True`` and ``window_frames`` (both
checked) and the server streams it by window.

Run: ``python examples/neuralpredictors_style.py`` (untrained weights; load your own
``state_dict`` into ``MultiMouse`` instead).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from harness import Served, report, run_example
from torch import nn

from sensorium_export import MouseModule, export_mice

MICE = {
    "dynamic29156-11-10-Video-8744edeac3b4d1ce16b680916b5267ce": 60,
    "dynamic29623-4-9-Video-9b4f6a1a067fe51e15306b9628efea20": 45,
}
TEMPORAL_KERNELS = (5, 5)  # valid temporal convolutions: receptive field 1 + 4 + 4 = 9 frames


class MultiMouse(nn.Module):
    """Shared factorised 3D core, a Gaussian readout and a shifter per mouse."""

    def __init__(self, neurons: dict[str, int], channels: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3  # video, pupil dilation, running speed
        for kernel in TEMPORAL_KERNELS:
            layers += [
                nn.Conv3d(c_in, channels, (1, 3, 3), padding=(0, 1, 1)),  # spatial
                nn.Conv3d(channels, channels, (kernel, 1, 1)),  # temporal, valid
                nn.ELU(),
            ]
            c_in = channels
        self.core = nn.Sequential(*layers)
        self.positions = nn.ParameterDict(
            {k: nn.Parameter(torch.rand(n, 2) * 1.6 - 0.8) for k, n in neurons.items()}
        )
        self.features = nn.ParameterDict(
            {k: nn.Parameter(torch.randn(n, channels) / channels**0.5) for k, n in neurons.items()}
        )
        self.shifters = nn.ModuleDict(
            {
                k: nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 2), nn.Tanh())
                for k in neurons
            }
        )

    @property
    def receptive_field(self) -> int:
        """Frames one response depends on."""
        return 1 + sum(k - 1 for k in TEMPORAL_KERNELS)

    def forward(
        self, x: torch.Tensor, data_key: str, behavior: torch.Tensor, pupil_center: torch.Tensor
    ) -> torch.Tensor:
        """X (B, C, T, H, W) -> responses (B, N, T - receptive_field + 1)."""
        features = self.core(x)  # (B, C, T', h, w)
        b, c, t, h, w = features.shape
        kept = pupil_center[:, :, -t:].transpose(1, 2)  # the frames the core answers
        shift = self.shifters[data_key](kept) * 0.1  # (B, T', 2)
        grid = self.positions[data_key][None, None] + shift[:, :, None]  # (B, T', N, 2)
        frames = features.transpose(1, 2).reshape(b * t, c, h, w)
        sampled = nn.functional.grid_sample(
            frames, grid.reshape(b * t, 1, -1, 2), align_corners=True
        )  # (B T', C, 1, N)
        sampled = sampled.reshape(b, t, c, -1)
        out = torch.einsum("btcn,nc->bnt", sampled, self.features[data_key])
        return nn.functional.elu(out) + 1


class PerMouse(nn.Module):
    """One mouse of ``MultiMouse`` under the served contract (raw inputs -> (B, T, N))."""

    pupil_mean: torch.Tensor

    def __init__(self, model: MultiMouse, mouse: str, pupil_mean: tuple[float, float]) -> None:
        super().__init__()
        self.model, self.mouse = model, mouse
        self.register_buffer("pupil_mean", torch.tensor(pupil_mean))

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil: torch.Tensor
    ) -> torch.Tensor:
        """Raw inputs -> responses (B, T, N)."""
        pad = self.model.receptive_field - 1
        channels = torch.cat(
            [
                (video[..., None] / 255.0 - 0.5),
                (behavior / 10.0)[:, :, None, None, :].expand(
                    -1, -1, video.shape[2], video.shape[3], -1
                ),
            ],
            dim=-1,
        )  # (B, T, H, W, 3)
        x = channels.permute(0, 4, 1, 2, 3)
        x = torch.cat([x[:, :, :1].expand(-1, -1, pad, -1, -1), x], dim=2)  # repeat frame 0
        centre = (pupil - self.pupil_mean) / 10.0
        centre = torch.cat([centre[:, :1].expand(-1, pad, -1), centre], dim=1).transpose(1, 2)
        out = self.model(x, data_key=self.mouse, behavior=behavior, pupil_center=centre)
        return out.transpose(1, 2)


def export(repository: Path) -> Served:
    """Both mice of one multi-mouse model as one version of ``neuralpredictors``."""
    torch.manual_seed(0)
    model = MultiMouse(MICE).eval()
    wrapped = {mouse: PerMouse(model, mouse, (160.0, 110.0)).eval() for mouse in MICE}
    mice = {
        mouse: MouseModule(
            module,
            list(range(1, MICE[mouse] + 1)),
            {"behavior": [20.0, 5.0], "pupil_center": [160.0, 110.0]},
        )
        for mouse, module in wrapped.items()
    }
    target, results = export_mice(
        mice, repository, "neuralpredictors", causal=True, window_frames=model.receptive_field
    )
    report(target, results)
    return {("neuralpredictors", mouse): module for mouse, module in wrapped.items()}


def main(argv: list[str] | None = None) -> int:
    """Export, serve, and check both mice through the SDK against torch."""
    return run_example(
        __doc__ or "", export, "ok: Predict and window streams equal the torch module", argv
    )


if __name__ == "__main__":
    sys.exit(main())
