"""Lazy, memory-mapped reading of one Sensorium 2023 session folder (one mouse)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from sensorium_data import layout
from sensorium_data.arrays import check_numeric, check_shape, load_npy, nan_padded_length
from sensorium_data.errors import DataFormatError


@dataclass(frozen=True)
class Statistics:
    """Summary statistics of one variable from ``meta/statistics/<var>/all``."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    median: np.ndarray | None = None


class Trial:
    """One trial of a session; arrays are memory-mapped on first access.

    Arrays keep the on-disk orientation (time last) and the NaN padding; use
    ``length`` to cut them, or the ``*_frames`` helpers for time-first arrays.
    """

    def __init__(self, session: Session, index: int) -> None:
        """Bind trial ``index`` of ``session``; nothing is read yet."""
        self.session = session
        self.index = index
        self.tier = str(session.tiers[index])

    def __repr__(self) -> str:
        return f"Trial({self.session.name!r}, index={self.index}, tier={self.tier!r})"

    def path(self, variable: str) -> Path:
        """Path of this trial's file of ``variable`` (videos, responses, ...)."""
        return self.session.root / layout.data_file(variable, self.index)

    def _load(self, variable: str, expected: tuple[int | None, ...], what: str) -> np.ndarray:
        path = self.path(variable)
        array = check_numeric(load_npy(path, what), path, what)
        return check_shape(array, path, expected, what)

    @cached_property
    def video(self) -> np.ndarray:
        """Video frames, H x W x T (NaN-padded), grayscale 0..255."""
        path = self.path(layout.VIDEOS)
        video = check_numeric(load_npy(path, "a video, H x W x T"), path, "a video")
        h, w = self.session.frame_shape
        return check_shape(video, path, (h, w, None), f"a video of {h} x {w} x T frames")

    @cached_property
    def n_frames(self) -> int:
        """Padded length T of this trial's arrays."""
        return int(self.video.shape[-1])

    @cached_property
    def length(self) -> int:
        """Real length: the index of the first NaN frame.

        A float video is NaN-padded and sets the length; a uint8 video cannot hold NaN,
        so the NaN padding of behaviour and pupil centre does.
        """
        if np.issubdtype(self.video.dtype, np.floating):
            return nan_padded_length(self.video, time_axis=-1)
        return min(
            nan_padded_length(self.behavior, time_axis=-1),
            nan_padded_length(self.pupil_center, time_axis=-1),
        )

    @cached_property
    def behavior(self) -> np.ndarray:
        """Behaviour, 2 x T: [pupil dilation, running speed]."""
        return self._load(layout.BEHAVIOR, (2, self.n_frames), "behaviour, 2 x T")

    @cached_property
    def pupil_center(self) -> np.ndarray:
        """Pupil centre, 2 x T: [horizontal, vertical]."""
        return self._load(layout.PUPIL_CENTER, (2, self.n_frames), "pupil centre, 2 x T")

    @cached_property
    def has_responses(self) -> bool:
        """Whether responses were recorded for the trial's frames (not all NaN).

        Raises:
            DataFormatError: the responses file is missing (every trial of the
                release has one; withheld test responses are dummy values).
        """
        path = self.path(layout.RESPONSES)
        if not path.is_file():
            raise DataFormatError(
                f"{path}: missing; trial {self.index} ({self.tier}) has no responses file "
                "(every trial of a release has one)"
            )
        scored = self.responses[:, : self.length]
        return bool(scored.size) and not bool(np.isnan(scored).all())

    @cached_property
    def responses_constant(self) -> bool:
        """Whether the recorded frames hold one value throughout (withheld: dummy zeros)."""
        scored = self.responses[:, : self.length]
        return bool(scored.size) and bool(np.all(scored == scored.flat[0]))

    @cached_property
    def responses(self) -> np.ndarray:
        """Recorded responses, N x T."""
        n = self.session.n_neurons
        return self._load(layout.RESPONSES, (n, self.n_frames), f"responses of {n} neurons, N x T")

    def video_frames(self) -> np.ndarray:
        """Video of the real frames, time first: T' x H x W, float32.

        Raises:
            DataFormatError: the trial has no frames (its video is all NaN).
        """
        if self.length == 0:
            raise DataFormatError(
                f"{self.path(layout.VIDEOS)}: trial {self.index} has no frames (its first "
                "frame is already NaN padding)"
            )
        return np.moveaxis(self.video[..., : self.length], -1, 0).astype(np.float32)

    def behavior_frames(self) -> np.ndarray:
        """Behaviour of the real frames, time first: T' x 2, float32."""
        return self.behavior[:, : self.length].T.astype(np.float32)

    def pupil_center_frames(self) -> np.ndarray:
        """Pupil centre of the real frames, time first: T' x 2, float32."""
        return self.pupil_center[:, : self.length].T.astype(np.float32)

    def response_frames(self) -> np.ndarray:
        """Responses of the real frames, time first: T' x N, float32.

        Raises:
            DataFormatError: a NaN among the real frames (padding comes after them).
        """
        frames = self.responses[:, : self.length].T.astype(np.float32)
        bad = np.argwhere(np.isnan(frames))
        if bad.size:
            frame, neuron = (int(i) for i in bad[0])
            raise DataFormatError(
                f"{self.path(layout.RESPONSES)}: trial {self.index} has {len(bad)} NaN "
                f"response(s) inside its {self.length} real frames (first: frame {frame}, "
                f"neuron {neuron}); NaN may only pad the end"
            )
        return frames

    @cached_property
    def clip_id(self) -> str:
        """The clip shown: the recorded clip id, else a hash of the video content.

        Repeats of one clip share it, which is how repeat-based metrics group trials.
        """
        recorded = self.session.trial_meta(layout.CLIP_IDS)
        if recorded is not None:
            return str(recorded[self.index])
        frames = np.ascontiguousarray(self.video[..., : self.length], dtype=np.float32)
        return "sha1:" + hashlib.sha1(frames.tobytes(), usedforsecurity=False).hexdigest()

    @property
    def stimulus_type(self) -> str | None:
        """Stimulus type where the dataset records it (synthetic mice do), else None."""
        recorded = self.session.trial_meta(layout.STIMULUS_TYPES)
        return None if recorded is None else str(recorded[self.index])


