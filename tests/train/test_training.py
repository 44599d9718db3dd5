"""Training writes a self-describing checkpoint and is deterministic per seed on CPU."""

from __future__ import annotations

from pathlib import Path

import torch

from sensorium_data import Session
from sensorium_train.model import SensoriumModel
from sensorium_train.train import TrainConfig, load_checkpoint, train


def test_checkpoint_records_provenance(tiny_checkpoint: Path, tiny_mouse: Path) -> None:
    model, checkpoint = load_checkpoint(tiny_checkpoint)
    assert isinstance(model, SensoriumModel)
    assert checkpoint["data"] == [str(tiny_mouse.resolve())]
    assert checkpoint["config"]["core"]["kind"] == "factorised3d"
    assert len(checkpoint["git_revision"]) in (40, 7) or checkpoint["git_revision"] == "unknown"
    oracle = checkpoint["metrics"]["oracle"]
    assert set(oracle) == {"single_trial_correlation", "correlation_to_average", "feve"}
    assert "pooled_neurons" in oracle["single_trial_correlation"]
    assert (tiny_checkpoint.parent / "training.json").is_file()


def test_deterministic_per_seed(tiny_mouse: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        steps=3, batch=2, window=30, warmup_frames=5, eval_every=3, seed=7, neurons_per_step=16
    )
    session = Session(tiny_mouse)
    first = train([session], config, tmp_path / "a", progress=False)["state_dict"]
    second = train([session], config, tmp_path / "b", progress=False)["state_dict"]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_quality_report_against_the_ceiling(tiny_checkpoint: Path, tiny_mouse: Path) -> None:
    from sensorium_train.evaluate import format_report, quality_report

    model, _ = load_checkpoint(tiny_checkpoint)
    report = quality_report(model, [Session(tiny_mouse)], ["final_test_main", "oracle"])
    row = report["final_test_main"]["single_trial_correlation"]
    assert row["ceiling"] > 0.1
    assert row["fraction_of_ceiling"] == row["mean_over_mice"] / row["ceiling"]
    table = format_report(report)
    assert "| final_test_main | single_trial_correlation |" in table


def test_frame_stride_scores_every_nth_frame(tiny_checkpoint: Path) -> None:
    model, checkpoint = load_checkpoint(tiny_checkpoint)
    name = checkpoint["mice"][0]["name"]
    mouse = model.mouse(name).eval()
    torch.manual_seed(3)
    video = torch.rand(1, 20, *mouse.head.frame_shape) * 255
    behavior, pupil = torch.rand(1, 20, 2) * 10, torch.rand(1, 20, 2) * 100
    neurons = torch.tensor([0, 5, 7])
    with torch.no_grad():
        every = mouse(video, behavior, pupil, neurons=neurons)
        strided = mouse(video, behavior, pupil, neurons=neurons, from_frame=4, frame_stride=3)
    assert strided.shape == (1, 6, 3)
    torch.testing.assert_close(strided, every[:, 4::3])


def test_older_checkpoints_load_as_they_were_trained(tiny_checkpoint: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(tiny_checkpoint, weights_only=False)
    model, _ = load_checkpoint(tiny_checkpoint)
    assert model.core.stack  # type: ignore[union-attr]
    del checkpoint["config"]["core"]["stack"]  # written before stacked cores
    channels = checkpoint["config"]["core"]["channels"][-1]
    for key, value in list(checkpoint["state_dict"].items()):
        if key.endswith("readout.features"):
            checkpoint["state_dict"][key] = value[:, :channels]
    torch.save(checkpoint, tmp_path / "old.pt")
    old, _ = load_checkpoint(tmp_path / "old.pt")
    assert not old.core.stack  # type: ignore[union-attr]
    assert old.core.out_channels == channels  # type: ignore[union-attr]
