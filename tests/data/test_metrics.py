"""Metrics against brute-force formulas written straight from the domain doc."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from sensorium_data.metrics import (
    MEAN_OVER_MICE,
    POOLED,
    MouseScorer,
    Pearson,
    aggregate,
    score_mouse,
)

SKIP = 50
Trial = tuple[np.ndarray, np.ndarray, str]


def brute_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-column Pearson correlation with population std; NaN -> 0."""
    out = np.zeros(x.shape[1])
    for n in range(x.shape[1]):
        if x[:, n].std() > 0 and y[:, n].std() > 0:
            out[n] = np.corrcoef(x[:, n], y[:, n])[0, 1]
    return out


def brute_single(trials: list[Trial]) -> np.ndarray:
    resp = np.concatenate([r[SKIP:] for r, _, _ in trials])
    pred = np.concatenate([p[SKIP:] for _, p, _ in trials])
    return brute_corr(pred, resp)


def by_clip(trials: list[Trial]) -> dict[str, list[Trial]]:
    groups: dict[str, list[Trial]] = defaultdict(list)
    for trial in trials:
        groups[trial[2]].append(trial)
    return groups


def brute_average(trials: list[Trial]) -> np.ndarray:
    groups = by_clip(trials).values()
    resp = np.concatenate([np.mean([r[SKIP:] for r, _, _ in g], axis=0) for g in groups])
    pred = np.concatenate([np.mean([p[SKIP:] for _, p, _ in g], axis=0) for g in groups])
    return brute_corr(pred, resp)


def brute_fev(trials: list[Trial]) -> tuple[np.ndarray, np.ndarray]:
    groups = [g for g in by_clip(trials).values() if len(g) >= 2]
    repeats = [np.stack([r[SKIP:] for r, _, _ in g]) for g in groups]  # R x T x N
    noise = np.concatenate([np.var(x, axis=0, ddof=1) for x in repeats]).mean(axis=0)
    resp = np.concatenate([r[SKIP:] for g in groups for r, _, _ in g])
    pred = np.concatenate([p[SKIP:] for g in groups for _, p, _ in g])
    total = np.var(resp, axis=0, ddof=1)
    mse = ((pred - resp) ** 2).mean(axis=0)
    return 1 - noise / total, 1 - (mse - noise) / (total - noise)


def make_trials(
    rng: np.random.Generator, n: int, clips: dict[str, tuple[int, int]], noise: float = 1.0
) -> list[Trial]:
    """clips: {clip_id: (repeats, length)}; predictions share signal with responses."""
    trials = []
    for clip, (repeats, length) in clips.items():
        signal = rng.gamma(2.0, size=(length, n)) * 3 + 5
        for _ in range(repeats):
            resp = signal + rng.normal(scale=noise, size=signal.shape)
            pred = signal + rng.normal(scale=2 * noise, size=signal.shape)
            trials.append((resp, pred, clip))
    rng.shuffle(trials)  # type: ignore[arg-type]
    return trials


def check_all(trials: list[Trial], n: int) -> None:
    result = score_mouse(trials, n)
    np.testing.assert_allclose(result.single_trial_correlation, brute_single(trials), atol=1e-10)
    np.testing.assert_allclose(result.correlation_to_average, brute_average(trials), atol=1e-10)
    fev, feve = brute_fev(trials)
    np.testing.assert_allclose(result.fev, fev, rtol=1e-9)
    np.testing.assert_allclose(result.feve, feve, rtol=1e-9)


def test_random_data_with_repeats_and_lengths() -> None:
    """NaN-padded trials of different lengths: each clip has its own real length."""
    rng = np.random.default_rng(0)
    trials = make_trials(rng, 12, {"a": (4, 300), "b": (3, 210), "c": (1, 80), "d": (2, 51)})
    check_all(trials, 12)


def test_single_neuron() -> None:
    rng = np.random.default_rng(1)
    check_all(make_trials(rng, 1, {"a": (3, 120), "b": (2, 90)}), 1)


def test_first_fifty_frames_are_not_scored() -> None:
    rng = np.random.default_rng(2)
    trials = make_trials(rng, 3, {"a": (2, 100)})
    spoiled = [(r, p.copy(), c) for r, p, c in trials]
    for _, p, _ in spoiled:
        p[:SKIP] = 1e6
    a, b = score_mouse(trials, 3), score_mouse(spoiled, 3)
    np.testing.assert_array_equal(a.single_trial_correlation, b.single_trial_correlation)
    np.testing.assert_array_equal(a.feve, b.feve)
    assert a.n_scored_frames == 2 * 50


def test_constant_neuron_scores_zero_correlation() -> None:
    rng = np.random.default_rng(3)
    trials = make_trials(rng, 4, {"a": (3, 100), "b": (2, 100)})
    for r, p, _ in trials:
        r[:, 0] = 2.0  # constant recorded response
        p[:, 1] = 7.0  # constant prediction
    result = score_mouse(trials, 4)
    assert result.single_trial_correlation[0] == 0.0
    assert result.single_trial_correlation[1] == 0.0
    assert result.correlation_to_average[0] == 0.0
    assert np.isnan(result.fev[0])  # no variance to explain
    assert result.feve_neurons().size <= 3
    check_all([(r[:, 2:], p[:, 2:], c) for r, p, c in trials], 2)


def test_clip_with_one_repeat() -> None:
    """A lone clip counts for both correlations; FEVE needs repeats."""
    rng = np.random.default_rng(4)
    lone = make_trials(rng, 5, {"solo": (1, 150)})
    result = score_mouse(lone, 5)
    np.testing.assert_allclose(result.correlation_to_average, result.single_trial_correlation)
    assert np.isnan(result.feve).all()
    assert result.n_repeated_clips == 0
    mixed = lone + make_trials(rng, 5, {"rep": (3, 150)})
    check_all(mixed, 5)


