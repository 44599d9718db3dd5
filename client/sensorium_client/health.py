"""The standard gRPC health check, for ``client health`` and ``sensorium-healthcheck``.

``sensorium-healthcheck`` is for container HEALTHCHECKs: no extra binary, it checks
``localhost:$SENSORIUM_PORT`` (or the target given) once and exits 0 when SERVING.
When the server uses TLS (``SENSORIUM_TLS_CERT`` is set, as the server reads it) it
connects with TLS, trusting ``SENSORIUM_HEALTHCHECK_CA`` or that certificate, and
checks the name ``SENSORIUM_HEALTHCHECK_SERVER_NAME`` when set (else the target's).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(channel: grpc.Channel, service: str = "", timeout: float = 2.0) -> str:
    """The serving status name (``SERVING``, ``NOT_SERVING``, ...) or ``unreachable (CODE)``."""
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    except grpc.RpcError as err:
        return f"unreachable ({err.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _channel(target: str) -> grpc.Channel:
    """Plaintext, or TLS when the server's environment configures TLS."""
    trust = os.environ.get("SENSORIUM_HEALTHCHECK_CA") or os.environ.get("SENSORIUM_TLS_CERT")
    if not trust:
        return grpc.insecure_channel(target)
    with open(trust, "rb") as handle:
        credentials = grpc.ssl_channel_credentials(handle.read())
    # Probes dial localhost; the certificate may name the Service instead.
    name = os.environ.get("SENSORIUM_HEALTHCHECK_SERVER_NAME")
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(target, credentials, options=options)


def main(argv: Sequence[str] | None = None) -> int:
    """Check once; 0 if SERVING."""
    args = list(sys.argv[1:] if argv is None else argv)
    target = args[0] if args else f"localhost:{os.environ.get('SENSORIUM_PORT', '8001')}"
    with _channel(target) as channel:
        status = check(channel, timeout=3)
    print(f"{target}: {status}", file=sys.stdout if status == "SERVING" else sys.stderr)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
