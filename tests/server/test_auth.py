"""Bearer tokens, the metrics server, reflection, and start-up errors, against real servers."""

from __future__ import annotations

import hashlib
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sensorium_client import Client
from sensorium_client.errors import SensoriumError
from tests.conftest import make_certificate, run_console_script
from tests.serving import ServerThread, local_settings

TOKEN, OTHER = "rig-3-s3cret-token", "analyst-token"


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.txt"
    lines = [
        "# name:sha256 of the token",
        f"rig-3:{hashlib.sha256(TOKEN.encode()).hexdigest()}",
        f"analyst:{hashlib.sha256(OTHER.encode()).hexdigest()}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def guarded(repository: Path, tokens: Path) -> Iterator[ServerThread]:
    running = ServerThread(
        local_settings(
            repository,
            versions="specific:1",
            auth_tokens_file=str(tokens),
            metrics_port=0,
            reflection=True,
        )
    ).start()
    yield running
    running.stop()


def _metrics(port: int, path: str = "/metrics", context: ssl.SSLContext | None = None) -> str:
    scheme = "https" if context else "http"
    with urllib.request.urlopen(
        f"{scheme}://localhost:{port}{path}", timeout=10, context=context
    ) as r:
        return str(r.read().decode())


def test_calls_without_a_valid_token_are_unauthenticated(guarded: ServerThread) -> None:
    for token in (None, "wrong"):
        with Client(guarded.target, token=token, retries=0) as client:
            with pytest.raises(SensoriumError) as caught:
                client.models()
            assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in str(caught.value)
    with grpc.insecure_channel(guarded.target) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as refused:
            list(reflection.ServerReflectionInfo(iter([request]), timeout=10))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Health stays open for probes, without a token.
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    page = _metrics(guarded.server.metrics_port)
    assert "sensorium_unauthenticated_calls_total 3.0" in page
    assert TOKEN not in page


def test_a_valid_token_serves_and_names_the_caller(guarded: ServerThread, sample: object) -> None:
    video, behavior, pupil = (a[:5] for a in sample)  # type: ignore[attr-defined]
    with Client(guarded.target, token=TOKEN) as client:
        assert client.predict(video, behavior, pupil, model="tiny").shape == (5, 40)
        with client.stream(model="tiny") as session:
            assert session.step(video[0], behavior[0], pupil[0]).shape == (1, 40)
    inference = triton.InferenceServerClient(guarded.target)
    assert inference.is_server_live()  # liveness needs no token
    headers = {"authorization": f"Bearer {OTHER}"}
    assert inference.get_model_metadata("tiny", headers=headers).name == "tiny"
    with pytest.raises(Exception, match=r"UNAUTHENTICATED|bearer token"):
        inference.get_model_metadata("tiny")
    inference.close()
    page = _metrics(guarded.server.metrics_port)
    assert 'caller="rig-3",code="OK",model="tiny",rpc="Predict"' in page
    assert 'caller="analyst",code="OK",model="tiny",rpc="oip.ModelMetadata"' in page


def test_cli_takes_the_token_from_a_flag_or_the_environment(guarded: ServerThread) -> None:
    refused = run_console_script("client", "models", "--server", guarded.target)
    assert refused.returncode != 0
    assert "UNAUTHENTICATED" in refused.stderr or "bearer token" in refused.stderr
    listed = run_console_script("client", "models", "--server", guarded.target, "--token", TOKEN)
    assert listed.returncode == 0, listed.stderr
    assert "tiny v1" in listed.stdout


def test_metrics_port_serves_only_metrics_on_its_host(guarded: ServerThread) -> None:
    port = guarded.server.metrics_port
    assert "sensorium_requests_total" in _metrics(port)
    with pytest.raises(urllib.error.HTTPError) as missing:
        _metrics(port, "/")
    assert missing.value.code == 404
    missing.value.close()
    host = guarded.server.plane.metrics._http[0].server_address[0]  # type: ignore[index]
    assert host in ("127.0.0.1", "::1")  # the gRPC host (localhost), not every interface


def test_tls_with_tokens_and_https_metrics(
    repository: Path, tokens: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    settings = local_settings(
        repository,
        versions="specific:1",
        auth_tokens_file=str(tokens),
        tls_cert=str(cert),
        tls_key=str(key),
        metrics_port=0,
        reflection=False,
    )
    running = ServerThread(settings).start()
    try:
        trust = cert.read_bytes()
        with Client(running.target, tls=True, root_certificates=trust, token=TOKEN) as client:
            assert "tiny" in [m.name for m in client.models()]
        context = ssl.create_default_context(cafile=str(cert))
        assert "sensorium_requests_total" in _metrics(running.server.metrics_port, context=context)
        credentials = grpc.ssl_channel_credentials(trust)
        with grpc.secure_channel(running.target, credentials) as channel:
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            metadata = (("authorization", f"Bearer {TOKEN}"),)
            with pytest.raises(grpc.RpcError) as off:
                list(
                    reflection.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=10)
                )
            assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED  # --no-reflection
    finally:
        running.stop()


def test_bad_files_stop_the_server_at_once_with_the_reason(
    repository: Path, tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    cert, _ = certificate
    _, other_key = make_certificate(tmp_path, "other")
    bad_tokens = tmp_path / "tokens.txt"
    bad_tokens.write_text("rig-3:not-a-digest\n")
    common = ("--model-repository", str(repository), "--port", "0", "--metrics-port", "-1")
    common += ("--http-port", "-1")
    cases = [
        (("--tls-cert", str(cert), "--tls-key", str(other_key)), "the key does not match"),
        (("--tls-cert", str(cert), "--tls-key", str(tmp_path / "none.pem")), "no such file"),
        (("--auth-tokens-file", str(bad_tokens)), "line 1: expected NAME:SHA256_HEX"),
    ]
    for flags, said in cases:
        result = run_console_script("sensorium-server", *common, *flags, timeout=60)
        assert result.returncode == 2, result.stderr
        assert said in result.stderr
        assert "Traceback" not in result.stderr


def test_mutual_tls_with_tokens(
    repository: Path, tokens: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate  # self-signed: it is its own CA, for the server and the client
    settings = local_settings(
        repository,
        versions="specific:1",
        auth_tokens_file=str(tokens),
        tls_cert=str(cert),
        tls_key=str(key),
        tls_client_ca=str(cert),
    )
    running = ServerThread(settings).start()
    try:
        pem = {"root_certificates": cert.read_bytes()}
        mine = {"private_key": key.read_bytes(), "certificate_chain": cert.read_bytes()}
        with Client(running.target, tls=True, token=TOKEN, **pem, **mine) as client:
            assert "tiny" in [m.name for m in client.models()]
        with Client(running.target, tls=True, token="wrong", **pem, **mine) as client:
            with pytest.raises(SensoriumError) as caught:
                client.models()
            assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
        # No client certificate: the handshake fails.
        with (
            Client(running.target, tls=True, token=TOKEN, retries=0, timeout=5, **pem) as client,
            pytest.raises(SensoriumError),
        ):
            client.models()
    finally:
        running.stop()
