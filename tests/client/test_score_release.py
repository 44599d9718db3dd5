"""`client score` and `inspect` on folders shaped like the real release (plain np.save).

The served model is a user's module exported with export_model for the hand-written mouse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from sensorium_client.scoring.tracks import SUBMISSION_FILES
from sensorium_export import export_model
from tests.conftest import run_console_script as run
from tests.conftest import write_hand_session
from tests.serving import ServerThread, local_settings

MOUSE = "dynamic29515-10-12-Video-9b4f6a1a067fe51e15306b9628efea20"
NEURONS = 7
TIERS = ("train", "oracle", "oracle", "live_test_main", "final_test_main", "live_test_main")
LENGTHS = (80, 80, 80, 80, 62, 70)  # trials 4 and 5 are NaN-padded to 80


class Luminance(nn.Module):
    """Responses from the frame's mean brightness and the running speed."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.readout = nn.Linear(2, NEURONS)

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil: torch.Tensor
    ) -> torch.Tensor:
        x = torch.stack([video.mean(dim=(2, 3)) / 255.0, behavior[..., 1] / 10.0], -1)
        return nn.functional.softplus(self.readout(x)) + 0 * pupil[..., :1]


def release(root: Path, **changes: object) -> Path:
    return write_hand_session(root, MOUSE, NEURONS, LENGTHS, TIERS, padded=80, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def byo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    repository = tmp_path_factory.mktemp("byo-score")
    ids = list(range(1, NEURONS + 1))
    export_model(Luminance().eval(), repository, "lum", MOUSE, ids)
    export_model(Luminance(seed=1).eval(), repository, "other", MOUSE, ids)
    running = ServerThread(local_settings(repository)).start()
    yield running
    running.stop()


def _score(server: ServerThread, data: Path, out: Path, *extra: str) -> object:
    return run(
        "client",
        "score",
        "--data",
        str(data),
        "--server",
        server.target,
        "--model",
        "lum",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    )


def test_withheld_test_responses_are_written_not_scored(
    byo_server: ServerThread, tmp_path: Path
) -> None:
    data = release(tmp_path)
    for index, tier in enumerate(TIERS):
        if "test" in tier:  # the release's dummy zeros
            responses = np.zeros((NEURONS, 80), np.float32)
            responses[:, LENGTHS[index] :] = np.nan
            np.save(data / "data/responses" / f"{index}.npy", responses)
    result = _score(byo_server, data, tmp_path / "out", "--track", "main")
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    report = json.loads((tmp_path / "out/report.json").read_text())
    assert report["withheld"] == ["final_test_main", "live_test_main"]
    assert "live_test_main" not in report["groups"]
    assert "track:main" not in report["groups"]
    assert "oracle" in report["groups"]
    assert "Not scored: final_test_main, live_test_main" in result.stdout  # type: ignore[attr-defined]
    assert "withheld in this release" in result.stderr  # type: ignore[attr-defined]
    assert pq.read_table(tmp_path / "out" / SUBMISSION_FILES["live_test_main"]).num_rows == 2


def test_submission_rows_in_trial_order_with_stored_frames(
    byo_server: ServerThread, tmp_path: Path
) -> None:
    data = release(tmp_path)
    assert _score(byo_server, data, tmp_path / "stored", "--track", "main").returncode == 0  # type: ignore[attr-defined]
    table = pq.read_table(tmp_path / "stored" / SUBMISSION_FILES["live_test_main"]).to_pylist()
    assert [r["trial_indices"] for r in table] == [3, 5]
    padded = np.asarray(table[1]["prediction"], dtype=np.float64)  # trial 5: 70 real of 80
    assert padded.shape == (NEURONS, 80 - 50)
    assert np.isfinite(padded[:, :20]).all()
    assert np.isnan(padded[:, 20:]).all()
    assert (
        _score(
            byo_server, data, tmp_path / "real", "--track", "main", "--frames", "real"
        ).returncode
        == 0
    )  # type: ignore[attr-defined]
    real = pq.read_table(tmp_path / "real" / SUBMISSION_FILES["live_test_main"]).to_pylist()
    assert np.asarray(real[1]["prediction"]).shape == (NEURONS, 70 - 50)
    for out in ("stored", "real"):
        checked = run(
            "client",
            "score",
            "--data",
            str(data),
            "--validate",
            str(tmp_path / out / SUBMISSION_FILES["live_test_main"]),
        )
        assert checked.returncode == 0, checked.stdout
        assert f"frames: {out} length - 50" in checked.stdout


def test_validate_accepts_the_starter_kit_variants(
    byo_server: ServerThread, tmp_path: Path
) -> None:
    data = release(tmp_path)
    assert _score(byo_server, data, tmp_path / "out", "--track", "main").returncode == 0  # type: ignore[attr-defined]
    rows = pq.read_table(tmp_path / "out" / SUBMISSION_FILES["live_test_main"]).to_pylist()
    schema = pa.schema(
        [
            ("mouse", pa.string()),
            ("trial_indices", pa.string()),
            ("prediction", pa.list_(pa.list_(pa.float64()))),
            ("neuron_ids", pa.list_(pa.uint32())),
        ]
    )
    for row in rows:
        row["trial_indices"] = f"{row['trial_indices']}.npy"
    kit = tmp_path / "predictions_file_live_test_main_main_track.parquet.brotli"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), kit, compression="brotli")
    result = run("client", "score", "--data", str(data), "--validate", str(kit))
    assert result.returncode == 0, result.stdout
    assert "the starter kit submission.py's file name" in result.stdout
    assert "trial_indices as strings (like 1.npy)" in result.stdout
    assert "prediction as list<element: list<element: double>>" in result.stdout


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (
            "nan response",
            "responses/1.npy: trial 1 has 1 NaN response(s) inside its 80 real frames",
        ),
        ("nan video", "videos/1.npy: trial 1 has no frames"),
        ("short tiers", "tiers.npy: lists 5 trials"),
        ("missing responses", "responses/2.npy: missing; trial 2 (oracle)"),
    ],
)
def test_broken_data_is_named_by_inspect_and_score(
    byo_server: ServerThread, tmp_path: Path, fault: str, said: str
) -> None:
    data = release(tmp_path)
    if fault == "nan response":
        responses = np.load(data / "data/responses/1.npy")
        responses[3, 10] = np.nan
        np.save(data / "data/responses/1.npy", responses)
    elif fault == "nan video":
        np.save(data / "data/videos/1.npy", np.full((36, 64, 80), np.nan, np.float32))
    elif fault == "short tiers":
        np.save(data / "meta/trials/tiers.npy", np.array(TIERS[:5]))
    else:
        (data / "data/responses/2.npy").unlink()
    inspected = run("client", "inspect", "--validate", str(data))
    assert inspected.returncode == 1
    assert said in inspected.stderr
    assert "Traceback" not in inspected.stderr
    scored = _score(byo_server, data, tmp_path / "out", "--tier", "oracle")
    assert scored.returncode == 2  # type: ignore[attr-defined]
    assert said in scored.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in scored.stderr  # type: ignore[attr-defined]


