"""The multi-mouse model: one shared core, per-mouse normaliser, readout, shifter, modulator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sensorium_data import Session
from sensorium_train.cores import CoreConfig, build_core
from sensorium_train.readouts import (
    GaussianReadout,
    InputNormalizer,
    Modulator,
    Shifter,
    positions_from_coordinates,
)


@dataclass(frozen=True)
class MouseSpec:
    """What the model needs to know of one mouse (session), from its folder."""

    name: str
    unit_ids: list[int]
    coordinates: list[list[float]]
    video_mean: float
    video_std: float
    behavior_std: list[float]
    pupil_mean: list[float]
    pupil_std: list[float]
    response_std: list[float]
    frame_shape: tuple[int, int] = (36, 64)
    behavior_mean: list[float] = field(default_factory=lambda: [0.0, 0.0])

    @property
    def n_neurons(self) -> int:
        """Number of neurons."""
        return len(self.unit_ids)

    @classmethod
    def from_session(cls, session: Session) -> MouseSpec:
        """Read ids, coordinates and ``meta/statistics`` of a session."""
        video = session.statistics("videos")
        behavior = session.statistics("behavior")
        pupil = session.statistics("pupil_center")
        std = np.asarray(session.statistics("responses").std, dtype=np.float64)
        # The reference baselines floor the response std at 1% of its mean.
        std = np.maximum(std, 0.01 * float(std.mean()))
        return cls(
            name=session.name,
            unit_ids=[int(u) for u in session.unit_ids],
            coordinates=session.cell_motor_coordinates.astype(float).tolist(),
            video_mean=float(np.mean(video.mean)),
            video_std=float(np.mean(video.std)),
            behavior_std=np.asarray(behavior.std, dtype=float).reshape(2).tolist(),
            pupil_mean=np.asarray(pupil.mean, dtype=float).reshape(2).tolist(),
            pupil_std=np.asarray(pupil.std, dtype=float).reshape(2).tolist(),
            response_std=std.tolist(),
            frame_shape=session.frame_shape,
            behavior_mean=np.asarray(behavior.mean, dtype=float).reshape(2).tolist(),
        )


class MouseHead(nn.Module):
    """The per-mouse modules around the shared core."""

    response_std: torch.Tensor

    def __init__(self, spec: MouseSpec, channels: int) -> None:
        """Build normaliser, readout, shifter and modulator for ``spec``."""
        super().__init__()
        self.normalizer = InputNormalizer(
            spec.video_mean,
            spec.video_std,
            np.array(spec.behavior_std),
            np.array(spec.pupil_mean),
            np.array(spec.pupil_std),
        )
        coords = np.asarray(spec.coordinates, dtype=np.float64)
        self.readout = GaussianReadout(spec.n_neurons, channels, positions_from_coordinates(coords))
        self.shifter = Shifter()
        self.modulator = Modulator(spec.n_neurons)
        self.log_scale = nn.Parameter(torch.zeros(spec.n_neurons))  # output amplitude
        self.register_buffer("response_std", torch.tensor(spec.response_std, dtype=torch.float32))
        self.frame_shape = tuple(spec.frame_shape)


class MouseModel(nn.Module):
    """One mouse's view of a :class:`SensoriumModel`: raw inputs in, responses out."""

    def __init__(
        self,
        core: nn.Module,
        head: MouseHead,
        normalized: bool = False,
        readout: nn.Module | None = None,
    ) -> None:
        """Share ``core`` and ``head`` (no copies); ``normalized`` skips the std scaling.

        ``readout`` replaces the head's readout (export: its tiled serving form).
        """
        super().__init__()
        self.core = core
        self.head = head
        self.normalized = normalized
        self.serving_readout = readout

    def _respond(
        self,
        features: torch.Tensor,
        behavior: torch.Tensor,
        pupil: torch.Tensor,
        neurons: torch.Tensor | None = None,
    ) -> torch.Tensor:
        gain = self.head.modulator(behavior, neurons)
        readout = self.serving_readout or self.head.readout
        drive = readout(features, self.head.shifter(pupil), neurons, gain)
        log_scale = self.head.log_scale if neurons is None else self.head.log_scale[neurons]
        responses = F.softplus(drive) * torch.exp(log_scale)
        if self.normalized:
            return responses
        std = self.head.response_std if neurons is None else self.head.response_std[neurons]
        return responses * std

    def forward(
        self,
        video: torch.Tensor,
        behavior: torch.Tensor,
        pupil_center: torch.Tensor,
        neurons: torch.Tensor | None = None,
        from_frame: int = 0,
        frame_stride: int = 1,
    ) -> torch.Tensor:
        """Video (B, T, H, W) 0..255, behaviour and pupil centre (B, T, 2) -> (B, T, N).

        Training may restrict the output to ``neurons`` and to every ``frame_stride``-th
        frame from ``from_frame`` on (the core still sees every frame).
        """
        x, behavior, pupil = self.head.normalizer(video, behavior, pupil_center)
        frames = slice(from_frame, None, frame_stride)
        features = self.core(x)[:, :, frames]
        return self._respond(features, behavior[:, frames], pupil[:, frames], neurons)

    def step(
        self,
        video: torch.Tensor,
        behavior: torch.Tensor,
        pupil_center: torch.Tensor,
        state: list[torch.Tensor],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """K new frames (B, k, ...) and the state -> responses (B, k, N) and new state."""
        x, behavior, pupil = self.head.normalizer(video, behavior, pupil_center)
        features, state = self.core.step(x, state)  # type: ignore[operator]
        return self._respond(features, behavior, pupil), state

    def feature_shape(self) -> tuple[int, int]:
        """(H, W) of the core's feature maps, which the readout samples."""
        state = self.initial_state(1)[0]  # (B, C, context, H', W') in both cores
        return int(state.shape[-2]), int(state.shape[-1])

    def initial_state(self, batch: int = 1) -> list[torch.Tensor]:
        """Zero state of a new trial."""
        h, w = self.head.frame_shape
        return self.core.initial_state(batch, h, w)  # type: ignore[operator]


class SensoriumModel(nn.Module):
    """Shared core; per-mouse heads keyed by session name."""

    def __init__(self, core_config: CoreConfig, mice: list[MouseSpec]) -> None:
        """Build the core and one head per mouse."""
        super().__init__()
        self.core_config = core_config
        self.specs = {spec.name: spec for spec in mice}
        self.core = build_core(core_config)
        self.heads = nn.ModuleDict(
            {spec.name: MouseHead(spec, self.core.out_channels) for spec in mice}
        )

    def mouse(self, name: str, normalized: bool = False) -> MouseModel:
        """The model of one mouse (shares parameters with this model)."""
        if name not in self.heads:
            raise KeyError(f"unknown mouse {name!r}; this model serves {sorted(self.heads)}")
        return MouseModel(self.core, self.heads[name], normalized)  # type: ignore[arg-type]


@dataclass
class ModelSummary:
    """Figures about a model that the manifest and benchmarks report."""

    parameters: int
    receptive_field: int
    state_bytes: int
    state_shapes: list[list[int]] = field(default_factory=list)


def summarize(model: SensoriumModel, mouse: str) -> ModelSummary:
    """Parameter count, temporal receptive field and streaming state size of one mouse."""
    state = model.mouse(mouse).initial_state(1)
    return ModelSummary(
        parameters=sum(p.numel() for p in model.parameters()),
        receptive_field=int(getattr(model.core, "receptive_field", 0)),
        state_bytes=sum(s.numel() * s.element_size() for s in state),
        state_shapes=[list(s.shape) for s in state],
    )
