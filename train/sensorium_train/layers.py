"""Causal building blocks that run on a whole clip or step by step with explicit state.

Feature maps are (B, C, T, H, W). A temporal layer's state is the last ``context``
frames of its input, so stepping k frames costs k frames of work and gives exactly
the whole-clip output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalTemporalConv(nn.Module):
    """Convolution over time only, padded on the past side (kernel k, dilation d)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int) -> None:
        """Build the layer; its context (state length) is ``(kernel - 1) * dilation``."""
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, (kernel, 1, 1), dilation=(dilation, 1, 1))
        self.in_channels = in_channels
        self.context = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C', T, H, W), zeros before the first frame."""
        return self.conv(F.pad(x, (0, 0, 0, 0, self.context, 0)))

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """K new frames (B, C, k, H, W) and state (B, C, context, H, W) -> output, new state."""
        joined = torch.cat([state, x], dim=2)
        return self.conv(joined), joined[:, :, joined.shape[2] - self.context :]


class SpatialConv(nn.Module):
    """A per-frame 2D convolution applied to every frame, as a (1, k, k) Conv3d."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1
    ) -> None:
        """Build a 'same'-padded spatial convolution with the given stride and dilation."""
        super().__init__()
        pad = dilation * (kernel // 2)
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            (1, kernel, kernel),
            stride=(1, stride, stride),
            padding=(0, pad, pad),
            dilation=(1, dilation, dilation),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C', T, H/stride, W/stride)."""
        return self.conv(x)


class FactorisedBlock(nn.Module):
    """Spatial convolution, batch norm, ELU, causal temporal convolution, batch norm, ELU.

    Batch norm keeps gradients alive through the core; in eval mode (export,
    streaming) it is a fixed per-channel affine map, so stepping stays exact.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        temporal_kernel: int,
        dilation: int,
        spatial_dilation: int = 1,
    ) -> None:
        """Build one block of the factorised core."""
        super().__init__()
        self.spatial = SpatialConv(in_channels, out_channels, kernel, dilation=spatial_dilation)
        self.spatial_norm = nn.BatchNorm3d(out_channels)
        self.temporal = CausalTemporalConv(out_channels, out_channels, temporal_kernel, dilation)
        self.temporal_norm = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C', T, H, W)."""
        x = F.elu(self.spatial_norm(self.spatial(x)))
        return F.elu(self.temporal_norm(self.temporal(x)))

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stepped forward: see :meth:`CausalTemporalConv.step`."""
        out, state = self.temporal.step(F.elu(self.spatial_norm(self.spatial(x))), state)
        return F.elu(self.temporal_norm(out)), state
