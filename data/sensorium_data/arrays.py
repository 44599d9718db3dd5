"""Loading .npy files with errors that name the file and what was expected."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sensorium_data.errors import DataFormatError

logger = logging.getLogger(__name__)


def load_npy(path: Path, what: str, *, mmap: bool = True, allow_object: bool = False) -> np.ndarray:
    """Load one .npy file, memory-mapped where possible.

    Args:
        path: The file.
        what: What the file should hold, for error messages (e.g. "video, H x W x T").
        mmap: Memory-map the file (read-only) instead of reading it.
        allow_object: Accept object arrays (pickled). Only for small metadata arrays
            such as ``tiers.npy``, which some exports store as Python strings.

    Raises:
        DataFormatError: the file is missing, truncated or not a .npy array.
    """
    if not path.is_file():
        raise DataFormatError(f"{path}: file is missing; expected {what}")
    try:
        loaded = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as err:
        if allow_object and "allow_pickle" in str(err):
            logger.debug("%s holds an object array; loading it with pickle", path)
            return _load_object_array(path, what)
        raise DataFormatError(f"{path}: unreadable ({err}); expected {what} as .npy") from None
    except (OSError, EOFError) as err:
        raise DataFormatError(f"{path}: unreadable ({err}); expected {what} as .npy") from None
    if not isinstance(loaded, np.ndarray):
        raise DataFormatError(f"{path}: holds an archive, not one array; expected {what}")
    return loaded


def _load_object_array(path: Path, what: str) -> np.ndarray:
    try:
        return np.asarray(np.load(path, allow_pickle=True))
    except Exception as err:
        raise DataFormatError(f"{path}: unreadable ({err}); expected {what} as .npy") from None


def check_shape(
    array: np.ndarray, path: Path, expected: tuple[int | None, ...], what: str
) -> np.ndarray:
    """Raise DataFormatError unless ``array`` has ``expected`` shape (None: any extent)."""
    ok = array.ndim == len(expected) and all(
        e is None or e == s for e, s in zip(expected, array.shape, strict=True)
    )
    if not ok:
        want = " x ".join("*" if e is None else str(e) for e in expected) or "scalar"
        raise DataFormatError(f"{path}: shape {array.shape}, expected {what} of shape {want}")
    return array


def check_numeric(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Raise DataFormatError unless ``array`` holds numbers."""
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataFormatError(f"{path}: dtype {array.dtype}, expected {what} as numbers")
    return array


def nan_padded_length(array: np.ndarray, time_axis: int = -1) -> int:
    """Return the index of the first frame holding a NaN, or the full length.

    Sensorium arrays are NaN-padded to a fixed length; this is a trial's real length.
    """
    frames = np.moveaxis(np.asarray(array), time_axis, 0)
    if not np.issubdtype(frames.dtype, np.floating):
        return int(frames.shape[0])
    has_nan = np.isnan(frames.reshape(frames.shape[0], -1)).any(axis=1)
    hits = np.flatnonzero(has_nan)
    return int(hits[0]) if hits.size else int(frames.shape[0])