def test_uint8_videos_take_their_length_from_behaviour(
    byo_server: ServerThread, tmp_path: Path
) -> None:
    data = release(tmp_path)
    for index in range(len(TIERS)):
        video = np.load(data / "data/videos" / f"{index}.npy")
        np.save(data / "data/videos" / f"{index}.npy", np.nan_to_num(video).astype(np.uint8))
    inspected = run("client", "inspect", "--validate", str(data))
    assert inspected.returncode == 0, inspected.stderr
    result = _score(byo_server, data, tmp_path / "out", "--track", "main", "--frames", "real")
    assert result.returncode == 0, result.stderr  # type: ignore[attr-defined]
    rows = pq.read_table(tmp_path / "out" / SUBMISSION_FILES["live_test_main"]).to_pylist()
    assert np.asarray(rows[1]["prediction"]).shape == (NEURONS, 70 - 50)


def test_a_session_given_twice_is_scored_once(byo_server: ServerThread, tmp_path: Path) -> None:
    data = release(tmp_path)
    result = _score(byo_server, data, tmp_path / "out", "--track", "main", "--tier", "live")
    again = _score(byo_server, data, tmp_path / "twice", "--track", "main", "--tier", "live")
    assert result.returncode == again.returncode == 0  # type: ignore[attr-defined]
    twice = run(
        "client",
        "score",
        "--data",
        str(data),
        str(data),
        "--server",
        byo_server.target,
        "--model",
        "lum",
        "--out",
        str(tmp_path / "dup"),
        "--no-progress",
        "--track",
        "main",
        "--tier",
        "live",
    )
    assert twice.returncode == 0, twice.stderr
    rows = pq.read_table(tmp_path / "dup" / SUBMISSION_FILES["live_test_main"]).num_rows
    assert rows == 2


def test_resume_refuses_another_selection(byo_server: ServerThread, tmp_path: Path) -> None:
    data = release(tmp_path)
    out = tmp_path / "out"
    assert _score(byo_server, data, out, "--track", "main", "--tier", "live").returncode == 0  # type: ignore[attr-defined]
    other = _score(byo_server, data, out, "--track", "main", "--tier", "all", "--resume")
    assert other.returncode == 1  # type: ignore[attr-defined]
    assert "tier: 'live' then, 'all' now" in other.stderr  # type: ignore[attr-defined]
    same = _score(byo_server, data, out, "--track", "main", "--tier", "live", "--resume")
    assert same.returncode == 0, same.stderr  # type: ignore[attr-defined]
    assert "already scored" in same.stderr  # type: ignore[attr-defined]


def test_compare_two_models_paired_per_neuron(byo_server: ServerThread, tmp_path: Path) -> None:
    data = release(tmp_path)
    scored = _score(byo_server, data, tmp_path / "score", "--tier", "oracle", "--track", "main")
    assert scored.returncode == 0  # type: ignore[attr-defined]
    report = json.loads((tmp_path / "score/report.json").read_text())
    common = (
        "client",
        "score",
        "--data",
        str(data),
        "--server",
        byo_server.target,
        "--tier",
        "oracle",
        "--track",
        "main",
        "--no-progress",
        "--bootstrap",
        "200",
    )
    same = run(*common, "--compare", "lum", "lum:1", "--out", str(tmp_path / "same"))
    assert same.returncode == 0, same.stderr
    oracle = json.loads((tmp_path / "same/compare.json").read_text())["groups"]["oracle"]
    assert oracle["difference_b_minus_a"] == 0.0
    assert oracle["ci95"] == [0.0, 0.0]
    assert oracle["fraction_improved"] == 0.0
    # The per-neuron correlation is the one `client score` reports for the model.
    single = report["groups"]["oracle"]["metrics"]["single_trial_correlation"]["pooled_neurons"]
    assert oracle["single_trial_correlation_a"] == pytest.approx(single, abs=1e-6)
    other = run(*common, "--compare", "lum", "other", "--out", str(tmp_path / "other"))
    assert other.returncode == 0, other.stderr
    summary = json.loads((tmp_path / "other/compare.json").read_text())["groups"]["oracle"]
    low, high = summary["ci95"]
    assert low <= summary["difference_b_minus_a"] <= high
    assert summary["neurons"] == NEURONS
    assert "| oracle |" in other.stdout
    assert (tmp_path / "other/compare_oracle.png").read_bytes()[:4] == b"\x89PNG"
