"""The gRPC health service, whose ``Watch`` streams end cleanly when the server drains.

grpcio-health-checking's asyncio servicer keeps every ``Watch`` open until the server
cancels it at the end of the drain grace (holding the exit that long, and logging the
cancellation). Here a watcher gets NOT_SERVING at drain and its call ends with OK.
"""

from __future__ import annotations

from typing import Any

from grpc_health.v1 import health, health_pb2


class HealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1.Health``; ``Watch`` ends after reporting the drain."""

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:  # noqa: N802
        """Send the status now and on every change; end once the server drains."""
        condition = self._server_watchers[request.service]
        last_status = None
        async with condition:
            while True:
                status = self._server_status.get(
                    request.service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                )
                if status != last_status:
                    await context.write(health_pb2.HealthCheckResponse(status=status))
                    last_status = status
                if self._gracefully_shutting_down:
                    return
                await condition.wait()
