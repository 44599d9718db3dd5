"""The transport floor: a bare gRPC stream that answers each message at once.

``make bench-serving`` times it beside the served stream: the same message sizes
(a uint8 36 x 64 frame in, 8,000 float32 responses out), the same pattern (a
``grpc.aio`` server in its own process; a synchronous client stream fed from a
queue, as the SDK's), so the server's overhead can be read against what gRPC in
Python costs on this machine with no work at all. Run alone, it serves on a free
port and prints it.
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

SERVICE, METHOD = "bench.Echo", "Stream"
REQUEST_BYTES, REPLY_BYTES = 2_400, 32_100


async def _serve() -> None:
    reply = bytes(REPLY_BYTES)

    async def answer(requests: AsyncIterator[bytes], _: Any) -> AsyncIterator[bytes]:
        async for _request in requests:
            yield reply

    server = grpc.aio.server()
    handler = grpc.stream_stream_rpc_method_handler(answer)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),)
    )
    port = server.add_insecure_port("localhost:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def transport_floor(steps: int) -> list[float]:
    """Round-trip ms of ``steps`` messages on a bare stream (after 50 unmeasured)."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__))], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        with grpc.insecure_channel(f"localhost:{port}") as channel:
            call = channel.stream_stream(f"/{SERVICE}/{METHOD}")(iter(requests.get, None))
            message, times = bytes(REQUEST_BYTES), []
            for _ in range(steps + 50):
                start = time.perf_counter()
                requests.put(message)
                next(call)
                times.append((time.perf_counter() - start) * 1e3)
            requests.put(None)
        return times[50:]
    finally:
        process.kill()
        process.wait()


if __name__ == "__main__":
    asyncio.run(_serve())
