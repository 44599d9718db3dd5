"""The installed console scripts, run as a user would."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_console_script as run
from tests.conftest import write_hand_session


def test_client_help() -> None:
    result = run("client", "--help")
    assert result.returncode == 0
    assert "inspect" in result.stdout


def test_client_inspect_hand_written(tmp_path: Path) -> None:
    write_hand_session(tmp_path, name="dynamic1-1-1-Video-a")
    result = run("client", "inspect", "--validate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["trials"] == 5
    assert summary["tiers"]["oracle"] == 2


def test_client_inspect_broken_names_the_file(tmp_path: Path) -> None:
    path = write_hand_session(tmp_path)
    (path / "data/behavior/3.npy").write_bytes(b"garbage")
    result = run("client", "inspect", "--validate", str(path))
    assert result.returncode == 1  # problems reported, each naming its file
    assert "data/behavior/3.npy: unreadable" in result.stderr
    assert "Traceback" not in result.stderr
