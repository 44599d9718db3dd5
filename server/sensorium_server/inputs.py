"""Validation of request arrays against a model: shapes, dtypes, values.

Every error names the field and the expected value, so a client can fix its call
from the message alone.
"""

from __future__ import annotations

import numpy as np

from sensorium_server.errors import InvalidInputError, LimitExceededError

ACCEPTED_DTYPES = (np.dtype("u1"), np.dtype("<f2"), np.dtype("<f4"))


def _finite(name: str, array: np.ndarray, meaning: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidInputError(
            f"{name}: {int(bad.sum())} NaN or infinite values (first at index {first}); "
            f"expected finite {meaning}"
        )


def check_inputs(
    video: np.ndarray,
    behavior: np.ndarray,
    pupil_center: np.ndarray,
    frame_shape: tuple[int, int],
    max_frames: int,
) -> dict[str, np.ndarray]:
    """Check one request's arrays and return the graph feeds (float32, batch of 1).

    Args:
        video: Frames, (T, H, W), 0..255.
        behavior: (T, 2): pupil dilation, running speed.
        pupil_center: (T, 2): x, y.
        frame_shape: (H, W) the model expects.
        max_frames: Largest T accepted.

    Raises:
        InvalidInputError: naming the field and what was expected.
        LimitExceededError: more than ``max_frames`` frames.
    """
    h, w = frame_shape
    if video.ndim != 3 or tuple(video.shape[1:]) != (h, w):
        raise InvalidInputError(
            f"video: shape {tuple(video.shape)}, expected (frames, {h}, {w}): "
            "time first, then the model's frame height and width"
        )
    frames = int(video.shape[0])
    if frames < 1:
        raise InvalidInputError("video: 0 frames, expected at least 1")
    if frames > max_frames:
        raise LimitExceededError(
            f"video: {frames} frames, the server takes at most {max_frames} per message; "
            "split the clip"
        )
    for name, array in (("behavior", behavior), ("pupil_center", pupil_center)):
        if tuple(array.shape) != (frames, 2):
            raise InvalidInputError(
                f"{name}: shape {tuple(array.shape)}, expected ({frames}, 2), one row per "
                "video frame"
            )
        if array.dtype not in ACCEPTED_DTYPES[1:]:
            raise InvalidInputError(f"{name}: dtype {array.dtype}, expected float32 or float16")
    if video.dtype not in ACCEPTED_DTYPES:
        raise InvalidInputError(f"video: dtype {video.dtype}, expected uint8, float16 or float32")
    video32 = video.astype(np.float32)
    if video.dtype != np.uint8:
        _finite("video", video32, "pixel values 0..255")
        low, high = float(video32.min()), float(video32.max())
        if low < 0 or high > 255:
            raise InvalidInputError(
                f"video: values from {low:g} to {high:g}, expected raw pixel values 0..255"
            )
    behavior32 = behavior.astype(np.float32)
    pupil32 = pupil_center.astype(np.float32)
    _finite("behavior", behavior32, "pupil dilation and running speed")
    _finite("pupil_center", pupil32, "pupil centre coordinates")
    return {
        "video": video32[None],
        "behavior": behavior32[None],
        "pupil_center": pupil32[None],
    }


def check_response_size(frames: int, neurons: int, itemsize: int, limit_bytes: int) -> None:
    """Refuse, before computing it, a response larger than the message size limit.

    Raises:
        LimitExceededError: with the size and what to do about it.
    """
    size = frames * neurons * itemsize
    if size > limit_bytes - 1024:  # room for the envelope
        raise LimitExceededError(
            f"responses of {frames} frames x {neurons} neurons ({size / 2**20:.1f} MiB) exceed "
            f"the {limit_bytes / 2**20:.0f} MiB message limit; call PredictChunks (the SDK does "
            "for long clips), send fewer frames per call, or ask for float16 responses"
        )
