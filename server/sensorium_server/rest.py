"""The KServe v2 (Open Inference Protocol) REST API, with Triton's binary tensor extension.

Served by aiohttp on ``--http-port`` in the gRPC server's process and event loop.
A REST call is turned into the same OIP request the gRPC API takes and answered by
the same code (:class:`~sensorium_server.oip.InferenceServicer`), so it meets the
same data plane, checks, limits, tokens and metrics. JSON tensors carry ``data``
(row-major, flattened); with the binary extension, the body's first
``Inference-Header-Content-Length`` bytes are the JSON and each tensor with
``parameters.binary_data_size`` follows as raw little-endian bytes, in order.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import numpy as np
from aiohttp import web
from google.protobuf import json_format

from sensorium_api.inference import grpc_predict_v2_pb2 as oip
from sensorium_server import oip_config
from sensorium_server import oip_convert as convert
from sensorium_server.errors import InvalidInputError, NotFoundError, UnavailableError, short
from sensorium_server.gate import CALLER, Tokens
from sensorium_server.observe import Call
from sensorium_server.oip import EXTENSIONS, InferenceServicer, server_version
from sensorium_server.status import status_of

logger = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# gRPC status -> HTTP status of the error reply ({"error": message}).
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
OPEN_PATHS = ("/v2/health/",)  # probes need no token, as gRPC health
# Integer fields that protobuf's JSON writes as strings; Triton writes numbers.
INTEGER_KEYS = {
    "dims",
    "shape",
    "count",
    "ns",
    "max_sequence_idle_microseconds",
    "last_inference",
    "inference_count",
    "execution_count",
    "batch_size",
}


def _numbers(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _numbers(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v, key) for v in value]
    if key in INTEGER_KEYS and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def as_json(message: Any) -> Any:
    """A protobuf message as Triton writes it in JSON (field names kept, numbers as numbers)."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return _numbers(data)


