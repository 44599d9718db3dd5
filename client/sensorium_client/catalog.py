"""The descriptions of model versions a client has asked for, kept for reuse."""

from __future__ import annotations

import time

from sensorium_client.messages import ModelInfo


class ModelCatalog:
    """:class:`ModelInfo` by (name, version) as asked.

    A numbered version is kept for good; what "latest" (version 0) or "the only
    model" (empty name) resolves to moves with rollouts on the server, so those
    entries are asked again after ``ttl_s``.
    """

    def __init__(self, ttl_s: float) -> None:
        """Reuse moving entries for ``ttl_s`` seconds."""
        self.ttl_s = ttl_s
        self._entries: dict[tuple[str, int], tuple[ModelInfo, float]] = {}

    def get(self, name: str, version: int) -> ModelInfo | None:
        """The kept description, or None when there is none or it is due again."""
        entry = self._entries.get((name, version))
        if entry is None:
            return None
        info, at = entry
        moving = version == 0 or not name
        if moving and time.monotonic() - at >= self.ttl_s:
            return None
        return info

    def put(self, name: str, version: int, info: ModelInfo) -> ModelInfo:
        """Keep ``info`` as the answer to (name, version); returns it."""
        self._entries[(name, version)] = (info, time.monotonic())
        return info
