"""The ``client`` CLI against a real server: models, predict, stream, health, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sensorium_client import Client
from sensorium_client.errors import InvalidArgumentError
from tests.conftest import run_console_script as run
from tests.serving import SAMPLES, ServerThread

SAMPLE_ARGS = [
    "--video",
    str(SAMPLES / "clip.npy"),
    "--behavior",
    str(SAMPLES / "behavior.npy"),
    "--pupil-center",
    str(SAMPLES / "pupil_center.npy"),
]


def test_models_lists_what_the_server_serves(server: ServerThread) -> None:
    result = run("client", "models", "--server", server.target, "--json")
    assert result.returncode == 0, result.stderr
    names = {(m["name"], m["version"]) for m in json.loads(result.stdout)["models"]}
    assert names == {("sensorium", 1), ("tiny", 1)}
    summary = run("client", "models", "--server", server.target)
    assert len(summary.stdout) < 1000  # a summary, not 8,000 neuron ids
    assert "8000 neurons" in summary.stdout
    assert "--neuron-ids" in summary.stdout
    with Client(server.target) as client:
        ids = client.model("sensorium").mice[0].neuron_ids
    listed = run("client", "models", "--server", server.target, "--neuron-ids", "--json")
    [sensorium] = [m for m in json.loads(listed.stdout)["models"] if m["name"] == "sensorium"]
    assert list(sensorium["neuron_ids"].values()) == [list(ids)]
    text = run("client", "models", "--server", server.target, "--neuron-ids").stdout
    assert f"ids: {' '.join(map(str, ids[:5]))}" in text


def test_predict_sensorium_layout_and_saves(server: ServerThread, tmp_path: Path) -> None:
    out = tmp_path / "pred.npy"
    args = ["predict", "--server", server.target, "--model", "sensorium", *SAMPLE_ARGS]
    result = run("client", *args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (
        "layout H x W x T (Sensorium layout)" in result.stderr
    )  # notes go to stderr; stdout is the result
    assert "responses (254, 8000)" in result.stdout
    saved = np.load(out)
    assert saved.shape == (254, 8000)
    as_json = json.loads(run("client", *args, "--json").stdout)
    assert as_json["shape"] == [254, 8000]
    assert as_json["mean"] == float(saved.mean())


def test_predict_time_first_files_equal_sensorium_layout(
    server: ServerThread, tmp_path: Path
) -> None:
    video = np.moveaxis(np.load(SAMPLES / "clip.npy"), 2, 0)[:40]
    np.save(tmp_path / "v.npy", video)
    np.save(tmp_path / "b.npy", np.load(SAMPLES / "behavior.npy").T[:40])
    np.save(tmp_path / "p.npy", np.load(SAMPLES / "pupil_center.npy").T[:40])
    result = run(
        "client",
        "predict",
        "--server",
        server.target,
        "--model",
        "tiny",
        "--video",
        str(tmp_path / "v.npy"),
        "--behavior",
        str(tmp_path / "b.npy"),
        "--pupil-center",
        str(tmp_path / "p.npy"),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["shape"] == [40, 40]
    assert "layout T x H x W" in data["notes"][0]


def test_a_video_alone_predicts_with_the_training_mean_unless_required(
    server: ServerThread,
) -> None:
    base = ["predict", "--server", server.target, "--model", "tiny"]
    alone = run("client", *base, "--video", str(SAMPLES / "clip.npy"), "--json")
    assert alone.returncode == 0, alone.stderr
    notes = json.loads(alone.stdout)["notes"]
    assert any(
        n.startswith("behavior: missing, filled with the model's training mean") for n in notes
    )
    assert "client: behavior: missing, filled" in alone.stderr  # said once, on stderr
    strict = run("client", *base, "--video", str(SAMPLES / "clip.npy"), "--require-behavior")
    assert strict.returncode == 1
    assert strict.stderr.strip().splitlines() == [
        "client: behavior is missing (--behavior); behaviour is required"
    ]


def test_sdk_accepts_what_the_cli_accepts(server: ServerThread, tmp_path: Path) -> None:
    video = np.load(SAMPLES / "clip.npy")[:, :, :60]  # H x W x T, the Sensorium layout
    behavior = np.load(SAMPLES / "behavior.npy")[:, :60]  # 2 x T
    with Client(server.target) as client:
        sensorium_layout = client.predict(video, behavior, model="tiny")  # no pupil centre
        time_first = client.predict(np.moveaxis(video, 2, 0), behavior.T, None, model="tiny")
        np.testing.assert_array_equal(sensorium_layout, time_first)
        with pytest.raises(InvalidArgumentError, match=r"looks scaled to 0\.\.1"):
            client.predict(np.moveaxis(video, 2, 0).astype(np.float32) / 255, model="tiny")
    np.save(tmp_path / "clip01.npy", video.astype(np.float32) / 255)
    cli = run(
        "client",
        "predict",
        "--server",
        server.target,
        "--model",
        "tiny",
        "--video",
        str(tmp_path / "clip01.npy"),
    )
    assert cli.returncode == 1
    assert "looks scaled to 0..1" in cli.stderr


def test_stream_reports_latency_percentiles(server: ServerThread) -> None:
    result = run(
        "client",
        "stream",
        "--server",
        server.target,
        "--model",
        "sensorium",
        *SAMPLE_ARGS,
        "--rate",
        "200",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["frames"] == 254
    assert 0 < data["p50_ms"] <= data["p99_ms"] <= data["max_ms"]
    # The round trip split with the server's own figures of each step.
    assert 0 < data["server_compute_p50_ms"] < data["p50_ms"]
    assert 0 <= data["server_queue_p50_ms"] < data["p50_ms"]
    assert 0 < data["outside_server_p50_ms"] < data["p50_ms"]
    for part in ("server_queue", "server_compute", "outside_server"):
        assert data[f"{part}_p50_ms"] <= data[f"{part}_p99_ms"]


def test_errors_print_one_line_and_exit_non_zero(server: ServerThread, tmp_path: Path) -> None:
    np.save(tmp_path / "bad.npy", np.zeros((10, 36, 65), np.uint8))
    cases = {
        "unknown model": (["--model", "nope", *SAMPLE_ARGS], "NOT_FOUND: model 'nope'"),
        "bad shape": (
            ["--video", str(tmp_path / "bad.npy"), "--model", "tiny"],
            "video: shape (10, 36, 65)",
        ),
        "no file": (["--video", str(tmp_path / "none.npy"), "--model", "tiny"], "cannot read"),
    }
    for args, needle in cases.values():
        result = run("client", "predict", "--server", server.target, *args)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert needle in lines[0]


def test_unreachable_server_and_health(server: ServerThread) -> None:
    dead = run("client", "predict", "--server", "localhost:1", "--timeout", "3", *SAMPLE_ARGS)
    assert dead.returncode == 1
    assert dead.stderr.startswith("client: UNAVAILABLE")
    assert len(dead.stderr.strip().splitlines()) == 1
    healthy = run("client", "health", "--server", server.target)
    assert (healthy.returncode, healthy.stdout.strip()) == (0, f"{server.target}: SERVING")
    assert run("client", "health", "--server", "localhost:1").returncode == 1