class Session:
    """One session folder in the Sensorium 2023 layout.

    Opening reads only ``tiers.npy`` and ``unit_ids.npy``; trial arrays are
    memory-mapped when a trial is touched, so listing a full mouse is instant and
    iterating it never holds the whole mouse in memory.

    Raises:
        DataFormatError: the folder lacks the files every session has, or they are
            mis-shaped.
    """

    def __init__(self, root: str | Path) -> None:
        """Open the session folder ``root``."""
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataFormatError(f"{self.root}: not a directory; expected a session folder")
        self.name = self.root.name
        tiers_path = self.root / "meta/trials/tiers.npy"
        tiers = load_npy(tiers_path, "one tier name per trial", mmap=False, allow_object=True)
        check_shape(tiers, tiers_path, (None,), "one tier name per trial")
        self.tiers = tiers.astype(str)
        unknown = sorted({str(t) for t in self.tiers} - set(layout.TIERS))
        if unknown:
            raise DataFormatError(
                f"{tiers_path}: unknown tiers {unknown}; expected only {list(layout.TIERS)}"
            )
        ids_path = self.root / "meta/neurons/unit_ids.npy"
        self.unit_ids = check_shape(
            load_npy(ids_path, "neuron unit ids, (N,)", mmap=False), ids_path, (None,), "(N,) ids"
        )
        self._trial_meta: dict[str, np.ndarray | None] = {}

    def __repr__(self) -> str:
        return f"Session({str(self.root)!r}, trials={self.n_trials}, neurons={self.n_neurons})"

    @property
    def n_trials(self) -> int:
        """Number of trials (entries of ``tiers.npy``)."""
        return int(self.tiers.shape[0])

    @property
    def n_neurons(self) -> int:
        """Number of neurons N."""
        return int(self.unit_ids.shape[0])

    @cached_property
    def config(self) -> dict[str, Any]:
        """Contents of ``config.json`` ({} when the file is absent)."""
        path = self.root / "config.json"
        if not path.is_file():
            return {}
        try:
            loaded = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataFormatError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(loaded, dict):
            raise DataFormatError(f"{path}: expected a JSON object, got {type(loaded).__name__}")
        return loaded

    @cached_property
    def cell_motor_coordinates(self) -> np.ndarray:
        """Cortical positions of the neurons, N x 3 (x, y, z in micrometres)."""
        path = self.root / "meta/neurons/cell_motor_coordinates.npy"
        what = f"neuron coordinates, {self.n_neurons} x 3"
        return check_shape(load_npy(path, what, mmap=False), path, (self.n_neurons, 3), what)

    @cached_property
    def frame_shape(self) -> tuple[int, int]:
        """Frame height and width, read from the first trial's video header."""
        if self.n_trials == 0:
            return (layout.FRAME_HEIGHT, layout.FRAME_WIDTH)
        path = self.root / layout.data_file(layout.VIDEOS, 0)
        video = check_shape(
            load_npy(path, "video, H x W x T"), path, (None, None, None), "H x W x T"
        )
        return int(video.shape[0]), int(video.shape[1])

    def trial(self, index: int) -> Trial:
        """Return trial ``index`` (0-based, as in ``data/*/<index>.npy``)."""
        if not 0 <= index < self.n_trials:
            raise IndexError(f"{self.name}: trial {index} out of range 0..{self.n_trials - 1}")
        return Trial(self, index)

    def trial_indices(self, tiers: str | Iterable[str] | None = None) -> np.ndarray:
        """Indices of the trials in ``tiers`` (one name, several, or None for all)."""
        if tiers is None:
            return np.arange(self.n_trials)
        wanted = [tiers] if isinstance(tiers, str) else list(tiers)
        bad = sorted(set(wanted) - set(layout.TIERS))
        if bad:
            raise ValueError(f"unknown tiers {bad}; expected some of {list(layout.TIERS)}")
        return np.flatnonzero(np.isin(self.tiers, wanted))

    def trials(self, tiers: str | Iterable[str] | None = None) -> Iterator[Trial]:
        """Iterate the trials of ``tiers`` lazily."""
        for index in self.trial_indices(tiers):
            yield Trial(self, int(index))

    def trial_meta(self, name: str) -> np.ndarray | None:
        """A per-trial array ``meta/trials/<name>.npy`` if the dataset has one, else None."""
        if name not in self._trial_meta:
            path = self.root / "meta/trials" / f"{name}.npy"
            array = None
            if path.is_file():
                what = f"one {name} entry per trial ({self.n_trials},)"
                array = check_shape(
                    load_npy(path, what, mmap=False, allow_object=True),
                    path,
                    (self.n_trials,),
                    what,
                )
            self._trial_meta[name] = array
        return self._trial_meta[name]

    def statistics(self, variable: str) -> Statistics:
        """Statistics of ``variable`` (videos, responses, behavior, pupil_center)."""
        if variable not in layout.VARIABLES:
            raise ValueError(f"unknown variable {variable!r}; expected one of {layout.VARIABLES}")
        values: dict[str, np.ndarray] = {}
        for stat in (*layout.STATISTICS, "median"):
            path = self.root / layout.statistics_file(variable, stat)
            if stat == "median" and not path.is_file():
                continue
            values[stat] = check_numeric(
                load_npy(path, f"the {stat} of {variable}", mmap=False), path, f"{stat}"
            )
        return Statistics(**values)

    def check_trial_count(self) -> None:
        """Raise DataFormatError unless ``tiers.npy`` lists as many trials as there are videos."""
        stored = len(list((self.root / "data" / layout.VIDEOS).glob("*.npy")))
        if stored != self.n_trials:
            raise DataFormatError(
                f"{self.root / 'meta/trials/tiers.npy'}: lists {self.n_trials} trials, "
                f"{self.root / 'data' / layout.VIDEOS} holds {stored} videos: every trial "
                "needs its tier"
            )

    def problems(self) -> list[str]:
        """Every fault found, each naming its file.

        Missing or mis-shaped files, videos ``tiers.npy`` does not list, trials without
        frames, NaN inside recorded responses.
        """
        found: list[str] = []

        def check(action: Callable[..., object], *args: object) -> None:
            try:
                action(*args)
            except DataFormatError as err:
                found.append(str(err))

        check(lambda: (self.cell_motor_coordinates, self.config))
        for name in (layout.CLIP_IDS, layout.STIMULUS_TYPES):
            check(self.trial_meta, name)
        check(self.check_trial_count)
        for trial in self.trials():
            check(_check_trial, trial)
        for variable in layout.VARIABLES:
            if variable != layout.RESPONSES or (self.root / "meta/statistics/responses").exists():
                check(self.statistics, variable)
        return found

    def validate(self) -> None:
        """Check every file of the session (:meth:`problems`).

        Raises:
            DataFormatError: listing every fault found.
        """
        found = self.problems()
        if found:
            raise DataFormatError("; ".join(found))

    def summary(self) -> dict[str, Any]:
        """A JSON-able overview: counts per tier, neurons, frame shape."""
        counts = Counter(self.tiers.tolist())
        return {
            "session": self.name,
            "trials": self.n_trials,
            "neurons": self.n_neurons,
            "frame_shape": list(self.frame_shape),
            "tiers": {tier: counts.get(tier, 0) for tier in layout.TIERS},
            "clip_ids_recorded": self.trial_meta(layout.CLIP_IDS) is not None,
        }


def _check_trial(trial: Trial) -> None:
    """Read a trial as scoring does: files, shapes, frames, responses (raises the first fault)."""
    _ = trial.video, trial.behavior, trial.pupil_center
    trial.video_frames()
    if trial.has_responses:
        trial.response_frames()


def find_sessions(root: str | Path) -> list[Session]:
    """Open ``root`` if it is a session folder, else every session folder inside it."""
    root = Path(root)
    if (root / "meta/trials/tiers.npy").exists():
        return [Session(root)]
    found = sorted(p.parent.parent.parent for p in root.glob("*/meta/trials/tiers.npy"))
    if not found:
        raise DataFormatError(
            f"{root}: no session folders (none holds meta/trials/tiers.npy, nor does it)"
        )
    return [Session(p) for p in found]
