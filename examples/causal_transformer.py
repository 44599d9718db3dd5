"""A small causal spatio-temporal transformer (ViV1T-like), exported and streamed by window.

Written from the description of factorised video transformers such as ViV1T: each
frame is cut into patches and a spatial transformer layer mixes them; the pooled frame
tokens then go through temporal self-attention with a causal mask. Here the temporal
mask is *banded*: a frame attends to itself and the ``ATTEND - 1`` frames before it,
and a causal depthwise convolution gives the tokens their order (no absolute position
embedding, which would tie a response to its position in the clip). Its receptive
field is therefore finite: 3 frames from the convolution plus ``ATTEND - 1`` per
temporal layer, declared as ``window_frames`` with ``causal=True`` (both checked), and
the server streams it by window with no latency.

Run: ``python examples/causal_transformer.py`` (untrained weights).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from harness import Served, report, run_example
from torch import nn

from sensorium_export import export_model

MOUSE = "dynamic29234-6-9-Video-8744edeac3b4d1ce16b680916b5267ce"
NEURONS = 50
ATTEND = 4  # frames each temporal attention sees (itself included)
TEMPORAL_LAYERS = 2
CONV = 3  # causal depthwise convolution over time
WINDOW = CONV + TEMPORAL_LAYERS * (ATTEND - 1)


class TemporalLayer(nn.Module):
    """Pre-norm self-attention over frames under a banded causal mask, then an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D) -> (B, T, D)."""
        t = x.shape[1]
        index = torch.arange(t, device=x.device)
        lag = index[:, None] - index[None, :]  # query minus key
        blocked = (lag < 0) | (lag >= ATTEND)  # no future, nothing older than the band
        y = self.norm1(x)
        x = x + self.attention(y, y, y, attn_mask=blocked, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class CausalTransformer(nn.Module):
    """Raw inputs -> responses (B, T, N); causal, window ``WINDOW`` frames."""

    centre: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int = 32, heads: int = 4, patch: int = 6) -> None:
        super().__init__()
        self.patches = nn.Conv2d(1, dim, patch, stride=patch)  # 36 x 64 -> 6 x 10 tokens
        self.spatial = nn.TransformerEncoderLayer(
            dim, heads, 2 * dim, batch_first=True, dropout=0.0
        )
        self.behavior = nn.Linear(4, dim)
        self.order = nn.Conv1d(dim, dim, CONV, groups=dim)  # causal: padded on the left
        self.temporal = nn.ModuleList(TemporalLayer(dim, heads) for _ in range(TEMPORAL_LAYERS))
        self.readout = nn.Linear(dim, NEURONS)
        self.register_buffer("centre", torch.tensor([20.0, 5.0, 160.0, 110.0]))
        self.register_buffer("scale", torch.tensor([5.0, 5.0, 10.0, 10.0]))

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil: torch.Tensor
    ) -> torch.Tensor:
        """Raw inputs -> responses (B, T, N)."""
        b, t, h, w = video.shape
        frames = (video.reshape(b * t, 1, h, w) / 255.0) - 0.5
        tokens = self.patches(frames).flatten(2).transpose(1, 2)  # (B T, P, D)
        tokens = self.spatial(tokens).mean(dim=1).reshape(b, t, -1)  # one token per frame
        extra = (torch.cat([behavior, pupil], -1) - self.centre) / self.scale
        x = tokens + self.behavior(extra)
        x = x + self.order(nn.functional.pad(x.transpose(1, 2), (CONV - 1, 0))).transpose(1, 2)
        for layer in self.temporal:
            x = layer(x)
        return nn.functional.softplus(self.readout(x))


def export(repository: Path) -> Served:
    """Export with causal=True and its window (both checked)."""
    torch.manual_seed(0)
    module = CausalTransformer().eval()
    target, results = export_model(
        module,
        repository,
        "transformer",
        MOUSE,
        list(range(1, NEURONS + 1)),
        causal=True,
        window_frames=WINDOW,
    )
    report(target, results)
    return {("transformer", MOUSE): module}


def main(argv: list[str] | None = None) -> int:
    """Export, serve, and check Predict and a window stream against torch."""
    return run_example(
        __doc__ or "",
        export,
        f"ok: Predict and the window stream ({WINDOW} frames) equal the torch module",
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
