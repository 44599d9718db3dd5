"""A version re-exported without its checkpoint computes what it did, in the tiled form."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from sensorium_export.cli import main as export_main
from sensorium_export.repository import write_version
from sensorium_train.train import load_checkpoint


@pytest.fixture(scope="module")
def grid_version(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported with grid sampling (the form before the tiled readout)."""
    model, checkpoint = load_checkpoint(tiny_checkpoint)
    repo = tmp_path_factory.mktemp("grid")
    return write_version(model, checkpoint, repo, "tiny", {}, readout="grid")[0]


def _ops(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_graphs_use_the_tiled_readout(tiny_version: Path, grid_version: Path) -> None:
    for graph in ("clip.onnx", "step.onnx"):
        assert "GridSample" not in _ops(next(tiny_version.rglob(graph)))
        assert "GridSample" in _ops(next(grid_version.rglob(graph)))
    manifest = json.loads((tiny_version / "manifest.json").read_text())
    assert manifest["readout_form"] == "tiled"


def test_reexport_from_a_version_matches_it(
    grid_version: Path, tiny_mouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A manifest names its datasets without paths: the data for parity is given here.
    where = ["--repository", str(tmp_path), "--name", "again", "--data", str(tiny_mouse)]
    code = export_main(["--from-version", str(grid_version), *where])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "previous vs new (clip)" in out
    assert "previous vs new (step)" in out
    manifest = json.loads((tmp_path / "again" / "1" / "manifest.json").read_text())
    old = json.loads((grid_version / "manifest.json").read_text())
    assert manifest["training"]["rebuilt_from"] == "tiny/1"
    assert manifest["training"]["metrics"] == old["training"]["metrics"]
    assert manifest["mice"][0]["neuron_ids"] == old["mice"][0]["neuron_ids"]
    assert manifest["mice"][0]["input_defaults"] == old["mice"][0]["input_defaults"]
    previous = [p for p in manifest["parity"] if p["check"].startswith("previous vs new")]
    checks = {p["check"] for p in previous}
    assert checks == {f"previous vs new ({g})" for g in ("clip", "step", "state")}
    assert {p["inputs"].split()[0] for p in previous} == {"random", "trial"}
    assert all(p["error"] < 1e-5 for p in previous)
    old_sha = hashlib.sha256((grid_version / "manifest.json").read_bytes()).hexdigest()
    assert manifest["state_compatible_with"] == [old_sha]
    step = tmp_path / "again" / "1" / manifest["mice"][0]["graphs"]["step"]
    assert "GridSample" not in _ops(step)


def test_reexport_refuses_graphs_that_differ_from_the_previous_ones(
    grid_version: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A previous version whose clip graph computes something else (bias moved).
    changed = tmp_path / "tiny" / "1"
    shutil.copytree(grid_version, changed)
    clip = next(changed.rglob("clip.onnx"))
    model = onnx.load(str(clip))
    for init in model.graph.initializer:
        if init.name == "model.head.readout.bias":
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 1.0, init.name))
    onnx.save(model, str(clip))
    out_repo = tmp_path / "out"
    code = export_main(["--from-version", str(changed), "--repository", str(out_repo)])
    err = capsys.readouterr().err
    assert code == 2
    assert "previous vs new (clip)" in err
    assert "limit 1e-05" in err
    assert not list((out_repo / "sensorium").iterdir())  # nothing written


def test_reexport_of_a_missing_or_tiled_version_is_a_clear_error(
    tiny_version: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export_main(["--from-version", str(tmp_path / "nope")]) == 2
    assert "manifest.json" in capsys.readouterr().err
    out = tmp_path / "out"
    assert export_main(["--from-version", str(tiny_version), "--repository", str(out)]) == 2
    assert "from its checkpoint" in capsys.readouterr().err
