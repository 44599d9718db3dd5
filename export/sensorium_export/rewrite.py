"""Graph rewrites after export: slow ONNX Runtime kernels into fast equivalents.

ONNX Runtime's CPU ``Softplus`` kernel evaluates one element at a time: 94 us for the
8,000 neurons of a step, against 50 us for the same function written with its
vectorised ``Exp``, ``Log`` and ``Max`` kernels (profiled in the step graph; ``Elu``,
tried the same way, gained nothing and is left alone). Outputs agree to float
rounding (about 1e-7):

``Softplus(x)`` = ``Max(x, 0) + Log(1 + Exp(-Abs(x)))`` (no overflow for large x).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _constants(graph: onnx.GraphProto) -> tuple[str, str]:
    names = {i.name for i in graph.initializer}
    zero, one = "rewrite_zero", "rewrite_one"
    if zero not in names:
        graph.initializer.append(numpy_helper.from_array(np.array(0.0, np.float32), zero))
        graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
    return zero, one


def _softplus(node: onnx.NodeProto, zero: str, one: str) -> list[onnx.NodeProto]:
    x, y, n = node.input[0], node.output[0], node.name or node.output[0]
    steps = [
        ("Abs", [x], "abs"),
        ("Neg", [f"{n}/abs"], "negabs"),
        ("Exp", [f"{n}/negabs"], "exp"),
        ("Add", [f"{n}/exp", one], "plus1"),
        ("Log", [f"{n}/plus1"], "log"),
        ("Max", [x, zero], "above"),
    ]
    nodes = [helper.make_node(op, ins, [f"{n}/{out}"], name=f"{n}/{out}") for op, ins, out in steps]
    return [*nodes, helper.make_node("Add", [f"{n}/above", f"{n}/log"], [y], name=f"{n}/sum")]


def rewrite(path: Path) -> int:
    """Rewrite ``path`` in place; returns how many nodes were replaced."""
    model = onnx.load(str(path))
    graph = model.graph
    if not any(n.op_type == "Softplus" and not n.domain for n in graph.node):
        return 0
    zero, one = _constants(graph)
    nodes, replaced = [], 0
    for node in graph.node:
        if node.op_type == "Softplus" and not node.domain:
            nodes.extend(_softplus(node, zero, one))
            replaced += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return replaced
