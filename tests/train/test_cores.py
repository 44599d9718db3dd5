"""Cores and models are causal and stream exactly (torch, eval mode)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

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


def test_stacked_core_reads_every_block() -> None:
    torch.manual_seed(2)
    stacked = build_core(CoreConfig(stack=True)).eval()
    last = build_core(CoreConfig(stack=False)).eval()
    last.load_state_dict(stacked.state_dict())
    assert stacked.out_channels == sum(CoreConfig().channels)
    assert last.out_channels == CoreConfig().channels[-1]
    x = torch.randn(1, 3, 12, 36, 64)
    with torch.no_grad():
        all_blocks, final = stacked(x), last(x)
        first_block = stacked.blocks[0](F.elu(stacked.stem_norm(stacked.stem(x))))
    assert all_blocks.shape[1] == stacked.out_channels
    assert torch.equal(all_blocks[:, -final.shape[1] :], final)
    assert torch.equal(all_blocks[:, : first_block.shape[1]], first_block)
