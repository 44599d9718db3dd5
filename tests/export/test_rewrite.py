"""The Softplus rewrite computes what ONNX Runtime's Softplus does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from sensorium_export.rewrite import rewrite


def _graph(path: Path, op: str) -> None:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name="f")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_softplus_rewrite_matches_the_kernel_from_far_negative_to_far_positive(
    tmp_path: Path,
) -> None:
    path = tmp_path / "softplus.onnx"
    _graph(path, "Softplus")
    x = np.concatenate([np.linspace(-100, 100, 20001), [-1e30, 1e30, 0.0]]).astype(np.float32)
    before = _run(path, x)
    assert rewrite(path) == 1
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "Softplus" not in ops
    after = _run(path, x)
    assert np.isfinite(after).all()
    assert np.abs(after - before).max() <= 1e-6 * max(1.0, float(np.abs(before).max()))


def test_graphs_without_softplus_are_left_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "elu.onnx"
    _graph(path, "Elu")
    written = path.read_bytes()
    assert rewrite(path) == 0
    assert path.read_bytes() == written
