"""The ring graph of a step graph: one stream's step with state that is never shifted.

A step graph takes each temporal layer's state (its last T input frames, ``state_<i>``
(B, C, T, H, W)), appends the new frames (Concat), convolves in time (K taps, dilation
d, T = (K - 1) d) and hands back the last T frames (Slice): every step copies the
whole state twice (1.8 MB for the default model), though the convolution reads K
frames of it. The ring graph steps one frame of one stream (B = 1, k = 1) and keeps
each state as a ring of T + 1 frames, time first:

- inputs ``video`` (1, 1, H, W), ``behavior`` and ``pupil_center`` (1, 1, 2), one
  ``ring_<i>`` (T + 1, 1, C, H, W) per state, and ``ring_head`` (int64 scalar, the
  stream's step count: slot ``head mod (T + 1)`` of each ring holds its oldest frame);
- each temporal layer gathers its K - 1 past frames (slots ``(head + j d) mod (T + 1)``,
  j < K - 1), stacks the new frame after them (K frames, time first, one matrix of
  K * C rows) and runs the convolution as one matrix product (weights (C_out, K * C));
- outputs ``responses`` (1, 1, N) and ``frame_<i>`` (1, 1, C, H, W): the new frame,
  which the caller binds to the ring's free slot, ``(head + T) mod (T + 1)`` (outside
  the frames read this step), so it is written in place; the head then moves on by one;
- the spatial convolutions of the one frame run as 2D convolutions (:func:`_planar`).

Responses match the step graph's to float rounding (the products summed in another
order; 8.8e-8 relative on the default model). Without the 2D convolutions, a step of
the default model ran 0.82 of the step graph's time stepped back to back and 0.90
with 30 ms between steps, as a 30 Hz rig steps (interleaved rounds, one process,
2026-12-03); with them, 0.91 of that again. A step graph whose temporal layers are
not Concat(state, x) -> Conv (K x 1 x 1) with a Slice making ``new_state_<i>`` has no
ring graph (:class:`NoRingError`); its streams use the step graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HEAD = "ring_head"


class NoRingError(ValueError):
    """The step graph's state is not kept in the form a ring graph replaces."""


@dataclass(frozen=True)
class RingLayer:
    """One state of a ring graph."""

    state: str  # the step graph's input, e.g. "state_0"
    ring: str  # the ring graph's input, e.g. "ring_0"
    frame: str  # the ring graph's output, e.g. "frame_0"
    frames: int  # T: frames of state; the ring holds T + 1
    kernel: int  # K
    dilation: int


def _consumers(graph: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in graph.node if name in n.input]


def _attribute(node: onnx.NodeProto, name: str) -> onnx.AttributeProto:
    found = next((a for a in node.attribute if a.name == name), None)
    if found is None:
        raise NoRingError(f"{node.name}: no {name} attribute")
    return found


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _parts(graph: onnx.GraphProto, state: str) -> tuple[onnx.NodeProto, ...]:
    """The Concat, Conv and Slice of one state, checked."""
    uses = _consumers(graph, state)
    if len(uses) != 1 or uses[0].op_type != "Concat" or list(uses[0].input)[:1] != [state]:
        raise NoRingError(f"{state} is not only appended to (Concat)")
    joined = uses[0]
    if _attribute(joined, "axis").i != 2 or len(joined.input) != 2:
        raise NoRingError(f"{joined.name}: not a Concat of state and frames in time")
    readers = _consumers(graph, joined.output[0])
    convs = [n for n in readers if n.op_type == "Conv"]
    slices = [n for n in readers if n.op_type == "Slice"]
    if len(convs) != 1 or len(slices) != 1 or len(readers) != 2:
        raise NoRingError(f"{joined.name}: read by {[n.op_type for n in readers]}")
    if slices[0].output[0] != f"new_{state}":
        raise NoRingError(f"{slices[0].name} does not make new_{state}")
    return joined, convs[0], slices[0]


