"""torch -> ONNX: the whole-clip graph and the streaming step graph of one mouse.

Graph interfaces (names are the manifest's):

- clip: ``video`` (B, T, H, W), ``behavior`` (B, T, 2), ``pupil_center`` (B, T, 2)
  -> ``responses`` (B, T, N). Batch and time are dynamic.
- step: the same inputs with k new frames, plus ``state_<i>`` per temporal layer
  -> ``responses`` (B, k, N) and ``new_state_<i>``. Batch and k are dynamic.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import onnxruntime as ort
import torch
from torch import nn

from sensorium_export.rewrite import rewrite
from sensorium_train.model import MouseModel
from sensorium_train.tiled import TiledReadout

logger = logging.getLogger(__name__)
# The exporter warns once per missing torchvision operator; we use none of them.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
INPUTS = ("video", "behavior", "pupil_center")


class ExportError(RuntimeError):
    """An exported graph failed a check; nothing was written."""


READOUTS = ("tiled", "grid")  # graph forms of the readout; "grid": grid sampling, as trained


def serving(model: MouseModel, order: str, readout: str = "tiled") -> MouseModel:
    """``model`` (eval mode) with its readout in the given serving form (same outputs).

    "tiled" orders ``order`` "windows" suit a few frames per call (the step graph),
    "taps" whole clips (see :mod:`sensorium_train.tiled`); "grid" keeps grid sampling.
    """
    model = model.eval()
    if readout == "grid":
        return model
    if readout != "tiled":
        raise ExportError(f"unknown readout form {readout!r}; expected one of {READOUTS}")
    tiled = TiledReadout(model.head.readout, model.feature_shape(), model.head.shifter.bound, order)
    return type(model)(model.core, model.head, model.normalized, tiled).eval()


class ClipGraph(nn.Module):
    """Whole-clip interface of a mouse model."""

    def __init__(self, model: MouseModel, readout: str = "tiled") -> None:
        """Wrap ``model`` with the readout ordered for whole clips."""
        super().__init__()
        self.model = serving(model, "taps", readout)

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor
    ) -> torch.Tensor:
        """See the module docstring."""
        return self.model(video, behavior, pupil_center)


class StepGraph(nn.Module):
    """Streaming interface: state tensors in, new state tensors out."""

    def __init__(self, model: MouseModel, readout: str = "tiled") -> None:
        """Wrap ``model`` with the readout ordered for a few frames per call."""
        super().__init__()
        self.model = serving(model, "windows", readout)

    def forward(
        self,
        video: torch.Tensor,
        behavior: torch.Tensor,
        pupil_center: torch.Tensor,
        *state: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """See the module docstring."""
        responses, new_state = self.model.step(video, behavior, pupil_center, list(state))
        return (responses, *new_state)


def example_inputs(model: MouseModel, batch: int, frames: int) -> tuple[torch.Tensor, ...]:
    """Contiguous random raw inputs (fresh tensors: a sliced example would fix shapes)."""
    h, w = model.head.frame_shape
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(batch, frames, h, w, generator=generator) * 255
    behavior = (
        torch.rand(batch, frames, 2, generator=generator) * model.head.normalizer.behavior_std * 2
    )
    pupil = (
        model.head.normalizer.pupil_mean
        + torch.randn(batch, frames, 2, generator=generator) * model.head.normalizer.pupil_std
    )
    return video.contiguous(), behavior.contiguous(), pupil.contiguous()


def _shapes(dynamic: dict[str, dict[int, str]]) -> dict[str, dict[int, torch.export.Dim]]:
    """Named dynamic axes -> torch.export dims (one Dim object per label)."""
    dims: dict[str, torch.export.Dim] = {}
    return {
        name: {
            axis: dims.setdefault(label, torch.export.Dim(label)) for axis, label in axes.items()
        }
        for name, axes in dynamic.items()
    }


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    arg_shapes: tuple[object, ...],
    elu: bool = False,
) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=arg_shapes,
            optimize=True,
            external_data=False,
        )
    rewrite(path, elu=elu)


def export_clip(model: MouseModel, path: Path, readout: str = "tiled") -> None:
    """Write the whole-clip graph of ``model`` to ``path``."""
    shapes = _shapes({name: {0: "batch", 1: "time"} for name in INPUTS})
    with torch.no_grad():
        _export(
            ClipGraph(model, readout),
            example_inputs(model, 2, 40),
            path,
            list(INPUTS),
            ["responses"],
            tuple(shapes[n] for n in INPUTS),
        )


def export_step(model: MouseModel, path: Path, readout: str = "tiled") -> list[str]:
    """Write the streaming step graph; returns the state input names."""
    state = model.initial_state(2)
    state_names = [f"state_{i}" for i in range(len(state))]
    dynamic = {name: {0: "batch", 1: "frames"} for name in INPUTS}
    dynamic.update({name: {0: "batch"} for name in state_names})
    shapes = _shapes(dynamic)
    # *state is one positional parameter to torch.export: its shapes nest in a tuple.
    arg_shapes = (*(shapes[n] for n in INPUTS), tuple(shapes[n] for n in state_names))
    inputs = (*example_inputs(model, 2, 3), *(torch.randn_like(s) for s in state))
    outputs = ["responses", *(f"new_{n}" for n in state_names)]
    with torch.no_grad():
        graph = StepGraph(model, readout)
        _export(graph, inputs, path, [*INPUTS, *state_names], outputs, arg_shapes, elu=True)
    return state_names


def check_dynamic_axes(path: Path, axes: dict[str, dict[int, str]]) -> None:
    """Raise ExportError unless every listed input axis is symbolic in the saved graph."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in session.get_inputs()}
    for name, wanted in axes.items():
        for axis, label in wanted.items():
            if not isinstance(shapes[name][axis], str):
                raise ExportError(
                    f"{path.name}: input {name} axis {axis} ({label}) was fixed at "
                    f"{shapes[name][axis]}; expected a dynamic axis"
                )
