"""A DwiseNeuro-style model (not causal) exported and served, clip by clip and by window.

Written from the published description of the Sensorium 2023 winner: video, the two
behaviour values and the two pupil-centre values stacked as 5 input channels, frames
zero-padded to 64 x 64, depthwise-separable 3D convolutions with *symmetric* temporal
padding (each response sees frames before and after it), one readout per mouse.
(The winner also predicts 16-frame windows and averages overlapping windows; that is
an inference procedure over whole clips, which ``Predict`` serves as it is.)

A model that is not causal can still stream: the response at frame t needs frames up
to t + L, so a window stream answers frame t - L when frame t arrives. Here three
blocks with temporal kernel 3 and dilations 1, 2, 4 reach 7 frames each way: latency 7
frames (233 ms at 30 Hz), window 15. Both are declared and checked at export.

Run: ``python examples/dwiseneuro_style.py`` (untrained weights).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from harness import Served, report, run_example
from torch import nn

from sensorium_export import export_model

MOUSE = "dynamic29515-10-12-Video-9b4f6a1a067fe51e15306b9628efea20"
NEURONS = 80
DILATIONS = (1, 2, 4)  # temporal kernel 3: reach 1 + 2 + 4 = 7 frames each way
LATENCY = sum(DILATIONS)
WINDOW = 2 * LATENCY + 1


class DepthwiseBlock(nn.Module):
    """Depthwise 3D convolution (symmetric in time), pointwise mixing, residual."""

    def __init__(self, channels: int, dilation: int, stride: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv3d(
            channels,
            channels,
            3,
            stride=(1, stride, stride),
            padding=(dilation, 1, 1),
            dilation=(dilation, 1, 1),
            groups=channels,
        )
        self.pointwise = nn.Conv3d(channels, channels, 1)
        self.norm = nn.BatchNorm3d(channels)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T, H / stride, W / stride)."""
        y = self.pointwise(nn.functional.silu(self.norm(self.depthwise(x))))
        skip = x[..., :: self.stride, :: self.stride]
        return skip + y


class DwiseStyle(nn.Module):
    """Raw inputs -> responses (B, T, N), not causal (latency ``LATENCY`` frames)."""

    behavior_mean: torch.Tensor
    pupil_mean: torch.Tensor

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv3d(5, channels, (1, 3, 3), padding=(0, 1, 1))
        self.blocks = nn.Sequential(*(DepthwiseBlock(channels, d, 2) for d in DILATIONS))
        self.readout = nn.Linear(channels, NEURONS)  # one readout per mouse
        self.register_buffer("behavior_mean", torch.tensor([20.0, 5.0]))
        self.register_buffer("pupil_mean", torch.tensor([160.0, 110.0]))

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil: torch.Tensor
    ) -> torch.Tensor:
        """Raw inputs -> responses (B, T, N)."""
        h, w = video.shape[2:]
        frames = nn.functional.pad(
            video / 255.0, (0, 64 - w, (64 - h) // 2, 64 - h - (64 - h) // 2)
        )
        extra = torch.cat([behavior / self.behavior_mean, (pupil - self.pupil_mean) / 10], -1)
        planes = extra[:, :, :, None, None].expand(-1, -1, -1, 64, 64)  # (B, T, 4, 64, 64)
        x = torch.cat([frames[:, :, None], planes], dim=2).transpose(1, 2)  # (B, 5, T, 64, 64)
        x = self.blocks(self.stem(x))
        pooled = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, T, C)
        return nn.functional.softplus(self.readout(pooled))


def export(repository: Path) -> Served:
    """Export with its latency and window declared (both checked)."""
    torch.manual_seed(0)
    module = DwiseStyle().eval()
    target, results = export_model(
        module,
        repository,
        "dwiseneuro",
        MOUSE,
        list(range(1, NEURONS + 1)),
        window_frames=WINDOW,
        latency_frames=LATENCY,
        input_defaults={"behavior": [20.0, 5.0], "pupil_center": [160.0, 110.0]},
    )
    report(target, results)
    return {("dwiseneuro", MOUSE): module}


def main(argv: list[str] | None = None) -> int:
    """Export, serve, and check Predict and a window stream against torch."""
    return run_example(
        __doc__ or "",
        export,
        f"ok: Predict equals torch; the window stream answers {LATENCY} frames late, exactly",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
