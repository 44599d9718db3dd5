"""``client score``: both tracks through a server, submissions, report, plots."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sensorium_client.commands import connect
from sensorium_client.errors import InvalidArgumentError
from sensorium_client.scoring.plots import write_plots
from sensorium_client.scoring.report import build_report, write_report
from sensorium_client.scoring.results import MouseResult
from sensorium_client.scoring.runner import count_trials, score_session
from sensorium_client.scoring.submission import join_parts, zip_files
from sensorium_client.scoring.tracks import SUBMISSION_FILES, TRACK_TIERS, ZIP_FILES, Job, jobs
from sensorium_client.scoring.validate import validate_submission
from sensorium_data import Session, find_sessions

logger = logging.getLogger(__name__)


def _sessions(dirs: list[str]) -> list[Session]:
    sessions = [s for d in dirs for s in find_sessions(d)]
    if not sessions:
        raise InvalidArgumentError(f"--data {' '.join(dirs)}: no Sensorium session folders found")
    return sessions


def assemble(out: Path, sessions: list[Session], chosen: list[Job]) -> dict[str, Any]:
    """Join each submitted tier's parts into its competition file; zip each full track."""
    written: dict[str, Any] = {}
    for job in chosen:
        if not job.submitted:
            continue
        parts = [
            out / "parts" / job.tier / f"{s.name}.parquet"
            for s in sessions
            if len(s.trial_indices(job.tier))
        ]
        missing = [p for p in parts if not p.is_file()]
        if missing:
            raise InvalidArgumentError(
                f"{missing[0]}: missing (a resumed run with other --track/--tier?); "
                "rerun without --resume"
            )
        target = out / SUBMISSION_FILES[job.tier]
        written[job.tier] = {"file": target.name, "rows": join_parts(parts, target)}
    for track, tiers in TRACK_TIERS.items():
        files = [out / SUBMISSION_FILES[t] for t in tiers.values() if t in written]
        if len(files) == len(tiers):
            zip_files(files, out / ZIP_FILES[track])
            written[f"zip:{track}"] = ZIP_FILES[track]
    return written


def score(args: argparse.Namespace) -> int:
    """Run ``client score``."""
    sessions = _sessions(args.data)
    if args.validate:
        return _validate(args, sessions)
    chosen = jobs(args.track, args.tier)
    out = Path(args.out)
    done = out / "mice"
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
                    client, info, session, chosen, out / "parts", args.workers, bar
                )
                result.save(done)
                results.append(result)
    report = build_report(results, sessions, info, args.server)
    report["submissions"] = assemble(out, sessions, chosen)
    report["plots"] = [p.name for p in write_plots(results, report, out)]
    write_report(report, out)
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


def _validate(args: argparse.Namespace, sessions: list[Session]) -> int:
    path = Path(args.validate)
    try:
        problems = validate_submission(path, sessions)
    except ValueError as err:
        raise InvalidArgumentError(str(err)) from None
    if args.json:
        print(json.dumps({"file": str(path), "valid": not problems, "problems": problems}))
    else:
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
    p.set_defaults(run=score)
