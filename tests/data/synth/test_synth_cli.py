from __future__ import annotations

import json
from pathlib import Path

from sensorium_data import Session
from tests.conftest import run_console_script


def test_small_preset_writes_a_valid_session_and_prints_its_ceiling(tmp_path: Path) -> None:
    args = ("sensorium-synth", "--small", "--neurons", "60", "--trials", "24", "--mice", "2")
    result = run_console_script(*args, "--no-progress", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    first, second = sorted(tmp_path.iterdir())
    assert first.name.startswith("dynamic90001-")
    assert second.name.startswith("dynamic90002-")
    shared = Session(second)
    shared_oracle = {t.clip_id: t for t in shared.trials("oracle")}
    root = first
    session = Session(root)
    for trial in session.trials("oracle"):
        twin = shared_oracle[trial.clip_id]  # test clips are shared by all mice
        assert (trial.video_frames() == twin.video_frames()).all()
    session.validate()
    assert (session.n_neurons, session.n_trials) == (60, 24)
    ceiling = json.loads((root / "ground_truth/ceiling.json").read_text())["ceiling"]
    oracle = ceiling["oracle"]["single_trial_correlation"]
    assert f"{oracle:7.3f}" in result.stdout
    assert "peak memory" in result.stdout

    assert "stimulus statistics" in result.stdout
    again = run_console_script(*args, "--no-progress", "--out", str(tmp_path))
    assert again.returncode == 2
    assert "overwrite" in again.stderr
