"""sensorium-train then sensorium-export, as console scripts, on a small synthetic mouse."""

from __future__ import annotations

import json
from pathlib import Path

from sensorium_server.repository import read_version
from tests.conftest import run_console_script


def test_train_then_export(tiny_mouse: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    trained = run_console_script(
        "sensorium-train",
        "--data",
        str(tiny_mouse),
        "--out",
        str(ckpt),
        "--steps",
        "4",
        "--batch",
        "2",
        "--window",
        "40",
        "--eval-every",
        "2",
        "--no-progress",
    )
    assert trained.returncode == 0, trained.stderr
    assert "oracle single_trial_correlation" in trained.stdout
    repo = tmp_path / "repo"
    exported = run_console_script(
        "sensorium-export",
        "--checkpoint",
        str(ckpt / "checkpoint.pt"),
        "--repository",
        str(repo),
        "--name",
        "small",
    )
    assert exported.returncode == 0, exported.stderr
    assert "stream k=1 vs clip" in exported.stdout
    version = read_version(repo / "small" / "1")
    assert tiny_mouse.name in version.mice
    manifest = json.loads((repo / "small/1/manifest.json").read_text())
    [dataset] = manifest["training"]["datasets"]  # a name and a fingerprint, no path
    assert dataset["name"] == tiny_mouse.name
    assert len(dataset["fingerprint"]) == 64

    again = run_console_script(
        "sensorium-export",
        "--checkpoint",
        str(ckpt / "checkpoint.pt"),
        "--repository",
        str(repo),
        "--name",
        "small",
        "--version",
        "1",
    )
    assert again.returncode == 2
    assert "never overwritten" in again.stderr
