"""Open Inference Protocol messages <-> numpy; the OIP model naming scheme.

One OIP model per served (model, mouse) pair, named ``<model>.<mouse>``; a model
with a single mouse also answers to ``<model>``. OIP versions are repository
versions as strings ("" means the latest). Inputs are time first, as in the native
API: ``video`` [T, H, W], ``behavior`` [T, 2], ``pupil_center`` [T, 2], optionally
with a leading batch axis of 1; the output ``responses`` is [T, N] (with the same
batch axis when the inputs had one: B clips of equal length, run as one batch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sensorium_api.inference import grpc_predict_v2_pb2 as oip
from sensorium_api.tensors import TensorError, check_shape
from sensorium_server.errors import InvalidInputError, NotFoundError, short
from sensorium_server.runtime import LoadedModel, ModelStore, MouseRuntime

DTYPES: dict[str, np.dtype] = {
    "UINT8": np.dtype("u1"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
}
TYPED_FIELDS = {"UINT8": "uint_contents", "FP16": "fp32_contents", "FP32": "fp32_contents"}
INPUTS = ("video", "behavior", "pupil_center")
OUTPUT = "responses"


def oip_names(store: ModelStore) -> dict[str, tuple[str, str]]:
    """Every OIP model name -> (model, mouse)."""
    names: dict[str, tuple[str, str]] = {}
    for model in store.served():
        for mouse in model.mice:
            names[f"{model.name}.{mouse}"] = (model.name, mouse)
        if len(model.mice) == 1:
            names[model.name] = (model.name, next(iter(model.mice)))
    return names


def resolve(store: ModelStore, name: str, version: str) -> tuple[LoadedModel, MouseRuntime]:
    """The served model and mouse an OIP (name, version) refers to."""
    names = oip_names(store)
    if name not in names:
        raise NotFoundError(
            f"model {short(name)!r} is not served; OIP models are '<model>.<mouse>': "
            f"{sorted(names)}"
        )
    model_name, mouse = names[name]
    try:
        number = int(version) if version else 0
    except ValueError:
        raise InvalidInputError(
            f"model_version: {short(version)!r}, expected an integer or ''"
        ) from None
    loaded = store.get(model_name, number)
    return loaded, store.mouse(loaded, mouse)


def metadata(name: str, model: LoadedModel, mouse: MouseRuntime, versions: list[int]) -> Any:
    """``ModelMetadataResponse`` of one OIP model."""
    h, w = model.frame_shape
    tensor = oip.ModelMetadataResponse.TensorMetadata
    return oip.ModelMetadataResponse(
        name=name,
        versions=[str(v) for v in versions],
        platform="onnxruntime_onnx",
        inputs=[
            tensor(name="video", datatype="UINT8", shape=[-1, h, w]),  # FP32 0..255 too
            tensor(name="behavior", datatype="FP32", shape=[-1, 2]),
            tensor(name="pupil_center", datatype="FP32", shape=[-1, 2]),
        ],
        outputs=[tensor(name=OUTPUT, datatype="FP32", shape=[-1, mouse.neuron_count])],
    )


def _decode(tensor: Any, raw: bytes | None) -> np.ndarray:
    name = tensor.name
    if tensor.datatype not in DTYPES:
        raise InvalidInputError(
            f"{short(name)}: datatype {short(tensor.datatype)!r}, expected one of {sorted(DTYPES)}"
        )
    dtype, shape = DTYPES[tensor.datatype], tuple(int(s) for s in tensor.shape)
    try:
        check_shape(shape, name)
    except TensorError as err:
        raise InvalidInputError(str(err)) from None
    count = math.prod(shape)  # Python integers: no overflow
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise InvalidInputError(
                f"{name}: {len(raw)} raw bytes do not match shape {list(shape)} of "
                f"{tensor.datatype} ({count * dtype.itemsize} bytes)"
            )
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    values = getattr(tensor.contents, TYPED_FIELDS[tensor.datatype])
    if len(values) != count:
        raise InvalidInputError(
            f"{name}: {len(values)} typed values do not match shape {list(shape)}"
        )
    array = np.asarray(values)
    if tensor.datatype == "UINT8" and array.size and (array.max() > 255):
        raise InvalidInputError(f"{name}: UINT8 contents above 255")
    return array.astype(dtype).reshape(shape)


def input_arrays(
    request: Any, max_batch: int
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], bool]:
    """(video, behavior, pupil_center), and whether they lead with a batch axis.

    Without it they are time first, one clip; with it, (B, T, ...), B clips of equal
    length (at most ``max_batch``).
    """
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            f"raw_input_contents: {len(raw)} entries for {len(request.inputs)} inputs"
        )
    arrays = {}
    for i, tensor in enumerate(request.inputs):
        if tensor.name not in INPUTS:
            raise InvalidInputError(
                f"inputs: unknown input {short(tensor.name)!r}, expected {INPUTS}"
            )
        arrays[tensor.name] = _decode(tensor, raw[i] if raw else None)
    missing = [n for n in INPUTS if n not in arrays]
    if missing:
        raise InvalidInputError(f"inputs: missing {missing}; every request carries {INPUTS}")
    video, behavior, pupil = (arrays[n] for n in INPUTS)
    batched = video.ndim == 4
    if batched:
        size = video.shape[0]
        if behavior.ndim != 3 or pupil.ndim != 3 or {behavior.shape[0], pupil.shape[0]} != {size}:
            raise InvalidInputError(
                f"video: shape {list(video.shape)}, behavior {list(behavior.shape)}, "
                f"pupil_center {list(pupil.shape)}: a batch axis leads every input, the same size"
            )
        if not 1 <= size <= max_batch:
            raise InvalidInputError(
                f"video: a batch of {size} clips; this server takes 1 to {max_batch} "
                "(--max-batch-size)"
            )
    return (video, behavior, pupil), batched


def requested_outputs(request: Any) -> None:
    """Refuse outputs the models do not have."""
    for output in request.outputs:
        if output.name != OUTPUT:
            raise InvalidInputError(
                f"outputs: unknown output {short(output.name)!r}, expected {OUTPUT!r}"
            )


def response(request: Any, name: str, version: int, responses: np.ndarray) -> Any:
    """``ModelInferResponse`` with the responses, (T, N) or (B, T, N), as raw FP32."""
    data = np.ascontiguousarray(responses, dtype="<f4")
    shape = list(data.shape)  # (B, T, N) when batched
    return oip.ModelInferResponse(
        model_name=name,
        model_version=str(version),
        id=request.id,
        outputs=[
            oip.ModelInferResponse.InferOutputTensor(name=OUTPUT, datatype="FP32", shape=shape)
        ],
        raw_output_contents=[data.tobytes()],
    )


def sequence_parameters(request: Any) -> tuple[int | str, bool, bool]:
    """(sequence_id, sequence_start, sequence_end) as Triton's sequence extension sets them."""
    params = request.parameters
    sequence: int | str = 0
    if "sequence_id" in params:
        p = params["sequence_id"]
        kind = p.WhichOneof("parameter_choice")
        if kind in ("int64_param", "uint64_param"):
            sequence = int(getattr(p, kind))
        elif kind == "string_param":
            sequence = p.string_param
        else:
            raise InvalidInputError(
                f"parameters: sequence_id is a {kind}, expected an integer or string"
            )

    def flag(key: str) -> bool:
        if key not in params:
            return False
        p = params[key]
        if p.WhichOneof("parameter_choice") != "bool_param":
            raise InvalidInputError(f"parameters: {key} must be a bool")
        return bool(p.bool_param)

    return sequence, flag("sequence_start"), flag("sequence_end")