def ring_layers(graph: onnx.GraphProto) -> list[RingLayer]:
    """The ring form of each state of a step graph; raises :class:`NoRingError` if one has none."""
    states = [i for i in graph.input if i.name.startswith("state_")]
    if not states:
        raise NoRingError("the graph has no state inputs")
    values = {i.name for i in graph.initializer}
    layers = []
    for state in states:
        _, conv, _ = _parts(graph, state.name)
        kernel = list(_attribute(conv, "kernel_shape").ints)
        dilation = list(_attribute(conv, "dilations").ints)
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        frames = int(_dims(state)[2])
        if (
            kernel[1:] != [1, 1]
            or frames != (kernel[0] - 1) * dilation[0]
            or group != 1
            or not set(conv.input[1:]) <= values
        ):
            raise NoRingError(f"{conv.name}: kernel {kernel}, dilation {dilation}, {frames} frames")
        index = state.name.split("_", 1)[1]
        layers.append(
            RingLayer(state.name, f"ring_{index}", f"frame_{index}", frames, kernel[0], dilation[0])
        )
    return layers


def _constant(graph: onnx.GraphProto, name: str, value: np.ndarray) -> str:
    graph.initializer.append(numpy_helper.from_array(value, name))
    return name


def _rewire(graph: onnx.GraphProto, layer: RingLayer, shape: list[int]) -> list[onnx.NodeProto]:
    """Replace one state's Concat, Conv and Slice with nodes reading its ring."""
    joined, conv, shift = _parts(graph, layer.state)
    values = {i.name: i for i in graph.initializer}
    weights = numpy_helper.to_array(values[conv.input[1]])  # (C_out, C, K, 1, 1)
    outputs, channels, taps = weights.shape[:3]
    bias = (
        numpy_helper.to_array(values[conv.input[2]])
        if len(conv.input) > 2 and conv.input[2]
        else np.zeros(outputs, np.float32)
    )
    _, height, width = shape[1], shape[3], shape[4]
    p = layer.ring
    # Row t * C + c of the stacked frames is channel c of tap t.
    matrix = weights[..., 0, 0].transpose(0, 2, 1).reshape(outputs, taps * channels)
    _constant(graph, f"{p}/weights", np.ascontiguousarray(matrix, dtype=np.float32))
    _constant(graph, f"{p}/bias", bias.reshape(outputs, 1).astype(np.float32))
    _constant(graph, f"{p}/taps", np.arange(taps - 1, dtype=np.int64) * layer.dilation)
    _constant(graph, f"{p}/slots", np.array(layer.frames + 1, np.int64))
    _constant(graph, f"{p}/frame_shape", np.array([1, 1, channels, height, width], np.int64))
    _constant(graph, f"{p}/rows", np.array([taps * channels, height * width], np.int64))
    _constant(graph, f"{p}/out_shape", np.array([1, outputs, 1, height, width], np.int64))
    for replaced in (joined, conv, shift):
        graph.node.remove(replaced)

    def node(op: str, inputs: list[str], output: str, **attributes: Any) -> onnx.NodeProto:
        return helper.make_node(op, inputs, [output], name=f"{p}/{op}", **attributes)

    return [
        node("Add", [HEAD, f"{p}/taps"], f"{p}/at"),
        node("Mod", [f"{p}/at", f"{p}/slots"], f"{p}/slot"),
        node("Gather", [p, f"{p}/slot"], f"{p}/past", axis=0),
        node("Reshape", [joined.input[1], f"{p}/frame_shape"], layer.frame),
        node("Concat", [f"{p}/past", layer.frame], f"{p}/stack", axis=0),
        helper.make_node(
            "Reshape", [f"{p}/stack", f"{p}/rows"], [f"{p}/matrix"], name=f"{p}/Reshape_rows"
        ),
        node("Gemm", [f"{p}/weights", f"{p}/matrix", f"{p}/bias"], f"{p}/product"),
        helper.make_node(
            "Reshape", [f"{p}/product", f"{p}/out_shape"], [conv.output[0]], name=f"{p}/out"
        ),
    ]


