"""The live repository: versions loaded and retired while the server serves.

``--model-control`` (Triton's names):

- ``none``: the repository is read once, at start-up.
- ``poll``: every ``--repository-poll-s`` seconds the repository is compared with
  what is served. A version the ``--versions`` policy now selects is loaded in the
  background (verified, opened, warmed and parity-checked as at start-up) while the
  served ones go on answering; a version whose files changed is loaded again and
  replaces the old one once it passed; a version no longer selected (removed, or
  superseded under ``latest:N``) is retired once a successor is served (a version
  whose folder is removed is retired at once; one whose successor fails to load
  serves on).
- ``explicit``: nothing changes by itself; ``RepositoryModelLoad`` (reads that model's
  folder again, as a poll would) and ``RepositoryModelUnload`` (retires every version
  of it) do it, over OIP gRPC and REST.

Retiring a version only takes it out of the lookup: new calls and new streams go to
the versions served now, while streams already open on it hold it and finish on it
(or move by the drain handoff); its ONNX Runtime sessions are freed with the last of
them. A version that fails to load is logged, listed by ``RepositoryIndex`` with the
reason, and tried again only once its files change (a copy still in progress fails,
then loads at the next poll after it is complete).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sensorium_server.errors import FailedPreconditionError, NotFoundError, short
from sensorium_server.repository import RepositoryError
from sensorium_server.runtime import LoadedModel, ModelStore, load_version, select_versions
from sensorium_server.settings import Settings

logger = logging.getLogger(__name__)
Signature = tuple[tuple[str, int, int], ...]


def signature(path: Path) -> Signature:
    """Every file under a version folder as (relative path, size, mtime): changes on any edit."""
    entries = []
    for file in sorted(path.rglob("*")):
        with contextlib.suppress(OSError):  # a file removed while we look
            if file.is_file():
                stat = file.stat()
                entries.append((str(file.relative_to(path)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


@dataclass
class Changes:
    """What one sync did."""

    loaded: list[tuple[str, int]] = field(default_factory=list)
    retired: list[tuple[str, int]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        """True when anything changed."""
        return bool(self.loaded or self.retired or self.failed)


class LiveRepository:
    """Keeps ``store`` in step with the repository on disk (see the module docstring)."""

    def __init__(
        self,
        store: ModelStore,
        settings: Settings,
        on_change: Callable[[Changes], Awaitable[None]],
    ) -> None:
        """``on_change`` is awaited after every sync that changed something."""
        self.store, self.settings, self.on_change = store, settings, on_change
        self.signatures: dict[str, Signature] = {}  # path -> files when loaded or tried
        self.unloaded: set[str] = set()  # models unloaded on request (explicit control)
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None

    @property
    def mode(self) -> str:
        """``none``, ``poll`` or ``explicit``."""
        return self.settings.effective_model_control

    def remember_loaded(self) -> None:
        """Record the files of what the start-up load served or refused."""
        for path in [str(m.version.path) for m in self.store.models.values()]:
            self.signatures[path] = signature(Path(path))
        for path in self.store.failures:
            self.signatures[path] = signature(Path(path))

    def start(self) -> None:
        """Start polling (``poll`` mode only)."""
        if self.mode == "poll" and self._poller is None:
            self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        """Stop polling; a load in progress is abandoned."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.repository_poll_s)
            try:
                await self.sync()
            except RepositoryError as err:  # the repository folder itself is gone
                logger.warning("repository poll: %s; serving what is loaded", err)

    async def load(self, model: str) -> Changes:
        """Explicit control: (re)read ``model``'s folder and serve what the policy selects.

        Raises:
            FailedPreconditionError: not in explicit mode, or no version could be served.
            NotFoundError: the repository has no such model.
        """
        self._explicit("RepositoryModelLoad")
        if not (self.settings.model_repository / model).is_dir() or "/" in model:
            raise NotFoundError(
                f"model {short(model)!r} is not in the repository {self.settings.model_repository}"
            )
        self.unloaded.discard(model)
        changes = await self.sync(model)
        if not any(name == model for name, _ in self.store.models):
            failures = {
                p: e for p, e in self.store.failures.items() if Path(p).parent.name == model
            }
            raise FailedPreconditionError(
                f"model {short(model)!r}: no version could be served: "
                f"{failures or 'no version selected by --versions ' + self.settings.versions}"
            )
        return changes

    async def unload(self, model: str) -> Changes:
        """Explicit control: retire every version of ``model`` until it is loaded again.

        Raises:
            FailedPreconditionError: not in explicit mode.
            NotFoundError: no version of ``model`` is served.
        """
        self._explicit("RepositoryModelUnload")
        if not any(name == model for name, _ in self.store.models):
            raise NotFoundError(f"model {short(model)!r} is not served; nothing to unload")
        self.unloaded.add(model)
        return await self.sync(model)

    def _explicit(self, call: str) -> None:
        if self.mode != "explicit":
            raise FailedPreconditionError(
                f"{call} needs --model-control explicit; this server runs with "
                f"--model-control {self.mode}"
            )

    async def sync(self, only: str | None = None) -> Changes:
        """Load what the policy selects and is not served; retire what it no longer selects.

        ``only`` limits the sync to one model. New versions are loaded before old ones
        are retired, so a model is never without a served version in between.
        """
        async with self._lock:
            changes = await self._sync(only)
        if changes:
            await self.on_change(changes)
        return changes

    async def _sync(self, only: str | None) -> Changes:
        root = self.settings.model_repository
        if not root.is_dir():
            raise RepositoryError(f"{root}: model repository not found")
        wanted = [
            p
            for p in select_versions(root, self.settings.versions)
            if p.parent.name not in self.unloaded and only in (None, p.parent.name)
        ]
        changes = Changes()
        served = {str(m.version.path): key for key, m in self.store.models.items()}
        for path in wanted:
            files = signature(path)
            if self.signatures.get(str(path)) == files:
                continue  # served as it is, or refused with these very files
            self.signatures[str(path)] = files
            model = await self._load(path, changes)
            if model is None:
                continue
            key = (model.name, model.version.version)
            if key in self.store.models and str(self.store.models[key].version.path) != str(path):
                changes.failed[str(path)] = f"{key} is already served from another folder"
                logger.error("not serving %s: %s", path, changes.failed[str(path)])
                continue
            self.store.models[key] = model
            self.store.failures.pop(str(path), None)
            served[str(path)] = key
            changes.loaded.append(key)
            logger.info("loaded %s version %d (%d mice)", key[0], key[1], len(model.mice))
        keep = {str(p) for p in wanted}
        succeeded = {key[0] for folder, key in served.items() if folder in keep}
        for folder, key in list(served.items()):
            if folder in keep or (only is not None and key[0] != only):
                continue
            removed = key[0] in self.unloaded or not Path(folder).is_dir()
            if not removed and key[0] not in succeeded:
                continue  # its successor failed: it serves on until one loads
            del self.store.models[key]
            self.signatures.pop(folder, None)
            changes.retired.append(key)
            logger.info("retired %s version %d (open streams finish on it)", *key)
        for gone in list(self.store.failures):  # failures of folders that are gone
            if not Path(gone).is_dir():
                del self.store.failures[gone]
                self.signatures.pop(gone, None)
        return changes

    async def _load(self, path: Path, changes: Changes) -> LoadedModel | None:
        """Load one version off the event loop; None (and the reason kept) when it fails."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, load_version, path, self.settings)
        except Exception as err:  # RepositoryError, or whatever ONNX Runtime raised
            reason = str(err) if isinstance(err, RepositoryError) else f"{path}: {err!r}"
            self.store.failures[str(path)] = reason
            changes.failed[str(path)] = reason
            logger.error("not serving %s: %s", path, reason)
            return None
