"""A user's clip-only models, exported with export_model, served: by window, late, or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as triton
from torch import nn

from sensorium_client import Client
from sensorium_client.errors import SensoriumError
from sensorium_export import export_model
from tests.conftest import run_console_script
from tests.serving import ServerThread, local_settings

NEURONS = 12
WINDOW = 6
LATENCY = 2


class TemporalConv(nn.Module):
    """Conv3d over time with causal (left) or symmetric padding; softplus responses."""

    def __init__(self, symmetric: bool, kernel: int = 5, layers: int = 1) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.symmetric, self.kernel = symmetric, kernel
        self.convs = nn.ModuleList(
            nn.Conv3d(1 if i == 0 else 4, 4, (kernel, 3, 3), padding=(0, 1, 1))
            for i in range(layers)
        )
        self.readout = nn.Linear(4 * 4 + 4, NEURONS)

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil: torch.Tensor
    ) -> torch.Tensor:
        x = (video / 255.0 - 0.5).unsqueeze(1)
        for conv in self.convs:
            k = self.kernel - 1
            pad = (k // 2, k - k // 2) if self.symmetric else (k, 0)
            x = torch.relu(conv(nn.functional.pad(x, (0, 0, 0, 0, *pad))))
        x = nn.functional.avg_pool3d(x, (1, 18, 32)).permute(0, 2, 1, 3, 4).flatten(2)
        x = torch.cat([x, behavior / 10, (pupil - 100) / 50], -1)
        return nn.functional.softplus(self.readout(x))


def _clip(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(0, 255, (frames, 36, 64)).astype(np.float32),
        rng.normal(10, 2, (frames, 2)).astype(np.float32),
        rng.normal(150, 5, (frames, 2)).astype(np.float32),
    )


def _torch(
    module: nn.Module, video: np.ndarray, behavior: np.ndarray, pupil: np.ndarray
) -> np.ndarray:
    with torch.no_grad():
        out = module(*(torch.from_numpy(a[None]) for a in (video, behavior, pupil)))
    return out[0].numpy()


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def modules() -> dict[str, nn.Module]:
    return {
        "causal": TemporalConv(symmetric=False, kernel=3, layers=2).eval(),  # needs 5 frames
        "late": TemporalConv(symmetric=True, kernel=5).eval(),  # frames t-2 .. t+2
        "cliponly": TemporalConv(symmetric=True, kernel=5).eval(),
    }


@pytest.fixture(scope="module")
def window_server(
    modules: dict[str, nn.Module], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    repository = tmp_path_factory.mktemp("byo")
    ids = list(range(100, 100 + NEURONS))
    export_model(
        modules["causal"], repository, "causal", "m1", ids, causal=True, window_frames=WINDOW
    )
    export_model(
        modules["late"],
        repository,
        "late",
        "m1",
        ids,
        window_frames=WINDOW,
        latency_frames=LATENCY,
        input_defaults={"behavior": [10, 10], "pupil_center": [150, 150]},
    )
    export_model(modules["cliponly"], repository, "cliponly", "m1", ids)
    server = ServerThread(
        local_settings(repository, max_step_frames=20, idle_timeout_s=30, max_clip_frames=400)
    ).start()
    yield server
    server.stop()


def test_get_model_says_how_each_model_streams(window_server: ServerThread) -> None:
    with Client(window_server.target) as client:
        models = {m.name: m for m in client.models()}
    assert (models["causal"].streaming_mode, models["causal"].window_frames) == ("window", WINDOW)
    assert models["causal"].latency_frames == 0
    assert models["causal"].causal
    late = models["late"]
    assert (late.streaming_mode, late.window_frames, late.latency_frames) == ("window", 6, 2)
    assert not late.causal
    assert late.mouse().default_behavior == (10.0, 10.0)
    assert models["cliponly"].streaming_mode == "none"


def test_predict_equals_the_torch_module(
    window_server: ServerThread, modules: dict[str, nn.Module]
) -> None:
    clip = _clip(80)
    with Client(window_server.target) as client:
        for name, module in modules.items():
            served = client.predict(*clip, model=name)
            assert _relative(served, _torch(module, *clip)) < 1e-4, name


def test_causal_window_stream_equals_the_whole_clip(
    window_server: ServerThread, modules: dict[str, nn.Module]
) -> None:
    video, behavior, pupil = _clip(40, seed=1)
    with Client(window_server.target) as client, client.stream(model="causal") as session:
        assert (session.info.streaming_mode, session.info.window_frames) == ("window", WINDOW)
        single = [session.step(video[t], behavior[t], pupil[t]) for t in range(20)]
        chunks = [
            session.step(video[t : t + 5], behavior[t : t + 5], pupil[t : t + 5])
            for t in range(20, 40, 5)
        ]
    streamed = np.concatenate([*single, *chunks])
    assert streamed.shape == (40, NEURONS)
    assert _relative(streamed, _torch(modules["causal"], video, behavior, pupil)) < 1e-4


def test_late_window_stream_answers_latency_frames_behind(
    window_server: ServerThread, modules: dict[str, nn.Module]
) -> None:
    video, behavior, pupil = _clip(30, seed=2)
    with Client(window_server.target) as client, client.stream(model="late") as session:
        assert session.info.latency_frames == LATENCY
        replies = [session.step(video[t], behavior[t], pupil[t]) for t in range(30)]
    assert [r.shape[0] for r in replies[:LATENCY]] == [0] * LATENCY
    assert all(r.shape == (1, NEURONS) for r in replies[LATENCY:])
    streamed = np.concatenate(replies)  # frames 0 .. 27: the last two are never answered
    whole = _torch(modules["late"], video, behavior, pupil)
    assert _relative(streamed, whole[: 30 - LATENCY]) < 1e-4
    # Exactly the clip graph on each window: frame t - L of the W frames ending at t.
    with Client(window_server.target) as client:
        t = 20
        window = client.predict(
            video[t - WINDOW + 1 : t + 1],
            behavior[t - WINDOW + 1 : t + 1],
            pupil[t - WINDOW + 1 : t + 1],
            model="late",
        )
    np.testing.assert_array_equal(streamed[t - LATENCY], window[WINDOW - 1 - LATENCY])


def test_window_stream_moves_by_snapshot(window_server: ServerThread) -> None:
    video, behavior, pupil = _clip(20, seed=4)
    with Client(window_server.target) as client:
        with client.stream(model="late") as session:
            first = [session.step(video[t], behavior[t], pupil[t]) for t in range(10)]
            snapshot = session.snapshot()
            rest = [session.step(video[t], behavior[t], pupil[t]) for t in range(10, 20)]
        assert {s.name for s in snapshot.state} >= {"window_video", "window_count"}
        with client.stream(snapshot=snapshot) as moved:
            again = [moved.step(video[t], behavior[t], pupil[t]) for t in range(10, 20)]
    assert len(first) == 10
    np.testing.assert_array_equal(np.concatenate(rest), np.concatenate(again))


def test_oip_sequence_streams_by_window(
    window_server: ServerThread, modules: dict[str, nn.Module]
) -> None:
    video, behavior, pupil = _clip(12, seed=5)
    client = triton.InferenceServerClient(window_server.target)
    got = []
    for t in range(12):
        inputs = []
        for name, array in (("video", video), ("behavior", behavior), ("pupil_center", pupil)):
            tensor = triton.InferInput(name, [1, *array.shape[1:]], "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(array[t : t + 1]))
            inputs.append(tensor)
        result = client.infer(
            "causal", inputs, sequence_id=77, sequence_start=t == 0, sequence_end=t == 11
        )
        got.append(result.as_numpy("responses"))
    client.close()
    whole = _torch(modules["causal"], video, behavior, pupil)
    assert _relative(np.concatenate(got).reshape(12, NEURONS), whole) < 1e-4


def test_clip_only_model_refuses_streams_with_the_reason(window_server: ServerThread) -> None:
    with (
        Client(window_server.target) as client,
        pytest.raises(SensoriumError) as caught,
        client.stream(model="cliponly") as session,
    ):
        session.step(*(a[0] for a in _clip(1)))
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "does not stream" in str(caught.value)
    assert "window_frames" in str(caught.value)


def test_unchecked_window_in_a_manifest_is_checked_again_at_load(
    modules: dict[str, nn.Module], tmp_path: Path
) -> None:
    """A hand-edited manifest claiming a window the model does not have is not served."""
    import json

    from sensorium_server.repository import RepositoryError
    from sensorium_server.runtime import load_version

    target, _ = export_model(modules["late"], tmp_path, "edited", "m1", list(range(NEURONS)))
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["streaming"] = {"mode": "window", "window_frames": 3, "latency_frames": 0}
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RepositoryError, match="streaming \\(window\\) does not reproduce"):
        load_version(target, local_settings(tmp_path))


def test_client_cli_says_how_each_model_streams(window_server: ServerThread) -> None:
    listed = run_console_script("client", "models", "--server", window_server.target)
    assert listed.returncode == 0, listed.stderr
    assert "late v1" in listed.stdout
    assert "streams by window of 6 frames, answers 2 frames late" in listed.stdout
    assert "cliponly v1" in listed.stdout
    assert "clip only: does not stream" in listed.stdout
