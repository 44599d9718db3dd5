"""The serving form of the Gaussian readout: tiled matrix products instead of grid sampling.

At serving time every neuron reads the feature map at a fixed position plus one
shift per frame (the shifter's), bilinearly, and weights the channels. Grid sampling
does that one channel and neuron at a time and holds frames x channels x neurons;
here the same sum is regrouped so that matrix products do the channel work:

- neurons are grouped by the ``tile`` x ``tile`` cell of the map their position
  falls in (``group`` neurons at most per entry; a crowded tile takes several);
- a frame's shift in pixels splits into a whole part, which moves every window
  alike, and a fraction below one pixel;
- each entry multiplies its neurons' channel weights (G x C) with the channels of
  its window ((tile + 2)^2 pixels around the tile, moved by the whole part), and
  each neuron keeps the (at most 4) pixels its bilinear kernel touches, weighted
  by ``relu(1 - |position - pixel|)`` per axis.

That is the bilinear sample of every channel weighted and summed, only summed in
another order: outputs match :class:`GaussianReadout` in evaluation mode to float
rounding (about 1e-6 relative). Positions beyond the map plus the largest shift are
clamped, as grid sampling clamps them: they read zeros either way.

Two orders of the same products: ``windows`` (few frames: one product per entry of
windows x weights, all window pixels at once) for the streaming step, ``taps`` (many
frames: one product per window pixel with frames as columns) for whole clips, where
it keeps memory at frames x (entries x channels + neurons) instead of frames x
channels x neurons.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sensorium_train.readouts import GaussianReadout


class TiledReadout(nn.Module):
    """A :class:`GaussianReadout` (evaluation mode) as tiled matrix products."""

    windows: torch.Tensor
    weights: torch.Tensor
    slots: torch.Tensor
    local: torch.Tensor
    bias: torch.Tensor

    def __init__(
        self,
        readout: GaussianReadout,
        frame_shape: tuple[int, int],
        max_shift: float,
        order: str = "windows",
        tile: int = 2,
        group: int = 32,
    ) -> None:
        """Group ``readout``'s neurons for feature maps of ``frame_shape`` (H, W).

        ``max_shift`` bounds the shifter's output in grid units (|shift| <= it); larger
        shifts are clamped to it.
        """
        super().__init__()
        if order not in ("windows", "taps"):
            raise ValueError(f"order must be 'windows' or 'taps', not {order!r}")
        self.order, self.tile, self.group = order, tile, group
        self.height, self.width = frame_shape
        self.max_shift = float(max_shift)
        size = np.array([self.width, self.height], dtype=np.float64)  # x, y
        limit = 1.1 + self.max_shift  # beyond it a neuron reads zeros at any shift
        mu = readout.mu.detach().double().numpy().clip(-limit, limit)
        position = ((mu + 1) * size - 1) / 2  # pixel coordinates of grid_sample
        origin = np.floor(np.floor(position) / tile).astype(np.int64) * tile
        # Whole-pixel shifts lie in [low, high]; pad the map so every window fits.
        low = np.floor(-self.max_shift * size / 2).astype(np.int64)
        high = np.floor(self.max_shift * size / 2).astype(np.int64)
        before = np.maximum(0, -(origin.min(0) + low))
        after = np.maximum(0, origin.max(0) + high + tile + 1 - (size.astype(np.int64) - 1))
        self.pad = (int(before[0]), int(after[0]), int(before[1]), int(after[1]))
        self.padded_width = self.width + self.pad[0] + self.pad[1]
        self.pixels = self.padded_width * (self.height + self.pad[2] + self.pad[3])
        span = tile + 2
        entries: list[tuple[int, int, np.ndarray]] = []
        order_of = np.lexsort((origin[:, 0], origin[:, 1]))
        keys = origin[order_of]
        starts = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
        for members in np.split(order_of, starts):
            ox, oy = origin[members[0]]
            for first in range(0, len(members), group):
                entries.append((int(ox), int(oy), members[first : first + group]))
        features = readout.features.detach().float()
        channels = features.shape[1]
        windows = np.zeros((len(entries), span * span), dtype=np.int64)
        weights = torch.zeros(len(entries), channels, group)
        slots = np.zeros(len(mu), dtype=np.int64)
        offsets = np.arange(span)
        for e, (ox, oy, members) in enumerate(entries):
            rows = oy + self.pad[2] + offsets
            cols = ox + self.pad[0] + offsets
            windows[e] = (rows[:, None] * self.padded_width + cols[None, :]).ravel()
            weights[e, :, : len(members)] = features[torch.from_numpy(members)].t()
            slots[members] = e * group + np.arange(len(members))
        self.entries = len(entries)
        self.register_buffer("windows", torch.from_numpy(windows))
        self.register_buffer("weights", weights)
        self.register_buffer("slots", torch.from_numpy(slots))
        # Position within the neuron's window before the shift, (2, N) as x, y.
        self.register_buffer("local", torch.from_numpy((position - origin).T.copy()).float())
        self.register_buffer("bias", readout.bias.detach().float().clone())

    def _within(self, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shift (M, 2) -> whole-pixel window offset (M,) and positions in the windows.

        Positions are axis-major, (2, M, N) as x, y, each in [0, tile + 1): neuron
        vectors stay contiguous, which elementwise kernels run fastest on.
        """
        half = torch.tensor([self.width / 2, self.height / 2], dtype=shift.dtype)
        pixels = shift.clamp(-self.max_shift, self.max_shift) * half
        whole = torch.floor(pixels)
        within = self.local[:, None, :] + (pixels - whole).t()[:, :, None]
        offset = (whole[:, 1] * self.padded_width + whole[:, 0]).long()
        return offset, within

    def _pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """(M, C, H, W) -> zero-padded pixels as rows (M * pixels, C)."""
        padded = nn.functional.pad(frames, self.pad)
        return padded.flatten(2).transpose(1, 2).reshape(-1, frames.shape[1])

    def _by_windows(self, frames: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        m, span = frames.shape[0], self.tile + 2
        offset, within = self._within(shift)
        start = offset + torch.arange(m) * self.pixels
        gathered = self._pixels(frames)[self.windows[None] + start[:, None, None]]  # (M,E,S²,C)
        products = gathered @ self.weights[None]  # (M, E, S², G)
        # Per frame: slot-major values, S² per slot; each neuron reads its 2 x 2 pixels.
        values = products.transpose(2, 3).reshape(m, -1)
        corner = torch.floor(within).clamp(max=self.tile)  # (2, M, N)
        fraction = within - corner
        first = (self.slots * (span * span))[None] + (corner[1] * span + corner[0]).long()
        index = torch.cat([first, first + 1, first + span, first + span + 1], dim=1)
        v00, v01, v10, v11 = values.gather(1, index).chunk(4, dim=1)  # (M, N) each
        fx, fy = fraction[0], fraction[1]
        top = v00 + fx * (v01 - v00)
        bottom = v10 + fx * (v11 - v10)
        return top + fy * (bottom - top)

    def _by_taps(self, frames: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        m, span = frames.shape[0], self.tile + 2
        offset, within = self._within(shift)
        rows = self._pixels(frames)
        start = offset + torch.arange(m) * self.pixels  # (M,)
        within = within.transpose(1, 2)  # (2, N, M): frames as columns
        taps = torch.arange(span, dtype=within.dtype)[:, None, None]
        kx = torch.relu(1 - (within[0][None] - taps).abs())  # (S, N, M)
        ky = torch.relu(1 - (within[1][None] - taps).abs())
        drive = torch.zeros(len(self.slots), m, dtype=frames.dtype)
        for i in range(span):
            for j in range(span):
                pixel = rows[self.windows[:, i * span + j][:, None] + start[None, :]]  # (E,M,C)
                products = (pixel @ self.weights).transpose(1, 2)  # (E, G, M)
                values = products.reshape(-1, m)[self.slots]  # (N, M)
                drive = drive + values * (ky[i] * kx[j])
        return drive.t()

    def forward(
        self,
        features: torch.Tensor,
        shift: torch.Tensor,
        neurons: torch.Tensor | None = None,
        gain: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Features (B, C, T, H, W) and shift (B, T, 2) -> drive (B, T, N), as the readout's."""
        if neurons is not None:
            raise ValueError("the tiled readout serves every neuron; train with GaussianReadout")
        b, c, t, h, w = features.shape
        frames = features.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        flat = shift.reshape(b * t, 2)
        sampled = (
            self._by_windows(frames, flat)
            if self.order == "windows"
            else (self._by_taps(frames, flat))
        )
        drive = sampled.reshape(b, t, -1)
        if gain is not None:
            drive = drive * gain
        return drive + self.bias
