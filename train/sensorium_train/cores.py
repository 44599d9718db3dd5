"""Cores: the shared feature extractors, causal so that they can stream.

Both cores take normalised input (B, C_in, T, H, W) and return features
(B, C, T, H', W'). ``step`` runs k new frames with explicit state and equals the
whole-clip output; ``initial_state`` gives the zero state of a new trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from sensorium_train.layers import FactorisedBlock, SpatialConv


@dataclass(frozen=True)
class CoreConfig:
    """Hyper-parameters of a core."""

    kind: str = "factorised3d"
    stem_channels: int = 16
    channels: tuple[int, ...] = (32, 24, 32)
    temporal_kernel: int = 5
    dilations: tuple[int, ...] = (1, 2, 4)
    spatial_dilations: tuple[int, ...] = (1, 2, 3)
    input_channels: int = 3
    stack: bool = True  # factorised core: the readout sees every block's output


class Factorised3dCore(nn.Module):
    """Strided stem, then spatial/causal-temporal blocks with growing dilation.

    The stem halves the resolution at once (36 x 64 -> 18 x 32) so that the state
    of the temporal layers stays small; dilations 1, 2, 4 with kernel 5 give a
    temporal receptive field of 29 frames. Spatial dilations 1, 2, 3 on the 3 x 3
    convolutions widen the spatial receptive field to 29 input pixels at no extra
    cost, wide enough for the large receptive fields of mouse V1.

    With ``stack`` the output is every block's output concatenated along channels
    (as the stacked cores of the Sensorium baselines): the readout then also sees
    the undilated first block, which keeps fine spatial detail, and has more
    features per position at no extra cost in the core or its state.
    """

    def __init__(self, config: CoreConfig) -> None:
        """Build the core."""
        super().__init__()
        self.stem = SpatialConv(config.input_channels, config.stem_channels, 5, stride=2)
        self.stem_norm = nn.BatchNorm3d(config.stem_channels)
        blocks = []
        in_channels = config.stem_channels
        layers = zip(config.channels, config.dilations, config.spatial_dilations, strict=True)
        for out, dilation, spatial_dilation in layers:
            blocks.append(
                FactorisedBlock(
                    in_channels, out, 3, config.temporal_kernel, dilation, spatial_dilation
                )
            )
            in_channels = out
        self.blocks = nn.ModuleList(blocks)
        self.stack = config.stack
        self.out_channels = sum(config.channels) if config.stack else in_channels

    def _blocks(self) -> list[FactorisedBlock]:
        return [cast(FactorisedBlock, block) for block in self.blocks]

    def _features(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        """The blocks' outputs stacked along channels, or the last block's alone."""
        return torch.cat(outputs, dim=1) if self.stack else outputs[-1]

    @property
    def receptive_field(self) -> int:
        """Frames of input that one output frame depends on."""
        return 1 + sum(b.temporal.context for b in self._blocks())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, C, T, H/2, W/2)."""
        x = F.elu(self.stem_norm(self.stem(x)))
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return self._features(outputs)

    def initial_state(self, batch: int, height: int, width: int) -> list[torch.Tensor]:
        """Zero state per temporal layer: (B, C, context, H/2, W/2)."""
        h, w = (height + 1) // 2, (width + 1) // 2
        return [
            torch.zeros(batch, b.temporal.in_channels, b.temporal.context, h, w)
            for b in self._blocks()
        ]

    def step(
        self, x: torch.Tensor, state: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """K new frames and the state -> features of those frames and the new state."""
        x = F.elu(self.stem_norm(self.stem(x)))
        outputs, new_state = [], []
        for block, block_state in zip(self._blocks(), state, strict=True):
            x, s = block.step(x, block_state)
            outputs.append(x)
            new_state.append(s)
        return self._features(outputs), new_state


class ConvGRUCell(nn.Module):
    """A convolutional GRU cell over (B, C, H, W) maps."""

    def __init__(self, in_channels: int, hidden: int, kernel: int = 3) -> None:
        """Build the cell."""
        super().__init__()
        pad = kernel // 2
        self.gates = nn.Conv2d(in_channels + hidden, 2 * hidden, kernel, padding=pad)
        self.candidate = nn.Conv2d(in_channels + hidden, hidden, kernel, padding=pad)
        self.hidden = hidden

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One frame: input (B, C, H, W) and hidden (B, C_h, H, W) -> new hidden."""
        update, reset = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * h], 1)))
        return (1 - update) * h + update * candidate


class ConvGRUCore(nn.Module):
    """Per-frame 2D convolutions (strided stem, two layers), then a convolutional GRU."""

    def __init__(self, config: CoreConfig) -> None:
        """Build the core; ``channels[-1]`` is the GRU's hidden size."""
        super().__init__()
        self.stem = SpatialConv(config.input_channels, config.stem_channels, 5, stride=2)
        self.stem_norm = nn.BatchNorm3d(config.stem_channels)
        self.conv = SpatialConv(config.stem_channels, config.channels[0], 3)
        self.conv_norm = nn.BatchNorm3d(config.channels[0])
        self.cell = ConvGRUCell(config.channels[0], config.channels[-1])
        self.out_channels = config.channels[-1]

    @property
    def receptive_field(self) -> int:
        """Unbounded (recurrent); reported as 0."""
        return 0

    def initial_state(self, batch: int, height: int, width: int) -> list[torch.Tensor]:
        """Zero hidden state (B, C_h, 1, H/2, W/2)."""
        return [torch.zeros(batch, self.out_channels, 1, (height + 1) // 2, (width + 1) // 2)]

    def step(
        self, x: torch.Tensor, state: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """K new frames and the hidden state -> features and the new hidden state."""
        x = F.elu(self.stem_norm(self.stem(x)))
        x = F.elu(self.conv_norm(self.conv(x)))
        h = state[0][:, :, 0]
        outputs = []
        for t in range(x.shape[2]):
            h = self.cell(x[:, :, t], h)
            outputs.append(h)
        return torch.stack(outputs, dim=2), [h.unsqueeze(2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, T, H, W) -> (B, C_h, T, H/2, W/2), from a zero state."""
        state = self.initial_state(x.shape[0], x.shape[3], x.shape[4])
        return self.step(x, state)[0]


def build_core(config: CoreConfig) -> Factorised3dCore | ConvGRUCore:
    """The core named by ``config.kind`` ("factorised3d" or "convgru")."""
    if config.kind == "factorised3d":
        return Factorised3dCore(config)
    if config.kind == "convgru":
        return ConvGRUCore(config)
    raise ValueError(f"unknown core {config.kind!r}; expected 'factorised3d' or 'convgru'")
