"""``client score``: both tracks through a server, submissions, report, plots."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from tqdm import tqdm

from sensorium_client.commands import connect
from sensorium_client.errors import InvalidArgumentError
from sensorium_client.scoring.compare import collect, summarise, write_comparison
from sensorium_client.scoring.plots import write_plots
from sensorium_client.scoring.report import build_report, write_report
from sensorium_client.scoring.results import MouseResult
from sensorium_client.scoring.runner import count_trials, score_session
from sensorium_client.scoring.submission import FRAMES, join_parts, zip_files
from sensorium_client.scoring.tracks import SUBMISSION_FILES, ZIPS, Job, jobs
from sensorium_client.scoring.validate import validate_submission
from sensorium_data import Session, find_sessions

logger = logging.getLogger(__name__)


def _sessions(dirs: list[str]) -> list[Session]:
    """The sessions of ``--data``, each once (a folder given twice counts once).

    Raises:
        InvalidArgumentError: none found, or two folders of the same session name.
        DataFormatError: a session whose ``tiers.npy`` does not list every trial.
    """
    by_name: dict[str, Session] = {}
    for folder in dirs:
        for session in find_sessions(folder):
            known = by_name.setdefault(session.name, session)
            if known.root.resolve() != session.root.resolve():
                raise InvalidArgumentError(
                    f"--data: session {session.name} twice, in {known.root} and {session.root}"
                )
    if not by_name:
        raise InvalidArgumentError(f"--data {' '.join(dirs)}: no Sensorium session folders found")
    for session in by_name.values():
        session.check_trial_count()
    return list(by_name.values())


def assemble(
    out: Path, sessions: list[Session], chosen: list[Job], rescored: bool = True
) -> dict[str, Any]:
    """Join each submitted tier's parts into its competition file; zip each full track.

    ``rescored`` False (a ``--resume`` that scored nothing new) keeps the files of the
    complete run whose parts were joined and removed.
    """
    written: dict[str, Any] = {}
    for job in chosen:
        if not job.submitted:
            continue
        parts = [
            out / "parts" / job.tier / f"{s.name}.parquet"
            for s in sessions
            if len(s.trial_indices(job.tier))
        ]
        target = out / SUBMISSION_FILES[job.tier]
        missing = [p for p in parts if not p.is_file()]
        if missing and not rescored and target.is_file():
            # A --resume of a complete run: the parts were joined and removed.
            written[job.tier] = {
                "file": target.name,
                "rows": pq.ParquetFile(target).metadata.num_rows,
            }
            continue
        if missing:
            raise InvalidArgumentError(
                f"{missing[0]}: missing (a resumed run with other --track/--tier?); "
                "rerun without --resume"
            )
        written[job.tier] = {"file": target.name, "rows": join_parts(parts, target)}
    for name, tiers in ZIPS.items():
        if all(t in written for t in tiers):
            zip_files([out / SUBMISSION_FILES[t] for t in tiers], out / name)
            written[f"zip:{name}"] = name
    return written


def score(args: argparse.Namespace) -> int:
    """Run ``client score``."""
    sessions = _sessions(args.data)
    if args.validate:
        return _validate(args, sessions)
    if args.compare:
        return _compare(args, sessions)
    chosen = jobs(args.track, args.tier)
    out = Path(args.out)
    done = out / "mice"
    _check_selection(out, args, sessions)
    with connect(args) as client:
        info = client.model(args.model)
        for session in sessions:
            info.mouse(session.name)  # NOT_FOUND now, not after an hour
        todo = [s for s in sessions if not (args.resume and (done / f"{s.name}.json").is_file())]
        if len(todo) < len(sessions):
            logger.info(
                "--resume: %d of %d mice already scored", len(sessions) - len(todo), len(sessions)
            )
        results = []
        with tqdm(
            total=count_trials(todo, chosen), unit="trial", desc="score", disable=args.no_progress
        ) as bar:
            for session in sessions:
                if session not in todo:
                    results.append(MouseResult.load(done, session.name))
                    continue
                result = score_session(
                    client, info, session, chosen, out / "parts", args.workers, bar, args.frames
                )
                result.save(done)
                results.append(result)
    report = build_report(results, sessions, info, args.server)
    report["submissions"] = assemble(out, sessions, chosen, rescored=bool(todo))
    ids = {s.name: s.unit_ids for s in sessions}
    report["plots"] = [p.name for p in write_plots(results, report, out, ids)]
    write_report(report, out)
    shutil.rmtree(out / "parts", ignore_errors=True)  # joined into the submission files
    if args.json:
        print(
            json.dumps({"out": str(out), "groups": list(report["groups"]), **report["submissions"]})
        )
    else:
        print((out / "report.md").read_text())
        print(
            f"written to {out}: report.json, report.md, {', '.join(report['plots']) or 'no plots'}"
        )
    return 0


def _model_spec(text: str) -> tuple[str, int]:
    """``name`` or ``name:version``."""
    name, _, version = text.partition(":")
    if version and not version.isdigit():
        raise InvalidArgumentError(f"--compare {text}: expected NAME or NAME:VERSION")
    return name, int(version or 0)


def _compare(args: argparse.Namespace, sessions: list[Session]) -> int:
    """``client score --compare A B``."""
    chosen = jobs(args.track, args.tier)
    out = Path(args.out)
    with connect(args) as client:
        models = tuple(client.model(*_model_spec(spec)) for spec in args.compare)
        for info in models:
            for session in sessions:
                info.mouse(session.name)  # NOT_FOUND now, not after an hour
        total = 2 * count_trials(sessions, chosen)
        with tqdm(total=total, unit="trial", desc="compare", disable=args.no_progress) as bar:
            collected = collect(client, (models[0], models[1]), sessions, chosen, args.workers, bar)
    groups = {g: summarise(per_mouse, args.bootstrap) for g, per_mouse in collected.items()}
    lines = write_comparison(out, (models[0], models[1]), groups)
    if args.json:
        print((out / "compare.json").read_text())
    else:
        print("\n".join(lines))
        print(f"written to {out}: compare.json, compare.md, plots")
    return 0


def _check_selection(out: Path, args: argparse.Namespace, sessions: list[Session]) -> None:
    """Record what a run scores; a ``--resume`` must ask for the same (else groups go missing).

    Raises:
        InvalidArgumentError: ``--resume`` with another track, tier, frames, model or mice.
    """
    selection = {
        "track": args.track,
        "tier": args.tier,
        "frames": args.frames,
        "model": args.model,
        "mice": sorted(s.name for s in sessions),
    }
    record = out / "selection.json"
    if args.resume and record.is_file():
        before = json.loads(record.read_text())
        differs = {k: (before.get(k), v) for k, v in selection.items() if before.get(k) != v}
        if differs:
            said = "; ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in differs.items())
            raise InvalidArgumentError(
                f"--resume in {out}: the first run scored another selection ({said}); resume "
                "with the same --track, --tier, --frames, --model and --data, or use a new --out"
            )
    out.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(selection, indent=1) + "\n")


def _validate(args: argparse.Namespace, sessions: list[Session]) -> int:
    path = Path(args.validate)
    try:
        problems, seen = validate_submission(path, sessions)
    except ValueError as err:
        raise InvalidArgumentError(str(err)) from None
    if args.json:
        print(
            json.dumps(
                {"file": str(path), "valid": not problems, "problems": problems, "format": seen}
            )
        )
    else:
        print("\n".join(f"{path.name}: {s}" for s in seen))
        print("\n".join([f"{path.name}: {p}" for p in problems] or [f"{path.name}: valid"]))
    return 1 if problems else 0


def add_score_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``client score``."""
    p = sub.add_parser(
        "score", parents=[common], help="score both tracks; write submissions and a report"
    )
    p.add_argument("--data", nargs="+", required=True, help="session folders or folders of them")
    p.add_argument("--model", default="", help="model name (default: the only one served)")
    p.add_argument("--track", choices=["main", "bonus", "both"], default="both")
    p.add_argument("--tier", choices=["live", "final", "oracle", "all"], default="all")
    p.add_argument("--out", default="scores", help="output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="skip mice already scored in --out")
    p.add_argument("--workers", type=int, default=4, help="trials predicted concurrently")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--validate", metavar="FILE", help="check a submission file against --data")
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="compare two served models (NAME or NAME:VERSION) on the same trials: paired "
        "difference in single-trial correlation per neuron with a bootstrap 95%% interval",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds of --compare")
    p.add_argument(
        "--frames",
        choices=FRAMES,
        default="stored",
        help="frames written per trial: stored length - 50, NaN past the real length, as "
        "the starter kit writes them (default), or real length - 50",
    )
    p.set_defaults(run=score)
