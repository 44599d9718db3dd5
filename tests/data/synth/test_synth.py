"""The synthetic mouse: layout, determinism, ceiling, and the biology it claims."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from sensorium_data import TIERS, Session
from sensorium_data.metrics import aggregate, score_mouse
from sensorium_data.synth import neurons
from sensorium_data.synth.behavior import PUPIL_CENTER_REST, sample_behavior
from sensorium_data.synth.ceiling import load_rates
from sensorium_data.synth.generate import SyntheticMouse, generate_session
from sensorium_data.synth.plan import SynthConfig, plan_session
from sensorium_data.synth.stimuli import STIMULI, stimulus_statistics

SMALL = SynthConfig.small()


@pytest.fixture(scope="module")
def small_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    session, _ = generate_session(SMALL, 0, tmp_path_factory.mktemp("synth"), progress=False)
    return session


def test_layout_is_valid_and_complete(small_session: Session) -> None:
    small_session.validate()
    assert small_session.n_neurons == SMALL.neurons
    assert small_session.n_trials == SMALL.trials
    counts = small_session.summary()["tiers"]
    assert all(counts[tier] > 0 for tier in TIERS), counts
    lengths = [t.length for t in small_session.trials()]
    assert max(lengths) == SMALL.max_frames
    assert min(lengths) < SMALL.max_frames  # some trials are NaN-padded
    stats = small_session.statistics("responses")
    assert stats.mean.shape == (SMALL.neurons,)
    assert (small_session.trial(0).responses[:, : lengths[0]] >= 0).all()


def test_repeats_show_identical_clips_with_different_responses(small_session: Session) -> None:
    by_clip: dict[str, list[int]] = defaultdict(list)
    for trial in small_session.trials("oracle"):
        by_clip[trial.clip_id].append(trial.index)
    repeated = [ids for ids in by_clip.values() if len(ids) >= 2]
    assert repeated
    a, b = (small_session.trial(i) for i in repeated[0][:2])
    np.testing.assert_array_equal(a.video_frames(), b.video_frames())
    assert not np.array_equal(a.response_frames(), b.response_frames())
    assert not np.array_equal(a.behavior_frames(), b.behavior_frames())


def test_bonus_trials_record_stimulus_types(small_session: Session) -> None:
    types = {t.stimulus_type for t in small_session.trials(["live_test_bonus", "final_test_bonus"])}
    assert types <= set(STIMULI) - {"natural_movie"}
    assert types
    assert {t.stimulus_type for t in small_session.trials("train")} == {"natural_movie"}


def test_ceiling_is_what_the_metrics_module_computes(small_session: Session) -> None:
    """Re-score the stored rates trial by trial, in index order, without close_clip."""
    saved = json.loads((small_session.root / "ground_truth/ceiling.json").read_text())
    for tier in ("oracle", "live_test_main", "final_test_bonus"):
        trials = [
            (t.response_frames(), load_rates(t), t.clip_id) for t in small_session.trials(tier)
        ]
        figures = aggregate({"m": score_mouse(trials, small_session.n_neurons)})
        for metric, value in saved["ceiling"][tier].items():
            if metric != "trials":
                assert figures[metric]["pooled_neurons"] == pytest.approx(value, rel=1e-9)
    main = saved["ceiling"]["track:main"]["single_trial_correlation"]
    assert 0.2 < main < 0.9


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_deterministic_per_seed(tmp_path: Path) -> None:
    tiny = SynthConfig.small(neurons=30, trials=16, max_frames=80)
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        session, _ = generate_session(
            SynthConfig(**{**tiny.__dict__, "seed": seed}), 0, tmp_path / name, progress=False
        )
        runs.append(_tree_digest(session.root))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_plan_shares_test_clips_across_mice() -> None:
    config = SynthConfig.small(mice=2)
    first, second = plan_session(config, 0), plan_session(config, 1)
    oracle = lambda plan: sorted({t.clip_id for t in plan if t.tier == "oracle"})  # noqa: E731
    assert oracle(first) == oracle(second)
    train = lambda plan: {t.clip_id for t in plan if t.tier == "train"}  # noqa: E731
    assert not train(first) & train(second)


def test_bonus_stimuli_differ_in_statistics_from_movies() -> None:
    rng = np.random.default_rng(0)
    stats = {name: stimulus_statistics(make(rng, 300, 36, 64)) for name, make in STIMULI.items()}
    movie = stats["natural_movie"]
    assert -1.4 < movie["spatial_spectrum_slope"] < -0.6
    assert movie["frame_to_frame_correlation"] > 0.9
    assert movie["static_frame_fraction"] < 0.1
    assert stats["drifting_gratings"]["spatial_spectrum_slope"] < -1.8
    assert stats["gaussian_dots"]["spatial_spectrum_slope"] < -1.8
    assert stats["random_dot_kinematogram"]["frame_to_frame_correlation"] < 0.5
    assert stats["pink_noise"]["frame_to_frame_correlation"] < 0.6
    assert stats["flashed_images"]["static_frame_fraction"] > 0.5


def test_behavior_has_bouts_arousal_and_saccades() -> None:
    rng = np.random.default_rng(3)
    samples = [sample_behavior(rng, 300) for _ in range(40)]
    speed = np.concatenate([s.behavior[1] for s in samples])
    pupil = np.concatenate([s.behavior[0] for s in samples])
    assert 0.1 < (speed > 2).mean() < 0.9  # bouts: both still and running
    assert np.corrcoef(speed, pupil)[0, 1] > 0.1  # dilation follows running
    jumps = np.concatenate([np.abs(np.diff(s.pupil_center, axis=1)).max(axis=0) for s in samples])
    assert (jumps > 2.5).sum() >= 20  # saccades
    assert np.median(jumps) < 1.0  # between them, small drifts


@pytest.fixture(scope="module")
def mouse() -> SyntheticMouse:
    return SyntheticMouse(SynthConfig.small(neurons=300), 0)


def test_receptive_fields_follow_the_eye(mouse: SyntheticMouse) -> None:
    """Moving the image and the eye together leaves the retinal image unchanged."""
    rng = np.random.default_rng(5)
    video = STIMULI["natural_movie"](rng, 20, 36, 64)
    rest = np.repeat(PUPIL_CENTER_REST[:, None], 20, axis=1)
    shifted_video = np.roll(video, 4, axis=2)  # image moves 4 px right on the screen
    # The eye turns to follow it (pupil moves the same way), so the retina sees no change.
    shifted_eye = rest + np.array([[4 / neurons.EYE_GAIN], [0.0]], dtype=np.float32)
    a = neurons.retinal_image(video, rest).reshape(20, 18, 32)
    b = neurons.retinal_image(shifted_video, shifted_eye).reshape(20, 18, 32)
    np.testing.assert_allclose(a[:, 4:-4, 6:-6], b[:, 4:-4, 6:-6], atol=0.05)
    moved = neurons.retinal_image(video, shifted_eye).reshape(20, 18, 32)
    assert np.abs(moved - a)[:, 4:-4, 6:-6].mean() > 0.02


def test_direction_selective_neurons_prefer_one_direction(mouse: SyntheticMouse) -> None:
    pop = mouse.population
    rest = np.repeat(PUPIL_CENTER_REST[:, None], 60, axis=1)
    gy, gx = np.meshgrid(np.arange(36), np.arange(64), indexing="ij")
    t = np.arange(60)[:, None, None]
    selectivity = []
    for n in range(60):
        theta, period = pop.orientation[n], pop.period[n]
        proj = gx * np.cos(theta) + gy * np.sin(theta)
        means = []
        for sign in (1, -1):
            grating = 127.5 + 100 * np.sin(2 * np.pi * (proj - sign * 1.2 * t) / period)
            retina = neurons.retinal_image(grating.astype(np.float32), rest)
            projected = retina @ mouse.filters
            even, odd = projected[:, : pop.n_neurons], projected[:, pop.n_neurons :]
            drive = neurons.linear_drive(pop, even, odd)[20:, n]
            means.append(drive.std() if not pop.is_complex[n] else drive.mean())
        selectivity.append(abs(means[0] - means[1]) / (means[0] + means[1] + 1e-9))
    d = pop.direction_index[:60]
    assert np.corrcoef(d, selectivity)[0, 1] > 0.3
