"""A version is verified when read: checksums, sizes, graphs vs manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sensorium_server.repository import RepositoryError, list_versions, read_version


@pytest.fixture
def version(tiny_version: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo" / "tiny" / "1"
    shutil.copytree(tiny_version, copy)
    return copy


def _manifest(version: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((version / "manifest.json").read_text())


def _save(version: Path, manifest: dict) -> None:  # type: ignore[type-arg]
    (version / "manifest.json").write_text(json.dumps(manifest))


def test_reads_a_good_version(version: Path) -> None:
    loaded = read_version(version)
    assert (loaded.name, loaded.version) == ("tiny", 1)
    (mouse,) = loaded.mice.values()
    assert mouse.neuron_count == 40
    assert len(loaded.manifest_sha256) == 64
    assert list_versions(version.parent.parent) == [version]


def test_corrupted_graph(version: Path) -> None:
    graph = next(version.rglob("clip.onnx"))
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(RepositoryError, match=r"clip\.onnx: SHA-256 does not match"):
        read_version(version)


def test_truncated_graph(version: Path) -> None:
    graph = next(version.rglob("step.onnx"))
    graph.write_bytes(graph.read_bytes()[:1000])
    with pytest.raises(RepositoryError, match=r"step\.onnx: 1000 bytes, .* \(truncated\?\)"):
        read_version(version)


def test_garbage_graph_with_matching_checksum(version: Path) -> None:
    """A manifest rewritten to match a broken file: ONNX Runtime's load catches it."""
    graph = next(version.rglob("clip.onnx"))
    graph.write_bytes(b"not a graph")
    manifest = _manifest(version)
    rel = str(graph.relative_to(version))
    import hashlib

    manifest["files"][rel] = {"sha256": hashlib.sha256(b"not a graph").hexdigest(), "bytes": 11}
    _save(version, manifest)
    with pytest.raises(RepositoryError, match="ONNX Runtime cannot load it"):
        read_version(version)


def test_manifest_that_does_not_match_its_graphs(version: Path) -> None:
    manifest = _manifest(version)
    manifest["graphs"]["step"]["inputs"][3]["shape"][1] = 99
    _save(version, manifest)
    with pytest.raises(RepositoryError, match=r"input state_0 has shape .* the manifest says"):
        read_version(version)
    manifest["graphs"]["step"]["inputs"][3]["shape"][1] = 24
    manifest["graphs"]["clip"]["outputs"][0]["name"] = "rates"
    _save(version, manifest)
    with pytest.raises(RepositoryError, match=r"graph outputs .* do not match"):
        read_version(version)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("files"), "field 'files' missing"),
        (lambda m: m.update(version=3), "version 3 does not match its folder '1'"),
        (lambda m: m.update(format="other"), "format 'other'"),
    ],
)
def test_malformed_manifest(version: Path, edit: object, message: str) -> None:
    manifest = _manifest(version)
    edit(manifest)  # type: ignore[operator]
    _save(version, manifest)
    with pytest.raises(RepositoryError, match=message):
        read_version(version)


def test_missing_graph_and_manifest(version: Path) -> None:
    next(version.rglob("step.onnx")).unlink()
    with pytest.raises(RepositoryError, match=r"step\.onnx: missing"):
        read_version(version)
    (version / "manifest.json").unlink()
    with pytest.raises(RepositoryError, match=r"manifest\.json: missing"):
        read_version(version)


def test_clip_sessions_do_not_spin_and_step_sessions_keep_the_default() -> None:
    from sensorium_server.runtime import _open
    from sensorium_server.settings import Settings
    from tests.serving import DEFAULT_MODEL

    graph = next(DEFAULT_MODEL.glob("mice/*/clip.onnx"))
    settings = Settings(model_repository=DEFAULT_MODEL.parents[1], providers="cpu")
    clip = _open(graph, settings, 2, "idle", arena=False)
    step = _open(graph, settings, 1)
    key = "session.intra_op.allow_spinning"
    assert clip.get_session_options().get_session_config_entry(key) == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):
        step.get_session_options().get_session_config_entry(key)  # ORT's default: spin
