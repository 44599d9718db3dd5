"""Scoring throughput: ``client score``'s path through the server vs PyTorch eager in-process.

    python bench/scoring.py                      # build/synth (make synth-default), final main tier
    python bench/scoring.py --data DIR --tier final_test_bonus

Both sides predict the same trials with the same weights (the default architecture,
untrained, built for the dataset's mouse) and compute the same metric groups with the
project's metrics (the tier and its track); the served side also writes the
submission parts.
Target (issue 6): served scoring >= 1.5x the frames per second of eager evaluation.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from served import ServerProcess
from tqdm import tqdm

from sensorium_client import Client
from sensorium_client.scoring.runner import group_names, score_session
from sensorium_client.scoring.tracks import Job
from sensorium_data import Session, find_sessions
from sensorium_data.metrics import MouseScorer
from sensorium_export.repository import write_version
from sensorium_train.cores import CoreConfig
from sensorium_train.model import MouseSpec, SensoriumModel


def eager(model: SensoriumModel, session: Session, tier: str) -> tuple[float, int]:
    """Seconds and frames to predict and score ``tier`` in-process, PyTorch eager."""
    mouse = model.mouse(session.name)
    job = Job("main", tier)
    scorers: dict[str, MouseScorer] = {}  # the same metric groups as the scoring client
    frames, start = 0, time.perf_counter()
    with torch.no_grad():
        for trial in session.trials(tier):
            inputs = (trial.video_frames(), trial.behavior_frames(), trial.pupil_center_frames())
            predictions = mouse(*(torch.from_numpy(a)[None] for a in inputs))[0].numpy()
            responses = trial.response_frames()
            for name in group_names(job, trial):
                scorers.setdefault(name, MouseScorer(session.n_neurons))
                scorers[name].add(responses, predictions, trial.clip_id)
            frames += predictions.shape[0]
    for scorer in scorers.values():
        scorer.result()
    return time.perf_counter() - start, frames


def served(target: str, session: Session, tier: str, workers: int, parts: Path) -> float:
    """Seconds for the scoring client's path (concurrent Predict calls, parts, metrics)."""
    with Client(target) as client, tqdm(disable=True) as bar:
        info = client.model("twin")
        start = time.perf_counter()
        score_session(client, info, session, [Job("main", tier)], parts, workers, bar)
        return time.perf_counter() - start


def main() -> int:
    """Measure both, interleaved, and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", default="build/synth", help="a session folder or its parent")
    parser.add_argument("--tier", default="final_test_main")
    parser.add_argument("--workers", type=int, default=4, help="concurrent Predict calls")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--clip-threads",
        default="1",
        help="server ONNX Runtime threads per clip; 1 with 2 workers suits throughput "
        "(concurrent clips), 0 (every core) suits a single clip's latency",
    )
    args = parser.parse_args()
    if not Path(args.data).exists():
        print(
            f"bench/scoring.py: {args.data} not found; it scores the full-scale synthetic "
            "mouse: run `make synth-default` first (about 10 minutes), or pass --data",
            file=sys.stderr,
        )
        return 2
    session = find_sessions(args.data)[0]
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = SensoriumModel(CoreConfig(), [MouseSpec.from_session(session)]).eval()
    eager_s, served_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        write_version(model, {}, repo, "twin", {})
        server = ServerProcess(
            repo,
            Path(tmp) / "server.log",
            "--clip-threads",
            args.clip_threads,
            "--clip-workers",
            str(args.workers),
        )
        try:
            for i in range(args.repeats):
                seconds, frames = eager(model, session, args.tier)
                eager_s.append(seconds)
                served_s.append(
                    served(
                        f"localhost:{server.port}",
                        session,
                        args.tier,
                        args.workers,
                        Path(tmp) / f"parts{i}",
                    )
                )
                shutil.rmtree(Path(tmp) / f"parts{i}")
        finally:
            server.stop()
    e, s = statistics.median(eager_s), statistics.median(served_s)
    trials = len(session.trial_indices(args.tier))
    print(
        f"\n{session.name}: {args.tier}, {trials} trials, {frames} frames, "
        f"{session.n_neurons} neurons; medians of {args.repeats} interleaved runs"
    )
    print(f"{'figure':52s} {'measured':>10s} {'target':>8s}  ok")
    rows = [
        ("PyTorch eager in-process, 2 threads (frames/s)", frames / e, "", None),
        (f"client score path, {args.workers} concurrent Predict (frames/s)", frames / s, "", None),
        ("  ratio served / eager", round(e / s, 2), ">= 1.5", e / s >= 1.5),
    ]
    for label, value, target, ok in rows:
        print(
            f"{label:52s} {value:10.2f} {target:>8s}  {'' if ok is None else 'yes' if ok else 'NO'}"
        )
    return 0 if e / s >= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
