"""The Softplus and Elu rewrites compute what ONNX Runtime's kernels do."""

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


def test_elu_rewrite_matches_the_kernel_and_is_only_done_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "elu.onnx"
    _graph(path, "Elu")
    x = np.concatenate([np.linspace(-100, 100, 20001), [-1e30, 1e30, 0.0, -1e-8, 1e-8]])
    x = x.astype(np.float32)
    before = _run(path, x)
    assert rewrite(path) == 0  # whole-clip graphs keep their ELUs
    assert rewrite(path, elu=True) == 1
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops == ["Min", "Exp", "Sub", "Max"]
    after = _run(path, x)
    assert np.isfinite(after).all()
    assert np.abs(after - before).max() <= 1e-6
    assert np.array_equal(after[x >= 0], x[x >= 0])  # the positive side is x itself


def test_an_elu_with_another_alpha_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "elu2.onnx"
    graph = helper.make_graph(
        [helper.make_node("Elu", ["x"], ["y"], name="f", alpha=0.5)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    assert rewrite(path, elu=True) == 0
