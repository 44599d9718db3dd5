"""The only module of the server that touches protobuf messages."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sensorium_api import wire
from sensorium_api.tensors import TensorError, from_tensor, tensor_field, tensor_of, to_tensor
from sensorium_api.v1 import predictor_pb2 as pb
from sensorium_data.provenance import dataset_name
from sensorium_server.dataplane import Snapshot
from sensorium_server.errors import InvalidInputError
from sensorium_server.runtime import LoadedModel
from sensorium_server.scheduler import Timing

RESPONSE_DTYPES: dict[int, np.dtype] = {
    pb.DATA_TYPE_UNSPECIFIED: np.dtype("float32"),
    pb.DATA_TYPE_FLOAT32: np.dtype("float32"),
    pb.DATA_TYPE_FLOAT16: np.dtype("float16"),
}


STREAMING_MODES = {
    "state": pb.STREAMING_MODE_STATE,
    "window": pb.STREAMING_MODE_WINDOW,
    "none": pb.STREAMING_MODE_NONE,
}


def manifest_message(model: LoadedModel) -> pb.ModelManifest:
    """A served model version as a ``ModelManifest`` message."""
    manifest = model.manifest
    training = manifest.get("training", {})
    metrics = {k: float(v) for k, v in training.get("metrics", {}).items() if _number(v)}
    return pb.ModelManifest(
        name=model.name,
        version=model.version.version,
        mice=[
            pb.MouseInfo(
                mouse=m.mouse,
                neuron_count=m.neuron_count,
                neuron_ids=m.neuron_ids,
                default_behavior=m.input_defaults.get("behavior", []),
                default_pupil_center=m.input_defaults.get("pupil_center", []),
            )
            for m in model.mice.values()
        ],
        frame_height=model.frame_shape[0],
        frame_width=model.frame_shape[1],
        frame_rate_hz=float(manifest["frame"].get("rate_hz", 30.0)),
        input_channels=manifest["input_channels"],
        burn_in_frames=manifest["burn_in_frames"],
        graphs=[
            pb.GRAPH_KIND_CLIP,
            *([pb.GRAPH_KIND_STEP] if "step" in manifest["graphs"] else []),
        ],
        causal=manifest["causal"],
        max_frames_per_step=int(manifest.get("max_frames_per_step", 0)),
        manifest_sha256=model.version.manifest_sha256,
        streaming_mode=STREAMING_MODES[model.streaming.mode],
        window_frames=model.streaming.window_frames,
        latency_frames=model.streaming.latency_frames,
        training=pb.TrainingInfo(
            datasets=[dataset_name(d) for d in training.get("datasets", [])],
            dataset_fingerprints=[
                str(d.get("fingerprint", "")) if isinstance(d, dict) else ""
                for d in training.get("datasets", [])
            ],
            metrics=metrics,
            git_revision=str(training.get("git_revision", "")),
            created=str(training.get("created", "")),
            architecture=str(manifest["architecture"]),
        ),
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def input_arrays(message: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Video, behaviour and pupil centre of a ``PredictRequest`` or ``StreamFrames``."""
    arrays = []
    for name in ("video", "behavior", "pupil_center"):
        if not message.HasField(name):
            raise InvalidInputError(
                f"{name}: missing; every request carries video, behavior and pupil_center tensors"
            )
        try:
            arrays.append(tensor_of(message, name))
        except TensorError as err:
            raise InvalidInputError(str(err)) from None
    return arrays[0], arrays[1], arrays[2]


def response_dtype(code: int) -> np.dtype:
    """The numpy dtype a client asked responses in (float32 unless float16)."""
    if code not in RESPONSE_DTYPES:
        raise InvalidInputError(
            f"response_dtype: {pb.DataType.Name(code) if code in pb.DataType.values() else code}"
            ", expected DATA_TYPE_FLOAT32 (default) or DATA_TYPE_FLOAT16"
        )
    return RESPONSE_DTYPES[code]


def responses_tensor(responses: np.ndarray, dtype: np.dtype) -> pb.Tensor:
    """Responses (T, N) in the requested dtype."""
    return to_tensor(responses.astype(dtype, copy=False))


def timing_message(timing: Timing) -> pb.Timing:
    """Queue and compute time in milliseconds."""
    return pb.Timing(queue_ms=timing.queue_s * 1e3, compute_ms=timing.compute_s * 1e3)


def snapshot_message(snapshot: Snapshot) -> pb.StateSnapshot:
    """A session's state as a ``StateSnapshot`` message."""
    return pb.StateSnapshot(
        model=snapshot.model,
        version=snapshot.version,
        mouse=snapshot.mouse,
        manifest_sha256=snapshot.manifest_sha256,
        next_frame=snapshot.next_frame,
        trial_count=snapshot.trial_count,
        state=[pb.NamedTensor(name=k, tensor=to_tensor(v)) for k, v in snapshot.state.items()],
        session_id=snapshot.session_id,
    )


_STATE_FIELD = pb.StateSnapshot.DESCRIPTOR.fields_by_name["state"].number
_TENSOR_FIELD = pb.NamedTensor.DESCRIPTOR.fields_by_name["tensor"].number
_IN_DRAINING = pb.StreamDraining.DESCRIPTOR.fields_by_name["snapshot"].number
_REPLY_FIELDS = pb.StreamPredictResponse.DESCRIPTOR.fields_by_name


def snapshot_reply(snapshot: Snapshot, draining: str | None = None) -> bytes:
    """A serialized ``StreamPredictResponse`` holding ``snapshot``, the state copied once.

    As ``draining`` (its reason given) or as ``snapshot``: it parses as the message
    built from :func:`snapshot_message`. A snapshot is about 2 MB on the default model;
    built the plain way (``tobytes``, the message, ``SerializeToString``) that took
    2.5 ms per stream on the event loop, and a drain sends one per open stream at
    once. Here the state's bytes are copied once, without the GIL (:func:`wire.join`).
    Called on the loop: run in the default executor (shared with clip work) instead,
    one 3-minute soak's handoff steps were slower, not faster (median 385 against 208
    ms, one run each).
    """
    head = snapshot_message(dataclasses.replace(snapshot, state={})).SerializeToString()
    body: list[wire.Piece] = [head]
    for name, array in snapshot.state.items():
        item = [pb.NamedTensor(name=name).SerializeToString(), *tensor_field(_TENSOR_FIELD, array)]
        body += [wire.delimited(_STATE_FIELD, wire.size(item)), *item]
    if draining is not None:
        reason = pb.StreamDraining(reason=draining).SerializeToString()
        body = [reason, wire.delimited(_IN_DRAINING, wire.size(body)), *body]
    field = _REPLY_FIELDS["draining" if draining is not None else "snapshot"].number
    return wire.join([wire.delimited(field, wire.size(body)), *body])


def snapshot_of(message: pb.StateSnapshot) -> Snapshot:
    """A ``StateSnapshot`` message as a :class:`Snapshot` (tensors checked for decoding only)."""
    state = {}
    for item in message.state:
        name = f"snapshot.state[{item.name[:40]!r}]"
        if item.name in state:
            raise InvalidInputError(f"{name}: given twice")
        try:
            state[item.name] = from_tensor(item.tensor, name)
        except TensorError as err:
            raise InvalidInputError(str(err)) from None
    return Snapshot(
        message.model,
        message.version,
        message.mouse,
        message.manifest_sha256,
        message.next_frame,
        message.trial_count,
        state,
        message.session_id,
    )
