"""Check a submission file against the dataset it claims to cover."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pyarrow.parquet as pq

from sensorium_client.scoring.submission import SCHEMA
from sensorium_client.scoring.tracks import SUBMISSION_FILES
from sensorium_data import SCORED_FROM_FRAME, Session

MAX_PROBLEMS = 20


def tier_of(path: Path) -> str:
    """The tier a submission file covers, from its competition file name."""
    for tier, name in SUBMISSION_FILES.items():
        if path.name == name:
            return tier
    raise ValueError(
        f"{path.name}: not a submission file name; expected one of "
        f"{sorted(SUBMISSION_FILES.values())}"
    )


def validate_submission(path: Path, sessions: list[Session]) -> list[str]:
    """Every problem of ``path`` against ``sessions`` (empty: valid).

    Checks the columns, that every trial of the tier of every mouse is present once,
    the prediction shape (N x scored frames), the neuron ids, and finite values.
    """
    tier = tier_of(path)
    problems: list[str] = []
    try:
        source = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for unreadable files
        return [f"{path.name}: not a readable parquet file ({err})"]
    names = source.schema_arrow.names
    if names != SCHEMA.names:
        return [f"{path.name}: columns {names}, expected {SCHEMA.names}"]
    by_name = {s.name: s for s in sessions}
    expected = {s.name: {int(i) for i in s.trial_indices(tier)} for s in sessions}
    seen: dict[str, set[int]] = {name: set() for name in by_name}
    for group in range(source.num_row_groups):
        table = source.read_row_group(group)
        for row in table.to_pylist():
            problems += _check_row(row, by_name, expected, seen, tier)
    for mouse, indices in expected.items():
        missing = sorted(indices - seen[mouse])
        if missing:
            problems.append(
                f"{mouse}: {len(missing)} trial(s) of {tier} missing, e.g. {missing[:5]}"
            )
    if len(problems) > MAX_PROBLEMS:
        problems = [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more"]
    return problems


def _check_row(
    row: dict[str, object],
    sessions: dict[str, Session],
    expected: dict[str, set[int]],
    seen: dict[str, set[int]],
    tier: str,
) -> list[str]:
    mouse, index = str(row["mouse"]), int(row["trial_indices"])  # type: ignore[call-overload]
    where = f"{mouse} trial {index}"
    if mouse not in sessions:
        return [f"{where}: unknown mouse; the dataset has {sorted(sessions)}"]
    if index not in expected[mouse]:
        return [f"{where}: not a {tier} trial of this mouse"]
    if index in seen[mouse]:
        return [f"{where}: appears more than once"]
    seen[mouse].add(index)
    session = sessions[mouse]
    problems = []
    ids = np.asarray(row["neuron_ids"])
    if ids.shape != session.unit_ids.shape or not np.array_equal(ids, session.unit_ids):
        problems.append(
            f"{where}: neuron_ids ({ids.size} ids) do not match the dataset's "
            f"{session.n_neurons} unit ids in order"
        )
    prediction = cast(list[list[float]], row["prediction"])
    frames = session.trial(index).length - SCORED_FROM_FRAME
    rows = len(prediction)
    if rows != session.n_neurons:
        problems.append(f"{where}: prediction has {rows} neurons, expected {session.n_neurons}")
        return problems
    lengths = {len(r) for r in prediction}
    if lengths != {frames}:
        problems.append(
            f"{where}: prediction has {sorted(lengths)} frames per neuron, expected {frames} "
            f"(trial length minus the first {SCORED_FROM_FRAME})"
        )
        return problems
    values = np.asarray(prediction, dtype=np.float64)
    if not np.isfinite(values).all():
        problems.append(f"{where}: {int((~np.isfinite(values)).sum())} NaN or infinite values")
    return problems
