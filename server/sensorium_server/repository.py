"""Reading and verifying model versions of a model repository (no torch).

Layout (Triton-style)::

    <repository>/<model>/<version>/manifest.json
    <repository>/<model>/<version>/mice/<session>/{clip,step}.onnx

The step graph is optional: a version without one (a user's clip-only model) streams
by window when its manifest declares a checked window, or not at all (``streaming``).

A version is read only if its manifest is well formed, every file it lists is
present with the recorded size and SHA-256, and every graph opens in ONNX Runtime
with the inputs and outputs (names and fixed extents) that the manifest declares.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime as ort

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT = "sensorium-serve model v1"
REQUIRED = {
    "format": str,
    "name": str,
    "version": int,
    "architecture": str,
    "causal": bool,
    "frame": dict,
    "input_channels": list,
    "burn_in_frames": int,
    "mice": list,
    "graphs": dict,
    "state": list,
    "files": dict,
    "training": dict,
}


class RepositoryError(ValueError):
    """A model version that cannot be served; the message names the file and the fault."""


@dataclass(frozen=True)
class MouseGraphs:
    """The graphs of one mouse of a version."""

    mouse: str
    neuron_count: int
    neuron_ids: list[int]
    clip: Path
    step: Path | None
    ring: Path | None = None  # the step graph as a ring graph (server/sensorium_server/ring.py)


STREAMING_MODES = ("state", "window", "none")


@dataclass(frozen=True)
class Streaming:
    """How a version streams: ``state`` (step graph), ``window`` (clip graph) or ``none``."""

    mode: str
    window_frames: int = 0
    latency_frames: int = 0


def streaming_of(manifest: dict[str, Any], file: Path) -> Streaming:
    """The manifest's ``streaming`` entry, checked (default: state with a step graph, else none)."""
    has_step = "step" in manifest["graphs"]
    entry = manifest.get("streaming", {"mode": "state" if has_step else "none"})
    if not isinstance(entry, dict) or entry.get("mode") not in STREAMING_MODES:
        raise RepositoryError(
            f"{file}: 'streaming' needs a mode in {STREAMING_MODES}, got {entry!r}"
        )
    window, latency = entry.get("window_frames", 0), entry.get("latency_frames", 0)
    if not (isinstance(window, int) and isinstance(latency, int)) or window < 0 or latency < 0:
        raise RepositoryError(f"{file}: streaming window and latency must be integers >= 0")
    mode = entry["mode"]
    if mode == "state" and not has_step:
        raise RepositoryError(f"{file}: streaming mode 'state' needs a step graph")
    if mode == "window" and not latency < window:
        raise RepositoryError(
            f"{file}: streaming by window needs window_frames > latency_frames, got "
            f"{window} and {latency}"
        )
    return Streaming(mode, window if mode == "window" else 0, latency if mode == "window" else 0)


@dataclass(frozen=True)
class ModelVersion:
    """A verified model version."""

    name: str
    version: int
    path: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    mice: dict[str, MouseGraphs]
    streaming: Streaming = Streaming("state")

    @property
    def state_compatible(self) -> frozenset[str]:
        """Manifest SHA-256s of versions whose stream state continues on this one.

        A re-export (``sensorium-export --from-version``) lists the version it replaced
        after checking that its graphs step the same state.
        """
        listed = self.manifest.get("state_compatible_with", [])
        return frozenset(s for s in listed if isinstance(s, str)) | {self.manifest_sha256}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(path: Path) -> tuple[dict[str, Any], str]:
    file = path / MANIFEST
    if not file.is_file():
        raise RepositoryError(f"{file}: missing; every version folder needs a manifest")
    raw = file.read_bytes()
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RepositoryError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise RepositoryError(f"{file}: expected a JSON object")
    for key, kind in REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            raise RepositoryError(f"{file}: field {key!r} missing or not a {kind.__name__}")
    if manifest["format"] != FORMAT:
        raise RepositoryError(f"{file}: format {manifest['format']!r}, expected {FORMAT!r}")
    if str(manifest["version"]) != path.name:
        raise RepositoryError(
            f"{file}: version {manifest['version']} does not match its folder {path.name!r}"
        )
    return manifest, hashlib.sha256(raw).hexdigest()


