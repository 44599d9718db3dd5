"""Client-side checks of inputs before they are sent (no server round trip to fail).

Arrays are time first: video (T, H, W) 0..255, behaviour (T, 2) [pupil dilation,
running speed], pupil centre (T, 2) [x, y]. The Sensorium files store them time
last (H, W, T and 2 x T); :func:`video_time_first` and :func:`rows_time_first`
convert and say which layout they found.
"""

from __future__ import annotations

import numpy as np

from sensorium_client.errors import InvalidArgumentError


def video_time_first(video: np.ndarray, frame_shape: tuple[int, int]) -> tuple[np.ndarray, str]:
    """A video as (T, H, W) and the layout it came in ("T x H x W" or "H x W x T")."""
    if video.ndim == 3 and tuple(video.shape[1:]) == frame_shape:
        return video, "T x H x W"
    if video.ndim == 3 and tuple(video.shape[:2]) == frame_shape:
        return np.moveaxis(video, 2, 0), "H x W x T (Sensorium layout)"
    h, w = frame_shape
    raise InvalidArgumentError(
        f"video: shape {video.shape}, expected (frames, {h}, {w}) or the Sensorium layout "
        f"({h}, {w}, frames)"
    )


def rows_time_first(name: str, array: np.ndarray, frames: int) -> np.ndarray:
    """Behaviour or pupil centre as (T, 2), from (T, 2) or the Sensorium (2, T)."""
    if array.shape == (frames, 2):
        return array
    if array.shape == (2, frames):
        return array.T
    raise InvalidArgumentError(
        f"{name}: shape {array.shape}, expected ({frames}, 2) or (2, {frames}) to match "
        f"the video's {frames} frames"
    )


def check_arrays(
    video: np.ndarray,
    behavior: np.ndarray,
    pupil_center: np.ndarray,
    frame_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate time-first inputs and cast them to what crosses the wire.

    Video stays uint8 when it is uint8 (4x less to send), else becomes float32.

    Raises:
        InvalidArgumentError: naming the field and the expected value.
    """
    video, behavior, pupil_center = (np.asarray(a) for a in (video, behavior, pupil_center))
    if video.ndim != 3:
        raise InvalidArgumentError(f"video: {video.ndim} dimensions, expected (frames, H, W)")
    if frame_shape is not None and tuple(video.shape[1:]) != tuple(frame_shape):
        raise InvalidArgumentError(
            f"video: frames of {tuple(video.shape[1:])}, the model expects {tuple(frame_shape)}"
        )
    frames = video.shape[0]
    if frames == 0:
        raise InvalidArgumentError("video: 0 frames, expected at least 1")
    arrays = {"behavior": behavior, "pupil_center": pupil_center}
    for name, array in arrays.items():
        if array.shape != (frames, 2):
            raise InvalidArgumentError(
                f"{name}: shape {array.shape}, expected ({frames}, 2), one row per frame"
            )
        if not np.issubdtype(array.dtype, np.number):
            raise InvalidArgumentError(f"{name}: dtype {array.dtype}, expected numbers")
        if not np.isfinite(array).all():
            raise InvalidArgumentError(f"{name}: contains NaN or infinite values")
    if video.dtype != np.uint8:
        if not np.issubdtype(video.dtype, np.number):
            raise InvalidArgumentError(f"video: dtype {video.dtype}, expected uint8 or float")
        video = video.astype(np.float32, copy=False)
        if not np.isfinite(video).all():
            raise InvalidArgumentError("video: contains NaN or infinite values")
        if video.min() < 0 or video.max() > 255:
            raise InvalidArgumentError(
                f"video: values from {video.min():g} to {video.max():g}, expected 0..255"
            )
    return (
        video,
        behavior.astype(np.float32, copy=False),
        pupil_center.astype(np.float32, copy=False),
    )


def as_frames(
    frames: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accept one frame (H, W) with (2,) rows as well as k frames (k, H, W) with (k, 2)."""
    frames, behavior, pupil_center = (np.asarray(a) for a in (frames, behavior, pupil_center))
    if frames.ndim == 2:
        frames = frames[None]
    if behavior.ndim == 1:
        behavior = behavior[None]
    if pupil_center.ndim == 1:
        pupil_center = pupil_center[None]
    return frames, behavior, pupil_center


def check_video_scale(video: np.ndarray) -> None:
    """Refuse a float video that looks scaled to 0..1 (the models take 0..255)."""
    if np.issubdtype(video.dtype, np.floating) and video.size:
        top = float(np.nanmax(video))
        if 0 < top <= 1.0:
            raise InvalidArgumentError(
                f"video: float values up to {top:g}: it looks scaled to 0..1, the models "
                "take 0..255 (multiply by 255, or send uint8)"
            )


def normalize_trial(
    video: np.ndarray,
    behavior: np.ndarray | None,
    pupil_center: np.ndarray | None,
    frame_shape: tuple[int, int],
    defaults: dict[str, tuple[float, ...]],
    require_behavior: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """One trial as the service takes it, whatever layout it came in (SDK and CLI alike).

    Video (T, H, W) or the Sensorium (H, W, T); behaviour and pupil centre (T, 2) or
    (2, T), or None: then the model's training mean (``defaults``), unless
    ``require_behavior``. A float video in 0..1 is refused (the models take 0..255).

    Returns:
        The time-first arrays and notes on what was detected or filled in.
    """
    video, layout = video_time_first(np.asarray(video), frame_shape)
    check_video_scale(video)
    frames = video.shape[0]
    notes = [f"video: {frames} frames, layout {layout}"]
    rows = []
    for name, flag, array in (
        ("behavior", "behavior", behavior),
        ("pupil_center", "pupil-center", pupil_center),
    ):
        if array is not None:
            rows.append(rows_time_first(name, np.asarray(array), frames))
            continue
        if require_behavior:
            raise InvalidArgumentError(f"{name} is missing (--{flag}); behaviour is required")
        default = defaults.get(name, ())
        if len(default) != 2:
            raise InvalidArgumentError(
                f"{name} is missing and the model records no training mean for it; pass it"
            )
        rows.append(np.tile(np.asarray(default, dtype=np.float32), (frames, 1)))
        notes.append(f"{name}: missing, filled with the model's training mean {list(default)}")
    return video, rows[0], rows[1], notes
