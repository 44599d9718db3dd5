"""What a model version records of its training data: names and fingerprints, not paths.

A manifest travels with the model (into images, to other labs); the absolute paths of
the machine that trained it mean nothing there and disclose its layout. Each dataset
is recorded as its folder name (the session name, e.g. ``dynamic29515-10-12-Video-...``)
and a fingerprint: the SHA-256 over every file's relative path and size and over the
bytes of ``meta/`` (tiers, neuron ids, statistics). Two copies of a release have the
same fingerprint; a changed trial, tier or statistic gives another. It reads
megabytes, not the gigabytes of the trials themselves.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def fingerprint(folder: str | Path) -> str:
    """Hex SHA-256 of a session folder's listing (paths, sizes) and its ``meta/`` bytes."""
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        digest.update(f"{relative}\0{path.stat().st_size}\n".encode())
        if relative.startswith("meta/"):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def dataset_record(entry: Any) -> dict[str, str]:
    """A manifest's record of one dataset: a path (fingerprinted when it exists) or a record."""
    if isinstance(entry, dict):
        return {
            "name": str(entry.get("name", "")),
            "fingerprint": str(entry.get("fingerprint", "")),
        }
    path = Path(str(entry))
    return {"name": path.name, "fingerprint": fingerprint(path) if path.is_dir() else ""}


def dataset_name(entry: Any) -> str:
    """The name of a recorded dataset (older manifests recorded a path: its last part)."""
    if isinstance(entry, dict):
        return str(entry.get("name", ""))
    return Path(str(entry)).name
