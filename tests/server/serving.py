"""A real server, in-process on its own event loop thread, on port 0."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sensorium_server.server import Server, create_server
from sensorium_server.settings import Settings

T = TypeVar("T")


class ServerThread:
    """Runs :func:`create_server` on a private loop so that tests can stay synchronous."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server: Server = self.run(create_server(settings))

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self, load: bool = True) -> ServerThread:
        self.run(self.server.start())
        if load:
            self.run(self.server.load_models())
        return self

    @property
    def target(self) -> str:
        return f"localhost:{self.server.port}"

    @property
    def sessions(self) -> int:
        return len(self.server.plane.sessions)

    def stop(self) -> None:
        self.run(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
