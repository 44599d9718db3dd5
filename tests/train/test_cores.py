"""Cores and models are causal and stream exactly (torch, eval mode)."""

from __future__ import annotations

import pytest
import torch

from sensorium_train.cores import CoreConfig, build_core


@pytest.mark.parametrize("kind", ["factorised3d", "convgru"])
@pytest.mark.parametrize("k", [1, 4])
def test_step_equals_whole_clip(kind: str, k: int) -> None:
    torch.manual_seed(0)
    core = build_core(CoreConfig(kind=kind)).eval()
    x = torch.randn(2, 3, 21, 36, 64)
    with torch.no_grad():
        whole = core(x)
        state = core.initial_state(2, 36, 64)
        parts = []
        for start in range(0, 21, k):
            out, state = core.step(x[:, :, start : start + k], state)
            parts.append(out)
    stepped = torch.cat(parts, dim=2)
    assert (stepped - whole).abs().max() / whole.abs().max() < 1e-5


def test_causal_and_budgeted() -> None:
    torch.manual_seed(1)
    core = build_core(CoreConfig()).eval()
    assert core.receptive_field >= 20
    state_bytes = sum(s.numel() * 4 for s in core.initial_state(1, 36, 64))
    assert state_bytes <= 2 * 1024 * 1024
    x = torch.randn(1, 3, 40, 36, 64)
    changed = x.clone()
    changed[:, :, 30:] += 5.0  # the future changes
    with torch.no_grad():
        a, b = core(x), core(changed)
    assert torch.equal(a[:, :, :30], b[:, :, :30])
    assert not torch.equal(a[:, :, 30:], b[:, :, 30:])


def test_unknown_core() -> None:
    with pytest.raises(ValueError, match="unknown core 'transformer'"):
        build_core(CoreConfig(kind="transformer"))