def _verify_files(path: Path, files: dict[str, Any]) -> None:
    for rel, meta in files.items():
        file = path / rel
        if not file.is_file():
            raise RepositoryError(f"{file}: missing; the manifest lists it")
        size = file.stat().st_size
        if size != meta.get("bytes"):
            raise RepositoryError(
                f"{file}: {size} bytes, the manifest records {meta.get('bytes')} (truncated?)"
            )
        if _sha256(file) != meta.get("sha256"):
            raise RepositoryError(f"{file}: SHA-256 does not match the manifest (corrupted?)")


def _check_graph(file: Path, spec: dict[str, Any], neurons: int) -> None:
    """Open ``file`` and compare its inputs and outputs with the manifest's ``spec``."""
    try:
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises several unrelated types
        raise RepositoryError(f"{file}: ONNX Runtime cannot load it ({err})") from None
    actual = {
        "inputs": {i.name: i.shape for i in session.get_inputs()},
        "outputs": {o.name: o.shape for o in session.get_outputs()},
    }
    for side in ("inputs", "outputs"):
        declared = {d["name"]: d["shape"] for d in spec.get(side, [])}
        if set(declared) != set(actual[side]):
            raise RepositoryError(
                f"{file}: graph {side} {sorted(actual[side])} do not match the manifest's "
                f"{sorted(declared)}"
            )
        for name, shape in declared.items():
            real = actual[side][name]
            fixed = [neurons if d == "neurons" else d for d in shape]
            if len(real) != len(fixed) or any(
                isinstance(want, int) and want != got
                for want, got in zip(fixed, real, strict=False)
            ):
                raise RepositoryError(
                    f"{file}: {side[:-1]} {name} has shape {real}, the manifest says {fixed}"
                )


def read_version(path: str | Path) -> ModelVersion:
    """Read and verify one version folder.

    Raises:
        RepositoryError: naming the file and what is wrong with it.
    """
    path = Path(path)
    manifest, digest = _read_manifest(path)
    _verify_files(path, manifest["files"])
    streaming = streaming_of(manifest, path / MANIFEST)
    kinds = [k for k in ("clip", "step") if k in manifest["graphs"]]
    if "clip" not in kinds:
        raise RepositoryError(f"{path / MANIFEST}: 'graphs' has no clip graph")
    mice = {}
    for entry in manifest["mice"]:
        graphs: dict[str, Path] = {}
        for kind in kinds:
            rel = entry.get("graphs", {}).get(kind)
            if rel not in manifest["files"]:
                raise RepositoryError(
                    f"{path / MANIFEST}: {kind} graph of {entry.get('mouse')} is not in 'files'"
                )
            _check_graph(path / rel, manifest["graphs"][kind], int(entry["neuron_count"]))
            graphs[kind] = path / rel
        if len(entry["neuron_ids"]) != entry["neuron_count"]:
            raise RepositoryError(
                f"{path / MANIFEST}: {entry['mouse']} lists {len(entry['neuron_ids'])} neuron "
                f"ids for {entry['neuron_count']} neurons"
            )
        ring = entry.get("graphs", {}).get("ring")
        if ring is not None and (ring not in manifest["files"] or "step" not in graphs):
            raise RepositoryError(
                f"{path / MANIFEST}: ring graph of {entry.get('mouse')} is not in 'files' "
                "or has no step graph"
            )
        mice[entry["mouse"]] = MouseGraphs(
            entry["mouse"],
            int(entry["neuron_count"]),
            list(entry["neuron_ids"]),
            graphs["clip"],
            graphs.get("step"),
            None if ring is None else path / ring,
        )
    return ModelVersion(
        manifest["name"], manifest["version"], path, manifest, digest, mice, streaming
    )


def list_versions(repository: str | Path) -> list[Path]:
    """Every ``<model>/<integer version>`` folder of a repository, sorted."""
    root = Path(repository)
    return sorted(
        (
            v
            for m in root.iterdir()
            if m.is_dir()
            for v in m.iterdir()
            if v.is_dir() and v.name.isdigit()
        ),
        key=lambda v: (v.parent.name, int(v.name)),
    )
