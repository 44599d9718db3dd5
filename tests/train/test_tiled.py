"""The tiled readout computes what the Gaussian readout computes, in both orders."""

from __future__ import annotations

import pytest
import torch

from sensorium_train.readouts import GaussianReadout, Shifter
from sensorium_train.tiled import TiledReadout


def _readout(neurons: int = 600, channels: int = 12) -> GaussianReadout:
    torch.manual_seed(0)
    readout = GaussianReadout(neurons, channels).eval()
    with torch.no_grad():
        readout.mu.uniform_(-1.0, 1.0)
        readout.mu[:40] = torch.rand(40, 2) * 5 - 2.5  # beyond the map: zeros or clamped
        readout.mu[40:200] = torch.rand(160, 2) * 0.05  # crowded: several entries per tile
        readout.bias.normal_()
    return readout


def _shifts(batch: int, frames: int) -> torch.Tensor:
    shift = (torch.rand(batch, frames, 2) - 0.5) * 2 * Shifter.bound
    shift[0, :4] = torch.tensor([[0.4999, -0.4999], [-0.5, 0.5], [0.0, 0.0], [0.25, -0.125]])
    return shift


@pytest.mark.parametrize("order", ["windows", "taps"])
@pytest.mark.parametrize(("tile", "group"), [(1, 4), (2, 16), (3, 64)])
def test_tiled_equals_grid_sampling(order: str, tile: int, group: int) -> None:
    readout = _readout()
    features = torch.randn(2, 12, 9, 18, 32)
    shift = _shifts(2, 9)
    gain = torch.rand(2, 9, 600) + 0.5
    tiled = TiledReadout(readout, (18, 32), Shifter.bound, order, tile, group)
    assert tiled.entries > len(set(map(tuple, tiled.origins.t().tolist())))  # split tiles
    with torch.no_grad():
        reference = readout(features, shift, gain=gain)
        drive = tiled(features, shift, gain=gain)
    error = (drive - reference).abs().max() / reference.abs().max()
    assert error < 1e-5, float(error)


def test_shifts_beyond_the_bound_are_clamped_as_the_shifter_never_exceeds_it() -> None:
    readout = _readout()
    features = torch.randn(1, 12, 3, 18, 32)
    tiled = TiledReadout(readout, (18, 32), Shifter.bound, "windows")
    inside = torch.full((1, 3, 2), Shifter.bound)
    with torch.no_grad():
        assert torch.allclose(tiled(features, inside * 3), tiled(features, inside))


def test_refuses_subsets_and_unknown_orders() -> None:
    readout = _readout()
    with pytest.raises(ValueError, match="order"):
        TiledReadout(readout, (18, 32), Shifter.bound, "rows")
    tiled = TiledReadout(readout, (18, 32), Shifter.bound)
    with pytest.raises(ValueError, match="every neuron"):
        tiled(torch.randn(1, 12, 1, 18, 32), torch.zeros(1, 1, 2), torch.arange(3))
