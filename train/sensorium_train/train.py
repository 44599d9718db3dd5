"""The training loop: Poisson loss on random windows, oracle validation, early stopping."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sensorium_data import Session
from sensorium_data.metrics import MouseMetrics, MouseScorer, aggregate
from sensorium_train.cores import CoreConfig
from sensorium_train.data import MouseWindows
from sensorium_train.model import MouseSpec, SensoriumModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run."""

    steps: int = 4000
    batch: int = 8
    window: int = 90
    warmup_frames: int = 30  # loss skips frames whose receptive field is incomplete
    lr: float = 3e-3
    weight_decay: float = 1e-5
    readout_l1: float = 1e-4
    eval_every: int = 200
    patience: int = 5
    neurons_per_step: int = 2048  # readout subset per step (0: all neurons)
    frame_stride: int = 1  # loss on every n-th frame: neighbours are redundant, the readout costly
    seed: int = 0
    device: str = "cpu"
    time_limit_min: float = 0.0  # 0: no limit
    core: CoreConfig = field(default_factory=CoreConfig)


def git_revision() -> str:
    """The git revision of the working tree, or "unknown"."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def learning_rate_factor(step: int, steps: int, elapsed_s: float, limit_s: float) -> float:
    """Cosine decay over the run: by steps, or by time when a time limit ends it sooner.

    With a time limit the schedule follows whichever is further along, so the
    learning rate anneals to 0 by the end of the budget instead of stopping high.
    """
    progress = step / steps
    if limit_s > 0:
        progress = max(progress, elapsed_s / limit_s)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def poisson_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Poisson negative log-likelihood (up to a constant)."""
    return (prediction - target * torch.log(prediction + 1e-8)).mean()


@torch.no_grad()
def evaluate(
    model: SensoriumModel,
    session: Session,
    tiers: str | tuple[str, ...] = "oracle",
    device: str = "cpu",
) -> MouseMetrics:
    """Predict every trial of ``tiers`` whole and score it with the project's metrics."""
    was_training = model.training
    model.eval()
    mouse = model.mouse(session.name).to(device)
    scorer = MouseScorer(session.n_neurons)
    for trial in session.trials(tiers):
        if not trial.has_responses:
            continue
        inputs = (trial.video_frames(), trial.behavior_frames(), trial.pupil_center_frames())
        tensors = [torch.from_numpy(a)[None].to(device) for a in inputs]
        prediction = mouse(*tensors)[0].cpu().numpy()
        scorer.add(trial.response_frames(), prediction, trial.clip_id)
    model.train(was_training)
    return scorer.result()


def _validate(model: SensoriumModel, sessions: list[Session], device: str) -> dict[str, Any]:
    per_mouse = {s.name: evaluate(model, s, "oracle", device) for s in sessions}
    return aggregate(per_mouse)


def train(
    sessions: list[Session], config: TrainConfig, out: Path, progress: bool = True
) -> dict[str, Any]:
    """Train on ``sessions`` and write ``out/checkpoint.pt``; returns the checkpoint dict."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    specs = [MouseSpec.from_session(s) for s in sessions]
    model = SensoriumModel(config.core, specs).to(config.device)
    data = [
        MouseWindows(s, spec, progress=progress) for s, spec in zip(sessions, specs, strict=True)
    ]
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    out.mkdir(parents=True, exist_ok=True)
    best: dict[str, Any] = {"score": -np.inf, "step": 0, "metrics": {}}
    history: list[dict[str, Any]] = []
    started, evals_without_gain = time.monotonic(), 0
    bar = tqdm(range(1, config.steps + 1), desc="train", disable=not progress)
    for step in bar:
        batch = data[step % len(data)].sample(rng, config.batch, config.window)
        mouse = model.mouse(batch.mouse, normalized=True)
        tensors = [
            t.to(config.device)
            for t in (batch.video, batch.behavior, batch.pupil_center, batch.responses)
        ]
        n = mouse.head.readout.bias.shape[0]
        subset = None
        if config.neurons_per_step and config.neurons_per_step < n:
            subset = torch.from_numpy(rng.choice(n, config.neurons_per_step, replace=False))
        skip = config.warmup_frames
        stride = config.frame_stride
        prediction = mouse(*tensors[:3], neurons=subset, from_frame=skip, frame_stride=stride)
        target = tensors[3][:, skip::stride]
        target = target if subset is None else target[:, :, subset]
        loss = poisson_loss(prediction, target)
        loss = loss + config.readout_l1 * mouse.head.readout.features.abs().mean()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        factor = learning_rate_factor(
            step, config.steps, time.monotonic() - started, 60 * config.time_limit_min
        )
        for group in optimizer.param_groups:
            group["lr"] = config.lr * factor
        loss_value = float(loss.detach())
        out_of_time = bool(config.time_limit_min) and (
            time.monotonic() - started > 60 * config.time_limit_min
        )
        if step % config.eval_every and step != config.steps and not out_of_time:
            continue
        metrics = _validate(model, sessions, config.device)
        score = metrics["single_trial_correlation"]["pooled_neurons"]
        history.append({"step": step, "loss": loss_value, "oracle": metrics})
        bar.set_postfix(loss=f"{loss_value:.4f}", oracle=f"{score:.3f}")
        logger.info(
            "step %d loss %.4f oracle single-trial correlation %.4f", step, loss_value, score
        )
        if score > best["score"]:
            best = {"score": score, "step": step, "metrics": metrics}
            evals_without_gain = 0
            torch.save(model.state_dict(), out / "best_weights.pt")
        else:
            evals_without_gain += 1
        if evals_without_gain >= config.patience or out_of_time:
            logger.info(
                "stopping at step %d (%s)", step, "time limit" if out_of_time else "no gain"
            )
            break
    model.load_state_dict(torch.load(out / "best_weights.pt", weights_only=True))
    checkpoint = {
        "format": "sensorium-serve checkpoint v1",
        "config": _jsonable(asdict(config)),
        "mice": [asdict(spec) for spec in specs],
        "data": [str(s.root.resolve()) for s in sessions],
        "metrics": {"oracle": best["metrics"], "best_step": best["step"]},
        "history": history,
        "git_revision": git_revision(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_seconds": round(time.monotonic() - started, 1),
        "state_dict": model.state_dict(),
    }
    torch.save(checkpoint, out / "checkpoint.pt")
    (out / "training.json").write_text(
        json.dumps({k: v for k, v in checkpoint.items() if k != "state_dict"}, indent=2) + "\n"
    )
    return checkpoint


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def core_config_from(raw: dict[str, Any]) -> CoreConfig:
    """A core config as JSON holds it (lists for tuples), from any checkpoint's age."""
    older = {"spatial_dilations": [1, 1, 1], "stack": False}  # checkpoints from before these
    core = {**older, **raw}
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in core.items()}
    return CoreConfig(**fields)


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[SensoriumModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint written by :func:`train`."""
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    core_config = core_config_from(checkpoint["config"]["core"])
    specs = [MouseSpec(**{**m, "frame_shape": tuple(m["frame_shape"])}) for m in checkpoint["mice"]]
    model = SensoriumModel(core_config, specs)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
