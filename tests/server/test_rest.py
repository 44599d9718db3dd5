"""The KServe v2 REST API, driven by Triton's HTTP client (unmodified) and by raw HTTP."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from sensorium_client import Client
from sensorium_server.rest import listening_socket
from tests.serving import ServerThread

Trial = tuple[np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture
def rest(server: ServerThread) -> Any:
    client = triton_http.InferenceServerClient(f"localhost:{server.server.http_port}")
    yield client
    client.close()


def _url(server: ServerThread, path: str) -> str:
    return f"http://localhost:{server.server.http_port}{path}"


def _inputs(trial: Trial, binary: bool = True) -> list[Any]:
    tensors = []
    for name, array, kind in zip(
        ("video", "behavior", "pupil_center"), trial, ("UINT8", "FP32", "FP32"), strict=True
    ):
        tensor = triton_http.InferInput(name, list(array.shape), kind)
        tensor.set_data_from_numpy(np.ascontiguousarray(array), binary_data=binary)
        tensors.append(tensor)
    return tensors


def test_health_metadata_config_index_and_statistics(server: ServerThread, rest: Any) -> None:
    assert rest.is_server_live()
    assert rest.is_server_ready()
    assert rest.is_model_ready("tiny")
    assert rest.is_model_ready("sensorium", "1")
    assert not rest.is_model_ready("nope")
    metadata = rest.get_server_metadata()
    assert metadata["name"] == "sensorium-serve"
    assert "sequence" in metadata["extensions"]
    model = rest.get_model_metadata("sensorium")
    assert model["versions"] == ["1"]
    inputs = {t["name"]: (t["datatype"], t["shape"]) for t in model["inputs"]}
    assert inputs["video"] == ("UINT8", [-1, 36, 64])
    assert model["outputs"] == [{"name": "responses", "datatype": "FP32", "shape": [-1, 8000]}]
    config = rest.get_model_config("sensorium")
    assert config["max_batch_size"] == 8
    assert [i["dims"] for i in config["input"]] == [[-1, 36, 64], [-1, 2], [-1, 2]]
    index = {(m["name"], m["version"]): m["state"] for m in rest.get_model_repository_index()}
    assert index[("tiny", "1")] == "READY"
    assert index[("broken", "1")] == "UNAVAILABLE"
    stats = rest.get_inference_statistics("tiny")["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("tiny", "1")]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_equals_predict(server: ServerThread, rest: Any, sample: Trial, binary: bool) -> None:
    clip = tuple(a[:30] for a in sample)
    outputs = [triton_http.InferRequestedOutput("responses", binary_data=binary)]
    result = rest.infer("sensorium", _inputs(clip, binary), outputs=outputs, request_id="r7")
    with Client(server.target) as client:
        expected = client.predict(*clip, model="sensorium")
    np.testing.assert_allclose(result.as_numpy("responses"), expected, rtol=1e-6)
    assert result.get_response()["id"] == "r7"
    default = rest.infer("tiny", _inputs(clip))  # no outputs named: binary, every output
    assert default.as_numpy("responses").shape == (30, 40)


def test_a_sequence_equals_a_stream(server: ServerThread, rest: Any, sample: Trial) -> None:
    clip = tuple(a[:12] for a in sample)
    parts = []
    for start in range(0, 12, 4):
        part = tuple(a[start : start + 4] for a in clip)
        result = rest.infer(
            "tiny",
            _inputs(part),
            sequence_id=77,
            sequence_start=start == 0,
            sequence_end=start == 8,
        )
        parts.append(result.as_numpy("responses"))
    with Client(server.target) as client, client.stream(model="tiny") as session:
        streamed = session.step(*clip)
    np.testing.assert_allclose(np.concatenate(parts), streamed, rtol=1e-5, atol=1e-6)


def test_errors_carry_the_status_and_the_message(
    server: ServerThread, rest: Any, sample: Trial
) -> None:
    with pytest.raises(InferenceServerException, match="is not served") as caught:
        rest.get_model_metadata("nope")
    assert caught.value.status() == "404"
    bad = tuple(a[:10] for a in sample)
    bad = (bad[0][:, :5], bad[1], bad[2])
    with pytest.raises(InferenceServerException, match="video: shape") as caught:
        rest.infer("tiny", _inputs(bad))
    assert caught.value.status() == "400"
    request = urllib.request.Request(
        _url(server, "/v2/models/tiny/infer"), data=b"{not json", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert "not JSON" in json.loads(refused.value.read())["error"]
    assert rest.is_server_ready()  # and it still serves


def test_curl_style_json_infer(server: ServerThread, sample: Trial) -> None:
    """What the README's curl example sends: JSON tensors, no binary extension."""
    video, behavior, pupil = (a[:3] for a in sample)
    tensors = [
        ("video", "UINT8", video),
        ("behavior", "FP32", behavior),
        ("pupil_center", "FP32", pupil),
    ]
    body = {
        "inputs": [
            {"name": n, "datatype": t, "shape": list(a.shape), "data": a.ravel().tolist()}
            for n, t, a in tensors
        ]
    }
    request = urllib.request.Request(
        _url(server, "/v2/models/tiny/infer"),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        reply = json.loads(response.read())
    [output] = reply["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("responses", "FP32", [3, 40])
    with Client(server.target) as client:
        expected = client.predict(video, behavior, pupil, model="tiny")
    np.testing.assert_allclose(np.reshape(output["data"], (3, 40)), expected, rtol=1e-6)
    with urllib.request.urlopen(_url(server, "/v2/health/ready"), timeout=10) as ready:
        assert ready.status == 200


@pytest.mark.parametrize("host", ["[::]", "0.0.0.0", ""])
def test_a_wildcard_host_takes_ipv4_and_ipv6_on_one_port(host: str) -> None:
    """The image's default --host [::]: curl 127.0.0.1 and curl [::1] reach the same port."""
    with listening_socket(host, 0) as sock:
        port = sock.getsockname()[1]
        targets = [("127.0.0.1", socket.AF_INET)]
        if socket.has_dualstack_ipv6():
            targets.append(("::1", socket.AF_INET6))
        for address, family in targets:
            with socket.socket(family) as client:
                client.settimeout(5)
                client.connect((address, port))
                accepted, _ = sock.accept()
                accepted.close()
