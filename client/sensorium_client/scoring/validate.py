"""Check a submission file against the dataset it claims to cover."""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow.parquet as pq

from sensorium_client.scoring.submission import SCHEMA
from sensorium_client.scoring.tracks import STARTER_KIT_FILES, SUBMISSION_FILES
from sensorium_data import SCORED_FROM_FRAME, Session

MAX_PROBLEMS = 20


def tier_of(path: Path) -> tuple[str, str]:
    """The tier a submission file covers and which naming it uses."""
    for tier, name in SUBMISSION_FILES.items():
        if path.name == name:
            return tier, "the starter kit README's file name"
    for tier, name in STARTER_KIT_FILES.items():
        if path.name == name:
            return tier, "the starter kit submission.py's file name"
    raise ValueError(
        f"{path.name}: not a submission file name; expected one of "
        f"{sorted(SUBMISSION_FILES.values())} or {sorted(STARTER_KIT_FILES.values())}"
    )


def trial_index(value: object) -> int | None:
    """A ``trial_indices`` entry: an integer, or a file name like '12.npy' (the README's)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"(\d+)(\.npy)?", value.strip())
        return int(match.group(1)) if match else None
    return None


def _formats(source: pq.ParquetFile) -> list[str]:
    schema = source.schema_arrow
    kinds = {name: str(schema.field(name).type) for name in schema.names}
    indices = kinds["trial_indices"]
    return [
        f"trial_indices as {'strings (like 1.npy)' if 'string' in indices else indices}",
        f"prediction as {kinds['prediction']}",
        f"neuron_ids as {kinds['neuron_ids']}",
    ]


def validate_submission(path: Path, sessions: list[Session]) -> tuple[list[str], list[str]]:
    """Every problem of ``path`` against ``sessions`` (empty: valid), and the format seen.

    Accepts every variant the official starter kit produces: either file name, trial
    indices as integers or '1.npy' strings, float32 or float64 predictions, any
    integer neuron ids, and either frame count per trial (stored length - 50 with NaN
    past the real length, as its ``submission.py`` writes, or real length - 50).
    Checks that every trial of the tier of every mouse is present once, the
    prediction shape, the neuron ids, and finite values on the real frames.
    """
    tier, naming = tier_of(path)
    problems: list[str] = []
    try:
        source = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for unreadable files
        return [f"{path.name}: not a readable parquet file ({err})"], [naming]
    names = source.schema_arrow.names
    if sorted(names) != sorted(SCHEMA.names):
        return [f"{path.name}: columns {names}, expected {SCHEMA.names}"], [naming]
    seen_format = [naming, *_formats(source)]
    by_name = {s.name: s for s in sessions}
    expected = {s.name: {int(i) for i in s.trial_indices(tier)} for s in sessions}
    seen: dict[str, set[int]] = {name: set() for name in by_name}
    frames: set[str] = set()
    for group in range(source.num_row_groups):
        table = source.read_row_group(group)
        for row in table.to_pylist():
            problems += _check_row(row, by_name, expected, seen, tier, frames)
    for mouse, indices in expected.items():
        missing = sorted(indices - seen[mouse])
        if missing:
            problems.append(
                f"{mouse}: {len(missing)} trial(s) of {tier} missing, e.g. {missing[:5]}"
            )
    if len(problems) > MAX_PROBLEMS:
        problems = [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more"]
    seen_format += [f"frames: {f}" for f in sorted(frames)]
    return problems, seen_format


def _check_row(
    row: dict[str, object],
    sessions: dict[str, Session],
    expected: dict[str, set[int]],
    seen: dict[str, set[int]],
    tier: str,
    frames_seen: set[str],
) -> list[str]:
    mouse, index = str(row["mouse"]), trial_index(row["trial_indices"])
    if index is None:
        return [f"{mouse}: trial_indices {row['trial_indices']!r} is not a trial index or 'N.npy'"]
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
    trial = session.trial(index)
    real, stored = trial.length - SCORED_FROM_FRAME, trial.n_frames - SCORED_FROM_FRAME
    rows = len(prediction)
    if rows != session.n_neurons:
        problems.append(f"{where}: prediction has {rows} neurons, expected {session.n_neurons}")
        return problems
    lengths = {len(r) for r in prediction}
    if lengths not in ({real}, {stored}):
        problems.append(
            f"{where}: prediction has {sorted(lengths)} frames per neuron, expected {stored} "
            f"(stored length minus the first {SCORED_FROM_FRAME}, as the starter kit writes) "
            f"or {real} (real length minus {SCORED_FROM_FRAME})"
        )
        return problems
    frames_seen.add(
        "stored length - 50"
        if lengths == {stored} and stored != real
        else "real length - 50"
        if stored != real
        else "stored = real length - 50"
    )
    values = np.asarray(prediction, dtype=np.float64)[:, :real]
    if not np.isfinite(values).all():
        problems.append(
            f"{where}: {int((~np.isfinite(values)).sum())} NaN or infinite values in real frames"
        )
    return problems
