"""Rebuild a PyTorch model from a version this exporter wrote, to export it again.

A version holds everything its model computes (the step graph's initializers) and
what the model knew of each mouse (the manifest), but not the checkpoint. Export
folds batch norm into the convolutions, so the rebuilt core has those folded
weights and identity batch norms: it computes the same function, and a re-export
(say with a faster graph form) needs no retraining. The caller checks the new
graphs against the old ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from sensorium_export.graphs import ExportError
from sensorium_train.model import MouseSpec, SensoriumModel
from sensorium_train.train import core_config_from

PREFIX = "model."
BATCH_NORM_EPS = 1e-5  # torch's default, which the cores use


def _initializers(path: Path) -> tuple[onnx.GraphProto, dict[str, np.ndarray]]:
    graph = onnx.load(str(path)).graph
    return graph, {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _graph_input_of(graph: onnx.GraphProto, tensor: str) -> set[str]:
    """Graph inputs that ``tensor`` depends on."""
    producers = {out: node for node in graph.node for out in node.output}
    inputs = {i.name for i in graph.input}
    seen, todo, found = set(), [tensor], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in inputs:
            found.add(name)
        elif name in producers:
            todo.extend(producers[name].input)
    return found


def _mlp_weights(graph: onnx.GraphProto, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The shifter's and modulator's linear weights, found by the input they read.

    The exporter stores them transposed under generated names; the first layers
    have the same shape, so each is told by the graph input upstream of it.
    """
    found: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        weight = next((n for n in node.input if n in values and not n.startswith(PREFIX)), None)
        if weight is None:
            continue
        data = values[weight]
        sources = _graph_input_of(graph, node.input[0])
        module = "shifter" if "pupil_center" in sources else "modulator"
        layer = "net.0" if data.shape[0] == 2 else "net.2"
        found[f"head.{module}.{layer}.weight"] = data.T
    return found


def _state_dict(
    model: SensoriumModel, mouse: str, graph: onnx.GraphProto, values: dict[str, np.ndarray]
) -> dict[str, torch.Tensor]:
    if any(name.startswith(PREFIX + "serving_readout.") for name in values):
        raise ExportError(
            "this version has the tiled readout, whose graphs do not keep the readout's "
            "positions; re-export it from its checkpoint (rebuilding reads grid-sampling versions)"
        )
    state = {k: v.clone() for k, v in model.state_dict().items()}
    named = {k[len(PREFIX) :]: v for k, v in values.items() if k.startswith(PREFIX)}
    named.update(_mlp_weights(graph, values))
    neurons = model.specs[mouse].n_neurons
    channels = model.core.out_channels
    for name, data in values.items():  # folded by the exporter: told by their shapes
        if name.startswith(PREFIX):
            continue
        last = data.ndim - 1
        squeezed = data.reshape([d for i, d in enumerate(data.shape) if d != 1 or i >= last])
        if squeezed.shape == (channels, neurons):
            named.setdefault("head.readout.features", squeezed.T)
        elif squeezed.shape == (neurons, 2):
            named.setdefault("head.readout.mu", squeezed)
        elif squeezed.shape == (neurons,):
            named.setdefault("head.log_scale", np.log(squeezed))  # stored as exp(log_scale)
    loaded = set()
    for name, data in named.items():
        key = name.replace("head.", f"heads.{mouse}.", 1) if name.startswith("head.") else name
        if key not in state or tuple(state[key].shape) != data.shape:
            raise ExportError(f"cannot place {name} {data.shape} in the model")
        state[key] = torch.tensor(np.array(data), dtype=state[key].dtype)
        loaded.add(key)
    for key, value in state.items():  # batch norms: identity, folded into the convolutions
        if ".running_var" in key:
            state[key] = torch.full_like(value, 1 - BATCH_NORM_EPS)  # var + eps = 1
        elif "norm." in key and key.endswith("weight"):
            state[key] = torch.ones_like(value)
        elif "norm." in key and (key.endswith("bias") or key.endswith("running_mean")):
            state[key] = torch.zeros_like(value)
    wanted = {k for k in state if "norm" not in k and "log_sigma" not in k}
    missing = sorted(wanted - loaded - {k for k in wanted if k.endswith("num_batches_tracked")})
    if missing:
        raise ExportError(f"the graph lacks {', '.join(missing)}")
    return state


def rebuild(version: Path) -> tuple[SensoriumModel, dict[str, Any]]:
    """The model of ``version`` and a checkpoint-like dict (its provenance)."""
    manifest = json.loads((version / "manifest.json").read_text())
    if len(manifest["mice"]) != 1:
        raise ExportError("rebuilding a multi-mouse version is not supported")
    training = manifest.get("training", {})
    core = core_config_from(training.get("config", {}).get("core", {}))
    entry = manifest["mice"][0]
    graph, values = _initializers(version / entry["graphs"]["step"])
    normalizer = "model.head.normalizer."
    neurons = entry["neuron_count"]
    spec = MouseSpec(
        name=entry["mouse"],
        unit_ids=[int(u) for u in entry["neuron_ids"]],
        coordinates=[[0.0, 0.0, 0.0]] * neurons,  # only seed positions; mu is loaded
        video_mean=float(values[normalizer + "video_mean"]),
        video_std=float(values[normalizer + "video_std"]),
        behavior_std=values[normalizer + "behavior_std"].astype(float).tolist(),
        pupil_mean=values[normalizer + "pupil_mean"].astype(float).tolist(),
        pupil_std=values[normalizer + "pupil_std"].astype(float).tolist(),
        response_std=values["model.head.response_std"].astype(float).tolist(),
        frame_shape=(manifest["frame"]["height"], manifest["frame"]["width"]),
        behavior_mean=[float(v) for v in entry["input_defaults"]["behavior"]],
    )
    model = SensoriumModel(core, [spec])
    model.load_state_dict(_state_dict(model, spec.name, graph, values))
    checkpoint = {
        "data": training.get("datasets", []),
        "git_revision": training.get("git_revision", "unknown"),
        "created": training.get("trained", ""),
        "config": training.get("config", {}),
        "metrics": {"oracle": _nested(training.get("metrics", {}))},
        "rebuilt_from": f"{manifest['name']}/{manifest['version']}",
    }
    return model.eval(), checkpoint


def _nested(flat: dict[str, float]) -> dict[str, dict[str, float]]:
    """Manifest metrics ``oracle/<metric>/<aggregate>`` back into the checkpoint's form."""
    nested: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        _, metric, aggregate = key.split("/")
        nested.setdefault(metric, {})[aggregate] = value
    return nested
