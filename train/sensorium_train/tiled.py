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

# Tile size and neurons per entry of each order, chosen on the default model (8,000
# neurons, an 18 x 32 map). Windows, one frame per step: 1 x 1 tiles of at most 16
# neurons make a step 0.91 to 0.99 of its time with 2 x 2 tiles of 32, median about
# 0.93 (ten pairs of step graphs interleaved in one process, 1,300 steps each; 9 pixels
# per window instead of 16, and a neuron needs 4 of them). Taps, whole clips: 2 x 2
# tiles of 32 hold 232 MB alive on a 300-frame clip against 273 MB with 1 x 1 tiles of 16.
SHAPES = {"windows": (1, 16), "taps": (2, 32)}
OFF = 1 << 40  # a window pixel's row index beyond the map: any sum with it clamps to the zero row


class TiledReadout(nn.Module):
    """A :class:`GaussianReadout` (evaluation mode) as tiled matrix products."""

    origins: torch.Tensor
    lowest: torch.Tensor
    x_rows: torch.Tensor
    y_rows: torch.Tensor
    first: torch.Tensor
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
        tile: int | None = None,
        group: int | None = None,
    ) -> None:
        """Group ``readout``'s neurons for feature maps of ``frame_shape`` (H, W).

        ``max_shift`` bounds the shifter's output in grid units (|shift| <= it); larger
        shifts are clamped to it. ``tile`` and ``group`` default to the order's
        :data:`SHAPES`.
        """
        super().__init__()
        if order not in SHAPES:
            raise ValueError(f"order must be 'windows' or 'taps', not {order!r}")
        default_tile, default_group = SHAPES[order]
        tile = default_tile if tile is None else tile
        group = default_group if group is None else group
        self.order, self.tile, self.group = order, tile, group
        self.height, self.width = frame_shape
        self.max_shift = float(max_shift)
        size = np.array([self.width, self.height], dtype=np.float64)  # x, y
        limit = 1.1 + self.max_shift  # beyond it a neuron reads zeros at any shift
        mu = readout.mu.detach().double().numpy().clip(-limit, limit)
        position = ((mu + 1) * size - 1) / 2  # pixel coordinates of grid_sample
        origin = np.floor(np.floor(position) / tile).astype(np.int64) * tile
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
        weights = torch.zeros(len(entries), features.shape[1], group)
        slots = np.zeros(len(mu), dtype=np.int64)
        for e, (_, _, members) in enumerate(entries):
            weights[e, :, : len(members)] = features[torch.from_numpy(members)].t()
            slots[members] = e * group + np.arange(len(members))
        self.entries = len(entries)
        self.register_buffer(
            "origins", torch.tensor([[e[0] for e in entries], [e[1] for e in entries]])
        )
        self.register_buffer("weights", weights)
        self.register_buffer("slots", torch.from_numpy(slots))
        # Where a neuron's window pixels start in one frame's products (E, S², G).
        start = (slots // group) * span * span * group + slots % group
        self.register_buffer("first", torch.from_numpy(start))
        # Position within the neuron's window before the shift, (2, N) as x, y.
        self.register_buffer("local", torch.from_numpy((position - origin).T.copy()).float())
        self._index_tables(span)
        self.register_buffer("bias", readout.bias.detach().float().clone())

    def _index_tables(self, span: int) -> None:
        """Window pixels' columns and rows for every whole-pixel shift, looked up per frame.

        ``x_rows[k, e, j]`` is the map column of pixel j of entry e's window moved by the
        k-th whole shift in x (``lowest`` is the first), ``y_rows`` the row times the
        width; a pixel off the map holds ``OFF``, so that a sum with one off the map
        is at least ``OFF`` and clamps to the zero row. Looking up two small tables
        replaces per-frame comparisons, masks and selections (10 graph nodes fewer, a
        step about 0.93 of its time; ``_by_windows``). One shift beyond each end is
        listed too, against float rounding of the largest shift.
        """
        half = np.array([self.width / 2, self.height / 2])
        lowest = np.floor(-self.max_shift * half).astype(np.int64) - 1
        highest = np.floor(self.max_shift * half).astype(np.int64) + 1
        taps = np.arange(span)
        tables = []
        for axis, size, scale in ((0, self.width, 1), (1, self.height, self.width)):
            moves = np.arange(lowest[axis], highest[axis] + 1)
            at = self.origins[axis].numpy()[None, :, None] + moves[:, None, None] + taps
            tables.append(np.where((at >= 0) & (at < size), at * scale, OFF))
        self.register_buffer("lowest", torch.from_numpy(lowest))
        self.register_buffer("x_rows", torch.from_numpy(tables[0]))
        self.register_buffer("y_rows", torch.from_numpy(tables[1]))

    def _within(
        self, shift: torch.Tensor, frames_last: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shift (M, 2) -> whole-pixel shift (M, 2) and positions in the windows.

        Positions are axis-major, (2, M, N) as x, y (``frames_last``: (2, N, M)),
        each in [0, tile + 1): neuron vectors stay contiguous, which elementwise
        kernels run fastest on.
        """
        half = torch.tensor([self.width / 2, self.height / 2], dtype=shift.dtype)
        pixels = shift.clamp(-self.max_shift, self.max_shift) * half
        whole = torch.floor(pixels)
        fraction = (pixels - whole).t()  # (2, M)
        if frames_last:
            return whole.long(), self.local[:, :, None] + fraction[:, None, :]
        return whole.long(), self.local[:, None, :] + fraction[:, :, None]

    def _pixels(
        self, features: torch.Tensor, whole: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixel rows, the row of every window pixel, and whether it lies on the map.

        Features (B, C, T, H, W) become rows (B * T * H * W, C) (one copy); window
        pixels are (M, E, S, S). A pixel off the map reads row 0, and ``inside`` (1.0
        or 0.0) is there to zero its products (many frames: no second copy of the rows
        with a zero row in it, as ``_by_windows`` makes for a few).
        """
        b, c, t = features.shape[:3]
        pixels = self.height * self.width
        rows = features.permute(0, 2, 3, 4, 1).reshape(-1, c)
        taps = torch.arange(self.tile + 2)
        x = self.origins[0][None, :, None] + whole[:, 0, None, None] + taps  # (M, E, S)
        y = self.origins[1][None, :, None] + whole[:, 1, None, None] + taps
        inside_y = (y >= 0) & (y < self.height)
        inside_x = (x >= 0) & (x < self.width)
        inside = inside_y[..., :, None] & inside_x[..., None, :]
        index = y[..., :, None] * self.width + x[..., None, :]
        index = index + (torch.arange(b * t) * pixels)[:, None, None, None]
        return rows, torch.where(inside, index, 0), inside.to(features.dtype)

    def _by_windows(self, features: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        m, span, group = shift.shape[0], self.tile + 2, self.group
        whole, within = self._within(shift)
        # Rows (frame, pixel) with a zero row closing each frame, which pixels off the map
        # read; window pixels from the tables (M, E, S, S).
        pixels, channels = self.height * self.width, features.shape[1]
        rows = features.permute(0, 2, 3, 4, 1).reshape(m, pixels, channels)
        rows = torch.cat([rows, rows.new_zeros(m, 1, channels)], dim=1).reshape(-1, channels)
        moved = whole - self.lowest
        x = self.x_rows.index_select(0, moved[:, 0])
        y = self.y_rows.index_select(0, moved[:, 1])
        index = torch.clamp(y[..., :, None] + x[..., None, :], max=pixels)
        index = index + (torch.arange(m) * (pixels + 1))[:, None, None, None]
        gathered = rows.index_select(0, index.flatten()).reshape(m, self.entries, span * span, -1)
        products = (gathered @ self.weights).reshape(m, -1)  # (M, E * S² * G)
        corner = torch.floor(within).clamp(max=self.tile)  # (2, M, N)
        fraction = within - corner
        first = self.first[None] + (corner[1] * span + corner[0]).long() * group
        step = span * group
        pick = torch.cat([first, first + group, first + step, first + step + group], dim=1)
        v00, v01, v10, v11 = products.gather(1, pick).chunk(4, dim=1)  # (M, N) each
        fx, fy = fraction[0], fraction[1]
        top = v00 + fx * (v01 - v00)
        bottom = v10 + fx * (v11 - v10)
        return top + fy * (bottom - top)

    def _by_taps(self, features: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        m, span = shift.shape[0], self.tile + 2
        whole, within = self._within(shift, frames_last=True)  # (2, N, M)
        rows, index, inside = self._pixels(features, whole)
        index = index.permute(1, 2, 3, 0)  # (E, S, S, M): frames as columns
        inside = inside.permute(1, 2, 3, 0).unsqueeze(3)  # (E, S, S, 1, M)
        # The sum takes each tap's term one tap late, once the next term exists. Added at
        # once, the terms need not wait for the sum, and ONNX Runtime (1.32) ordered all
        # 16 terms (frames x neurons each) before the first addition: +73 MB live on a
        # 300-frame clip. One tap late, each addition comes after the next term in the
        # graph, which ONNX Runtime's order follows (it runs the later-made input of a
        # node first): two terms alive at most (tests/export/test_clip_memory.py).
        drive: torch.Tensor | None = None
        late: torch.Tensor | None = None
        for i in range(span):
            ky = torch.relu(1 - (within[1] - i).abs())  # (N, M): kernels one tap at a time,
            for j in range(span):  # so that memory holds a few frames x neurons at most
                kx = torch.relu(1 - (within[0] - j).abs())
                pixel = rows.index_select(0, index[:, i, j].flatten()).reshape(self.entries, m, -1)
                products = (pixel @ self.weights).transpose(1, 2) * inside[:, i, j]  # (E,G,M)
                values = products.reshape(-1, m).index_select(0, self.slots)  # (N, M)
                term = values * (ky * kx)  # made before the addition of the one before it
                if late is not None:
                    drive = late if drive is None else drive + late
                late = term
        assert drive is not None  # span >= 3: several taps
        assert late is not None
        return (drive + late).t()

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
        b, t = shift.shape[:2]
        flat = shift.reshape(b * t, 2)
        by_order = self._by_windows if self.order == "windows" else self._by_taps
        drive = by_order(features, flat).reshape(b, t, -1)
        if gain is not None:
            drive = drive * gain
        return drive + self.bias
