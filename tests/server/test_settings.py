"""Settings from flags and SENSORIUM_* env vars; version policies; providers."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorium_server.runtime import providers_for, select_versions
from sensorium_server.settings import Settings, parse_settings, parse_version_policy


def test_defaults_serve_the_embedded_models_on_8001_and_8002() -> None:
    settings = parse_settings([], environ={})
    assert (settings.port, settings.metrics_port) == (8001, 8002)
    assert settings.model_repository == Path(__file__).resolve().parents[2] / "models"


def test_env_vars_set_values_and_flags_win() -> None:
    env = {"SENSORIUM_PORT": "9001", "SENSORIUM_IDLE_TIMEOUT_S": "2.5", "SENSORIUM_WORKERS": "3"}
    settings = parse_settings(["--workers", "5"], environ=env)
    assert settings.port == 9001
    assert settings.idle_timeout_s == 2.5
    assert settings.workers == 5


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--versions", "newest"], {}, "versions policy 'newest'"),
        (["--workers", "0"], {}, "workers must be at least 1"),
        (["--providers", "tpu"], {}, "providers must be auto, cpu or cuda"),
        (["--clip-priority", "high"], {}, "clip_priority must be idle, low or normal"),
        (["--clip-workers", "0"], {}, "clip_workers must be at least 1"),
        (["--heap-trim-s", "-1"], {}, "heap_trim_s must be 0 (never) or more"),
        ([], {"SENSORIUM_PORT": "eighty"}, "SENSORIUM_PORT='eighty' is not a valid int"),
    ],
)
def test_bad_settings_exit_with_a_message(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_settings(argv, environ=env)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_version_policies(tmp_path: Path) -> None:
    for model, versions in {"a": [1, 2, 3], "b": [7]}.items():
        for v in versions:
            (tmp_path / model / str(v)).mkdir(parents=True)
    (tmp_path / "a" / "notes").mkdir()

    def chosen(policy: str) -> list[str]:
        return [f"{p.parent.name}/{p.name}" for p in select_versions(tmp_path, policy)]

    assert chosen("all") == ["a/1", "a/2", "a/3", "b/7"]
    assert chosen("latest:1") == ["a/3", "b/7"]
    assert chosen("latest:2") == ["a/2", "a/3", "b/7"]
    assert chosen("specific:1,7") == ["a/1", "b/7"]
    assert parse_version_policy("specific:2,3") == ("specific", [2, 3])


def test_cpu_provider_and_cuda_only_where_present() -> None:
    assert providers_for("cpu") == ["CPUExecutionProvider"]
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert providers_for("auto")[0] == "CUDAExecutionProvider"
    else:
        assert providers_for("auto") == ["CPUExecutionProvider"]
        with pytest.raises(RuntimeError, match="--providers cuda"):
            providers_for("cuda")


def test_settings_object_checks_itself() -> None:
    with pytest.raises(ValueError, match="max_sessions must be at least 1"):
        Settings(max_sessions=0)