class RestApi:
    """The routes, bound to the gRPC API's OIP servicer."""

    def __init__(self, inference: InferenceServicer, tokens: Tokens | None) -> None:
        """Answer with ``inference``'s data plane; ``tokens`` None: no authentication."""
        self.inference = inference
        self.plane = inference._plane
        self.tokens = tokens

    def app(self, max_bytes: int) -> web.Application:
        """The aiohttp application (requests up to ``max_bytes``)."""
        app = web.Application(client_max_size=max_bytes, middlewares=[self._guard])
        model = "/v2/models/{name}"
        versioned = "/v2/models/{name}/versions/{version}"
        routes = [
            web.get("/v2/health/live", self.live),
            web.get("/v2/health/ready", self.ready),
            web.get("/v2", self.server_metadata),
            web.get("/v2/models/stats", self.statistics),
            web.post("/v2/repository/index", self.repository_index),
            web.post("/v2/repository/models/{name}/load", self.load),
            web.post("/v2/repository/models/{name}/unload", self.unload),
        ]
        for prefix in (model, versioned):
            routes += [
                web.get(prefix, self.model_metadata),
                web.get(prefix + "/ready", self.model_ready),
                web.get(prefix + "/config", self.model_config),
                web.get(prefix + "/stats", self.statistics),
                web.post(prefix + "/infer", self.infer),
            ]
        app.add_routes(routes)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Tokens, metrics and errors of every route, as the gRPC gate and observe do."""
        rpc = f"rest.{handler.__name__}"
        name = request.match_info.get("name", "")
        caller = "anonymous" if self.tokens is None else "-"
        if self.tokens is not None and not request.path.startswith(OPEN_PATHS):
            header = request.headers.get("Authorization", "")
            found = self.tokens.caller([("authorization", header)])
            if found is None:
                self.plane.metrics.unauthenticated.inc()
                return _error(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing or unknown bearer token: send 'Authorization: Bearer <token>'",
                )
            caller = found
        CALLER.set(caller)
        started = time.perf_counter()
        try:
            response = await handler(request)
            code = "OK"
        except web.HTTPException:  # aiohttp's own: unknown route, body too large
            self.plane.metrics.count(rpc, "", "INVALID_ARGUMENT")
            raise
        except Exception as err:  # every error leaves as {"error": message}
            status, message = status_of(err, rpc)
            code = status.name
            response = _error(status, message)
        model = self.plane.metrics.model_label(name) if name else ""
        self.plane.metrics.count(rpc, model, code)
        self.plane.metrics.latency.labels(rpc, model).observe(time.perf_counter() - started)
        return response

    async def live(self, request: web.Request) -> web.StreamResponse:
        """200 while the process answers."""
        return web.json_response({"live": True})

    async def ready(self, request: web.Request) -> web.StreamResponse:
        """200 once the models are warm, until draining starts; 400 otherwise."""
        ready = self.plane.store.ready and not self.plane.draining
        return web.json_response({"ready": ready}, status=200 if ready else 400)

    async def server_metadata(self, request: web.Request) -> web.StreamResponse:
        """Name, version and extensions."""
        return web.json_response(
            {"name": "sensorium-serve", "version": server_version(), "extensions": EXTENSIONS}
        )

    def _resolve(self, request: web.Request) -> tuple[Any, Any, str, str]:
        name = request.match_info["name"]
        version = request.match_info.get("version", "")
        model, mouse = convert.resolve(self.plane.store, name, version)
        return model, mouse, name, version

    async def model_metadata(self, request: web.Request) -> web.StreamResponse:
        """Inputs and outputs of an OIP model."""
        model, mouse, name, _ = self._resolve(request)
        versions = sorted(v for n, v in self.plane.store.models if n == model.name)
        return web.json_response(as_json(convert.metadata(name, model, mouse, versions)))

    async def model_ready(self, request: web.Request) -> web.StreamResponse:
        """200 when the model (version) is served and the server is not draining."""
        try:
            self._resolve(request)
        except (NotFoundError, UnavailableError):
            return web.json_response({"ready": False}, status=400)
        ready = not self.plane.draining
        return web.json_response({"ready": ready}, status=200 if ready else 400)

    async def model_config(self, request: web.Request) -> web.StreamResponse:
        """Triton's model configuration."""
        model, mouse, name, _ = self._resolve(request)
        config = oip_config.model_config(name, model, mouse, self.plane.settings)
        return web.json_response(as_json(config))

    async def statistics(self, request: web.Request) -> web.StreamResponse:
        """Statistics of one model (version) or of every model."""
        name, version = request.match_info.get("name", ""), 0
        if name:
            model, _, _, asked = self._resolve(request)
            version = model.version.version if asked else 0
        reply = oip_config.statistics(self.plane.store, self.plane.statistics, name, version)
        return web.json_response(as_json(reply))

    async def repository_index(self, request: web.Request) -> web.StreamResponse:
        """Every version folder and its state (a JSON list)."""
        body = await request.read()
        ready = bool(json.loads(body or b"{}").get("ready", False))
        index = oip_config.repository_index(self.plane, ready)
        return web.json_response([as_json(m) for m in index.models])

    async def load(self, request: web.Request) -> web.StreamResponse:
        """Load (or reload) a model: explicit model control only."""
        await self.inference.repository_call("load", "", request.match_info["name"])
        return web.json_response({})

    async def unload(self, request: web.Request) -> web.StreamResponse:
        """Retire every version of a model: explicit model control only."""
        await self.inference.repository_call("unload", "", request.match_info["name"])
        return web.json_response({})

    async def infer(self, request: web.Request) -> web.StreamResponse:
        """One inference; a sequence's next frames with Triton's sequence parameters."""
        body = await request.read()
        message, binary_output = infer_request(
            body,
            request.headers.get(HEADER_LENGTH),
            request.match_info["name"],
            request.match_info.get("version", ""),
        )
        call = Call("rest.infer", message.model_name)
        reply = await self.inference._infer(message, call)
        return infer_response(reply, binary_output)


def _error(code: grpc.StatusCode, message: str) -> web.Response:
    return web.json_response({"error": message}, status=HTTP_STATUS.get(code, 500))


def _parameter(value: Any) -> Any:
    if isinstance(value, bool):
        return oip.InferParameter(bool_param=value)
    if isinstance(value, int):
        return oip.InferParameter(int64_param=value)
    if isinstance(value, str):
        return oip.InferParameter(string_param=value)
    raise InvalidInputError(f"parameters: {short(repr(value))} is not a bool, integer or string")


