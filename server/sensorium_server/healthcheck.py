"""``sensorium-healthcheck``: exit 0 when the local server's health service says SERVING.

For container HEALTHCHECKs: no extra binary, follows ``SENSORIUM_PORT``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: Sequence[str] | None = None) -> int:
    """Check ``localhost:$SENSORIUM_PORT`` (or the target given) once; 0 if SERVING."""
    args = list(sys.argv[1:] if argv is None else argv)
    target = args[0] if args else f"localhost:{os.environ.get('SENSORIUM_PORT', '8001')}"
    try:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=3
            )
    except grpc.RpcError as err:
        print(f"{target}: {err.code().name}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
