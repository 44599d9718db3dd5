"""The writer produces the layout the reader (and the real release) uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorium_data import Session, SessionWriter


def _trial(rng: np.random.Generator, t: int, n: int) -> dict[str, np.ndarray]:
    return {
        "video": rng.uniform(0, 255, size=(36, 64, t)),
        "behavior": rng.normal(size=(2, t)),
        "pupil_center": rng.normal(size=(2, t)),
        "responses": rng.gamma(1.0, size=(n, t)),
    }


def test_round_trip_and_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    trials = [_trial(rng, t, 5) for t in (30, 12, 30)]
    with SessionWriter(
        tmp_path, "dynamic1-2-3-Video-abc", np.arange(5), rng.normal(size=(5, 3)), max_frames=30
    ) as writer:
        for i, (tier, trial) in enumerate(zip(("train", "oracle", "none"), trials, strict=True)):
            writer.add_trial(tier, **trial, clip_ids=f"c{i}", stimulus_types="movie")
    session = Session(tmp_path / "dynamic1-2-3-Video-abc")
    session.validate()
    assert list(session.tiers) == ["train", "oracle", "none"]
    short = session.trial(1)
    assert short.n_frames == 30
    assert short.length == 12
    assert np.isnan(short.video[..., 12:]).all()
    np.testing.assert_allclose(short.video_frames(), np.moveaxis(trials[1]["video"], -1, 0), 1e-6)
    np.testing.assert_allclose(short.response_frames(), trials[1]["responses"].T, 1e-6)
    assert short.clip_id == "c1"
    assert short.stimulus_type == "movie"
    responses = np.concatenate([t["responses"] for t in trials], axis=1)
    stats = session.statistics("responses")
    np.testing.assert_allclose(stats.mean, responses.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(stats.std, responses.std(axis=1), rtol=1e-5)
    np.testing.assert_allclose(stats.max, responses.max(axis=1), rtol=1e-6)
    videos = np.concatenate([t["video"].ravel() for t in trials])
    video_stats = session.statistics("videos")
    assert video_stats.mean.shape == ()
    np.testing.assert_allclose(video_stats.std, videos.std(), rtol=1e-5)
    np.testing.assert_allclose(video_stats.min, videos.min(), rtol=1e-6)
    assert session.statistics("behavior").mean.shape == (2,)
    assert session.config["data_keys"] == ["videos", "responses", "behavior", "pupil_center"]


def test_trial_without_responses(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    trial = _trial(rng, 20, 4)
    del trial["responses"]
    with SessionWriter(tmp_path, "s", np.arange(4), np.zeros((4, 3)), max_frames=20) as writer:
        writer.add_trial("final_test_main", **trial)
    session = Session(tmp_path / "s")
    assert not session.trial(0).has_responses
    assert session.trial_meta("clip_ids") is None
    assert not (tmp_path / "s/meta/statistics/responses").exists()


def test_rejects_bad_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    writer = SessionWriter(tmp_path, "s", np.arange(4), np.zeros((4, 3)), max_frames=20)
    trial = _trial(rng, 20, 4)
    with pytest.raises(ValueError, match=r"behavior has shape \(2, 19\), expected \(2, 20\)"):
        writer.add_trial("train", **{**trial, "behavior": trial["behavior"][:, :19]})
    with pytest.raises(ValueError, match="tier 'test' is not one of"):
        writer.add_trial("test", **trial)
    with pytest.raises(ValueError, match=r"trial has 25 frames; expected 1\.\.20"):
        writer.add_trial("train", **_trial(rng, 25, 4))
    with pytest.raises(FileExistsError, match=r"session folder exists \(overwrite=True"):
        SessionWriter(tmp_path, "s", np.arange(4), np.zeros((4, 3)))