def _planar(graph: onnx.GraphProto) -> None:
    """Spatial convolutions (kernel 1 x kh x kw) of one frame as 2D ones.

    A ring graph holds one frame, so the time axis is squeezed out around each: ONNX
    Runtime runs 2D convolutions in its blocked (NCHWc) layout, which it does not for
    3D ones. The four of the default model: a ring step 0.89 to 0.95 of its time (three
    runs of 30 interleaved rounds, two sessions of each graph), responses within 4e-7.
    """
    values = {i.name: i for i in graph.initializer}
    axis = _constant(graph, "planar/time", np.array([2], np.int64))
    nodes = []
    for node in graph.node:
        kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [])
        if node.op_type != "Conv" or len(kernel) != 3 or kernel[0] != 1:
            nodes.append(node)
            continue
        weights = numpy_helper.to_array(values[node.input[1]])[:, :, 0]
        planar = _constant(graph, f"{node.input[1]}/planar", np.ascontiguousarray(weights))
        attributes: dict[str, Any] = {}
        for a in node.attribute:
            value = helper.get_attribute_value(a)
            if a.name in ("kernel_shape", "strides", "dilations"):
                value = list(value)[1:]
            elif a.name == "pads":
                value = [value[1], value[2], value[4], value[5]]
            attributes[a.name] = value
        x, y, name = node.input[0], node.output[0], node.name or node.output[0]
        nodes += [
            helper.make_node("Squeeze", [x, axis], [f"{name}/frame"], name=f"{name}/frame"),
            helper.make_node(
                "Conv",
                [f"{name}/frame", planar, *node.input[2:]],
                [f"{name}/planar"],
                name=f"{name}/planar",
                **attributes,
            ),
            helper.make_node("Unsqueeze", [f"{name}/planar", axis], [y], name=f"{name}/time"),
        ]
    del graph.node[:]
    graph.node.extend(nodes)


def _value(name: str, dims: list[int | str], dtype: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, dims)


def write_ring(step: Path, path: Path) -> list[RingLayer]:
    """Write the ring graph of the step graph ``step`` to ``path``; returns its layers.

    Raises:
        NoRingError: the step graph's state is not kept in the form a ring replaces.
    """
    model = onnx.load(str(step))
    graph = model.graph
    layers = ring_layers(graph)
    shapes = {i.name: [1, *_dims(i)[1:]] for i in graph.input}
    added = []
    for layer in layers:
        added += _rewire(graph, layer, [int(d) for d in shapes[layer.state]])
    graph.node.extend(added)
    _planar(graph)
    inputs = []
    for value in graph.input:
        dims = shapes[value.name]
        if value.name.startswith("state_"):
            _, channels, frames, height, width = dims
            ring = next(x.ring for x in layers if x.state == value.name)
            inputs.append(_value(ring, [int(frames) + 1, 1, channels, height, width]))
        else:
            inputs.append(_value(value.name, [1, 1, *dims[2:]], value.type.tensor_type.elem_type))
    inputs.append(_value(HEAD, [], TensorProto.INT64))
    outputs = [o for o in graph.output if not o.name.startswith("new_state_")]
    for layer in layers:
        _, channels, _, height, width = shapes[layer.state]
        outputs.append(_value(layer.frame, [1, 1, channels, height, width]))
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.output[:]
    graph.output.extend(outputs)
    del graph.value_info[:]  # shapes of the step graph's dynamic frames; ONNX Runtime infers
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    _sort(graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return layers


def _sort(graph: onnx.GraphProto) -> None:
    """Order the nodes topologically (the new ones were appended at the end)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        runnable = [n for n in pending if all(i in ready for i in n.input)]
        if not runnable:
            raise NoRingError("the rewired graph has a cycle or a missing input")
        ordered += runnable
        for node in runnable:
            ready.update(node.output)
        done = {id(n) for n in runnable}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)
