"""What a new user meets first: help texts, JSON errors, a client-only install, health over TLS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from sensorium_client import Client
from sensorium_server.settings import HELP, Settings
from tests.conftest import run_console_script as run
from tests.serving import ServerThread, local_settings


def test_every_server_flag_is_described() -> None:
    result = run("sensorium-server", "--help")
    assert result.returncode == 0
    fields = set(Settings.__dataclass_fields__)
    assert set(HELP) == fields
    for description in HELP.values():
        assert description.split()[0] in result.stdout.replace("\n", " ")


def test_json_errors_are_json(server: ServerThread) -> None:
    result = run("client", "models", "--server", "localhost:1", "--timeout", "2", "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["code"] == "UNAVAILABLE"
    assert error["exit"] == 1
    inspected = run("client", "inspect", "--json", "/no/such/folder")
    assert inspected.returncode == 2
    assert json.loads(inspected.stdout)["code"] == "DATA_FORMAT"


def test_server_on_a_client_only_install_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['grpc_reflection'] = None; "  # as if never installed
        "from sensorium_server.cli import main; sys.exit(main(['--port', '0']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert (
        "grpc_reflection is not installed; pip install 'sensorium-serve[server]'" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_metrics_have_no_created_series_and_long_clip_buckets(server: ServerThread) -> None:
    with Client(server.target) as client:
        client.models()  # one unary call: its latency histogram appears
    url = f"http://localhost:{server.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        page = response.read().decode()
    assert "_created" not in page
    assert 'sensorium_request_seconds_bucket{le="120.0"' in page


def test_healthcheck_speaks_tls_like_the_server(
    repository: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    settings = local_settings(
        repository, versions="specific:1", tls_cert=str(cert), tls_key=str(key)
    )
    running = ServerThread(settings).start()
    try:
        env = {**os.environ, "SENSORIUM_TLS_CERT": str(cert)}
        exe = Path(sys.executable).parent / "sensorium-healthcheck"
        ok = subprocess.run(
            [str(exe), running.target], capture_output=True, text=True, env=env, timeout=30
        )
        assert ok.returncode == 0, ok.stderr
        assert "SERVING" in ok.stdout
        named = {**env, "SENSORIUM_HEALTHCHECK_SERVER_NAME": "other.example"}
        wrong = subprocess.run(
            [str(exe), running.target], capture_output=True, text=True, env=named, timeout=30
        )
        assert wrong.returncode == 1  # the certificate does not name other.example
        named["SENSORIUM_HEALTHCHECK_SERVER_NAME"] = "localhost"
        right = subprocess.run(
            [str(exe), running.target], capture_output=True, text=True, env=named, timeout=30
        )
        assert right.returncode == 0, right.stderr
        plain = {k: v for k, v in env.items() if k != "SENSORIUM_TLS_CERT"}
        refused = subprocess.run(
            [str(exe), running.target], capture_output=True, text=True, env=plain, timeout=30
        )
        assert refused.returncode == 1
    finally:
        running.stop()


def test_the_default_model_ships_inside_the_package() -> None:
    from sensorium_models import repository
    from sensorium_server.repository import read_version

    version = read_version(repository() / "sensorium" / "1")
    assert [m.neuron_count for m in version.mice.values()] == [8000]