def test_perfect_prediction_of_the_mean() -> None:
    rng = np.random.default_rng(5)
    trials = make_trials(rng, 6, {"a": (5, 200), "b": (5, 200)}, noise=0.5)
    means = {c: np.mean([r for r, _, cc in trials if cc == c], axis=0) for c in ("a", "b")}
    ideal = [(r, means[c], c) for r, _, c in trials]
    result = score_mouse(ideal, 6)
    np.testing.assert_allclose(result.correlation_to_average, 1.0)
    assert (result.feve > 0.9).all()


def test_rejects_bad_trials() -> None:
    scorer = MouseScorer(3)
    good = np.ones((60, 3))
    with pytest.raises(ValueError, match="must both be T x N"):
        scorer.add(good, np.ones((61, 3)), "a")
    with pytest.raises(ValueError, match="expected 3 neurons, got 4"):
        scorer.add(np.ones((60, 4)), np.ones((60, 4)), "a")
    bad = good.copy()
    bad[55, 1] = np.nan
    with pytest.raises(ValueError, match="predictions of clip 'a' hold NaN"):
        scorer.add(good, bad, "a")
    scorer.add(good, good, "a")
    with pytest.raises(ValueError, match="repeats of clip 'a' differ in scored length"):
        scorer.add(np.ones((70, 3)), np.ones((70, 3)), "a")
    assert scorer.n_trials == 1


def test_streaming_pearson_is_stable_with_large_offsets() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1000, 2)) + 1e6
    y = x * 0.5 + rng.normal(size=(1000, 2))
    acc = Pearson(2)
    for chunk in range(0, 1000, 137):
        acc.update(x[chunk : chunk + 137], y[chunk : chunk + 137])
    np.testing.assert_allclose(acc.correlation(), brute_corr(x, y), atol=1e-9)


def test_aggregations_are_named_and_differ() -> None:
    rng = np.random.default_rng(7)
    small = score_mouse(make_trials(rng, 2, {"a": (3, 120)}, noise=3.0), 2)
    large = score_mouse(make_trials(rng, 30, {"a": (3, 120)}, noise=0.3), 30)
    figures = aggregate({"m1": small, "m2": large})
    single = figures["single_trial_correlation"]
    pooled = np.concatenate([small.single_trial_correlation, large.single_trial_correlation])
    assert single[POOLED] == pytest.approx(pooled.mean())
    per_mouse = [small.single_trial_correlation.mean(), large.single_trial_correlation.mean()]
    assert single[MEAN_OVER_MICE] == pytest.approx(np.mean(per_mouse))
    assert single[POOLED] != pytest.approx(single[MEAN_OVER_MICE])
    assert set(figures) == {"single_trial_correlation", "correlation_to_average", "feve"}
    feve = figures["feve"]
    kept = np.concatenate([small.feve_neurons(), large.feve_neurons()])
    assert feve[POOLED] == pytest.approx(kept.mean())
    assert feve["per_mouse"]["m2"] == pytest.approx(large.feve[large.fev >= 0.15].mean())


def test_closing_clips_one_by_one_gives_the_same_result() -> None:
    rng = np.random.default_rng(8)
    trials = make_trials(rng, 7, {"a": (3, 120), "b": (2, 90), "c": (1, 100)})
    scorer = MouseScorer(7)
    for clip in ("a", "b", "c"):
        for r, p, c in trials:
            if c == clip:
                scorer.add(r, p, c)
        scorer.close_clip(clip)
        assert list(scorer.clips) == []
    streamed = scorer.result()
    whole = score_mouse(trials, 7)
    np.testing.assert_allclose(streamed.feve, whole.feve, rtol=1e-12)
    np.testing.assert_allclose(streamed.correlation_to_average, whole.correlation_to_average)
    with pytest.raises(ValueError, match="clip 'a' was already closed"):
        scorer.add(trials[0][0], trials[0][1], "a")


def neuralpredictors_style_fev(
    targets: list[np.ndarray], predictions: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """FEV/FEVE in neuralpredictors' convention, restated: one condition per image (here:
    per scored frame of a repeated clip), targets[i] is repeats x N."""
    noise = np.mean([np.var(t, axis=0, ddof=1) for t in targets], axis=0)
    total = np.var(np.vstack(targets), axis=0, ddof=1)
    mse = np.mean(
        np.vstack([(t - p) ** 2 for t, p in zip(targets, predictions, strict=True)]), axis=0
    )
    return (total - noise) / total, 1 - (mse - noise) / (total - noise)


def test_feve_follows_neuralpredictors_fev_on_unequal_clips_and_single_repeats() -> None:
    """Each scored frame of a clip shown at least twice is one condition (weighted per frame);
    a clip shown once is left out of noise, total variance and MSE."""
    rng = np.random.default_rng(5)
    trials = make_trials(
        rng, 9, {"long": (3, 260), "short": (2, 90), "once": (1, 200), "odd": (4, 57)}
    )
    targets, predictions = [], []
    for group in by_clip(trials).values():
        if len(group) < 2:
            continue
        length = group[0][0].shape[0]
        for frame in range(SKIP, length):
            targets.append(np.stack([r[frame] for r, _, _ in group]))
            predictions.append(np.stack([p[frame] for _, p, _ in group]))
    fev, feve = neuralpredictors_style_fev(targets, predictions)
    result = score_mouse(trials, 9)
    np.testing.assert_allclose(result.fev, fev, rtol=1e-9)
    np.testing.assert_allclose(result.feve, feve, rtol=1e-9)
    assert result.n_repeated_clips == 3
