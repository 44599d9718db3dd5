"""Competition submissions: parquet files (brotli) and zips with no folders.

Columns: ``mouse``, ``trial_indices``, ``prediction`` (N x scored frames) and
``neuron_ids``.

Rows are written per mouse and tier into part files as trials finish (bounded
memory, resumable; one row per row group), then the parts of a tier are joined into
the file the competition expects, rows in trial order per mouse as the starter kit's
``submission.py`` writes them.

Frames (``--frames``): the starter kit predicts every *stored* frame of a trial and
writes the last (stored length - 50), NaN padding included (its loader does not cut
videos: ``CutVideos(max_frame=None)``), so ``stored`` is the default; frames past a
trial's real length then hold NaN (what a model fed NaN-padded input returns).
``real`` writes (real length - 50) frames instead.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sensorium_data import SCORED_FROM_FRAME

SCHEMA = pa.schema(
    [
        ("mouse", pa.string()),
        ("trial_indices", pa.int64()),
        ("prediction", pa.list_(pa.list_(pa.float32()))),
        ("neuron_ids", pa.list_(pa.int64())),
    ]
)
COMPRESSION = "brotli"
# Level 1: as small as the default level on predictions (float noise barely
# compresses) at a fifth of the time; no dictionary pages for the float columns.
WRITER_OPTIONS = {
    "compression": COMPRESSION,
    "compression_level": 1,
    "use_dictionary": ["mouse"],
}
ROWS_PER_GROUP = 4  # 4 trials x 8,000 neurons x 250 frames: 32 MB in memory at most
FRAMES = ("stored", "real")


def _nested(prediction: np.ndarray) -> pa.Array:
    """One row's N x F matrix as list<list<float32>> without a Python loop."""
    n, frames = prediction.shape
    values = pa.array(np.ascontiguousarray(prediction, dtype=np.float32).ravel())
    inner = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * frames), values)
    return pa.ListArray.from_arrays(pa.array([0, n], type=pa.int32()), inner)


class PartWriter:
    """The rows of one mouse and tier; the file appears only when :meth:`close` runs."""

    def __init__(self, path: Path, mouse: str, neuron_ids: np.ndarray) -> None:
        """Write to ``path`` (via a temporary name)."""
        self.path = path
        self._tmp = path.with_suffix(".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(self._tmp, SCHEMA, **WRITER_OPTIONS)
        self._mouse = mouse
        self._ids = pa.array([np.asarray(neuron_ids, dtype=np.int64)], type=SCHEMA.field(3).type)
        self._rows: list[pa.RecordBatch] = []

    def add(self, trial_index: int, predictions: np.ndarray, stored: int | None = None) -> None:
        """Add one trial's predictions (T x N, time first, the trial's real length).

        With ``stored`` (the trial's stored length), frames past the real length are
        written as NaN up to it (``--frames stored``).
        """
        if stored is not None and stored > predictions.shape[0]:
            pad = np.full((stored - predictions.shape[0], predictions.shape[1]), np.nan, np.float32)
            predictions = np.concatenate([predictions, pad])
        scored = predictions[SCORED_FROM_FRAME:].T  # N x scored frames
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array([self._mouse]),
                pa.array([trial_index], pa.int64()),
                _nested(scored),
                self._ids,
            ],
            schema=SCHEMA,
        )
        self._rows.append(batch)
        self._flush()  # one row per row group: the join reorders rows cheaply

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_batches(self._rows))
            self._rows = []

    def close(self) -> None:
        """Finish the file."""
        self._flush()
        self._writer.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        """Drop an unfinished part."""
        self._writer.close()
        self._tmp.unlink(missing_ok=True)


def join_parts(parts: list[Path], out: Path) -> int:
    """Join part files into ``out``, each part's rows in trial order; returns the rows.

    Memory holds ``ROWS_PER_GROUP`` rows at a time (parts keep one row per group).
    """
    rows = 0
    with pq.ParquetWriter(out, SCHEMA, **WRITER_OPTIONS) as writer:
        for part in parts:
            source = pq.ParquetFile(part)
            indices = source.read(columns=["trial_indices"]).column(0).to_numpy()
            groups = np.cumsum(
                [0] + [source.metadata.row_group(g).num_rows for g in range(source.num_row_groups)]
            )
            buffer: list[pa.Table] = []
            for row in np.argsort(indices, kind="stable"):
                group = int(np.searchsorted(groups, row, side="right") - 1)
                table = source.read_row_group(group)
                buffer.append(table.slice(int(row - groups[group]), 1))
                if len(buffer) >= ROWS_PER_GROUP:
                    writer.write_table(pa.concat_tables(buffer))
                    rows, buffer = rows + len(buffer), []
            if buffer:
                writer.write_table(pa.concat_tables(buffer))
                rows += len(buffer)
    return rows


def zip_files(files: list[Path], out: Path) -> None:
    """Zip ``files`` flat (no folders inside), as the competition site expects."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in files:
            archive.write(file, arcname=file.name)