def infer_request(
    body: bytes, header_length: str | None, name: str, version: str
) -> tuple[Any, bool]:
    """A REST infer body as an OIP ``ModelInferRequest``, and whether outputs go binary."""
    size = len(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise InvalidInputError(f"{HEADER_LENGTH}: {short(header_length)!r}") from None
        if not 0 < size <= len(body):
            raise InvalidInputError(f"{HEADER_LENGTH}: {size} for a body of {len(body)} bytes")
    try:
        header = json.loads(body[:size])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"request body: not JSON ({err})") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInputError("request body: a JSON object with 'inputs' (a list) expected")
    message = oip.ModelInferRequest(model_name=name, model_version=version)
    message.id = str(header.get("id", ""))
    parameters = header.get("parameters") or {}
    binary_output = bool(parameters.pop("binary_data_output", False))
    for key, value in parameters.items():
        message.parameters[key].CopyFrom(_parameter(value))
    offset = size
    for tensor in header["inputs"]:
        if not isinstance(tensor, dict):
            raise InvalidInputError("inputs: each input is a JSON object")
        item = message.inputs.add(
            name=str(tensor.get("name", "")),
            datatype=str(tensor.get("datatype", "")),
            shape=[int(s) for s in tensor.get("shape", [])],
        )
        binary = (tensor.get("parameters") or {}).get("binary_data_size")
        if binary is not None:
            end = offset + int(binary)
            if end > len(body):
                raise InvalidInputError(f"{item.name}: binary_data_size {binary} past the body")
            message.raw_input_contents.append(body[offset:end])
            offset = end
        else:
            message.raw_input_contents.append(_raw(item.name, item.datatype, tensor.get("data")))
    for output in header.get("outputs") or []:
        message.outputs.add(name=str(output.get("name", "")))
        if (output.get("parameters") or {}).get("binary_data"):
            binary_output = True
    return message, binary_output


def _raw(name: str, datatype: str, data: Any) -> bytes:
    """JSON ``data`` as raw little-endian bytes of ``datatype``."""
    if datatype not in convert.DTYPES:
        raise InvalidInputError(
            f"{short(name)}: datatype {short(datatype)!r}, expected one of {sorted(convert.DTYPES)}"
        )
    if data is None:
        raise InvalidInputError(f"{short(name)}: neither 'data' nor binary_data_size")
    try:
        array = np.asarray(data, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InvalidInputError(f"{short(name)}: 'data' must be numbers") from None
    return array.astype(convert.DTYPES[datatype]).tobytes()


def infer_response(reply: Any, binary: bool) -> web.Response:
    """An OIP ``ModelInferResponse`` as JSON, or JSON plus binary outputs."""
    header: dict[str, Any] = {
        "model_name": reply.model_name,
        "model_version": reply.model_version,
        "outputs": [],
    }
    if reply.id:
        header["id"] = reply.id
    blobs = []
    for tensor, raw in zip(reply.outputs, reply.raw_output_contents, strict=True):
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": [int(s) for s in tensor.shape],
        }
        if binary:
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = np.frombuffer(raw, convert.DTYPES[tensor.datatype]).tolist()
        header["outputs"].append(entry)
    text = json.dumps(header).encode()
    if not binary:
        return web.Response(body=text, content_type="application/json")
    return web.Response(
        body=b"".join([text, *blobs]),
        headers={HEADER_LENGTH: str(len(text))},
        content_type="application/octet-stream",
    )


async def start(
    api: RestApi,
    host: str,
    port: int,
    max_bytes: int,
    tls: ssl.SSLContext | None,
    grace_s: float,
) -> tuple[web.AppRunner, int]:
    """Serve ``api`` on host:port (0: any free port); returns the runner and the port.

    At shutdown, calls in flight get ``grace_s`` to finish.
    """
    runner = web.AppRunner(
        api.app(max_bytes), access_log=None, handle_signals=False, shutdown_timeout=grace_s
    )
    await runner.setup()
    sock = listening_socket(host, port)
    site = web.SockSite(runner, sock, ssl_context=tls)
    await site.start()
    return runner, int(sock.getsockname()[1])


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, listening.

    A wildcard host ("[::]", "0.0.0.0", "") takes IPv4 and IPv6 on one port, where
    asyncio would bind IPv6 only, or each family to a port 0 of its own.
    """
    address = host.strip("[]")
    if address in ("", "::", "0.0.0.0") and socket.has_dualstack_ipv6():
        return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    if address in ("", "::", "0.0.0.0"):
        return socket.create_server(("0.0.0.0", port))
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.create_server((address, port), family=family)
