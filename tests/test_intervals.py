"""Two-level bootstrap intervals (sxtquant.evaluate.intervals) on counts with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from sxtquant.evaluate import metrics
from sxtquant.evaluate.intervals import (
    bootstrap_weights,
    count_intervals,
    paired_count_intervals,
    paired_tomogram_interval,
    pixel_scores,
    tolerance_scores,
    tomogram_interval,
)


def _labels(sizes) -> np.ndarray:
    return np.repeat([f"t{i}" for i in range(len(sizes))], sizes)


def _noisy_counts(rng, n: int, precision: float, recall: float, pixels: int = 400) -> np.ndarray:
    """(n, 4) TP, FP, FN, TN of slices with the given expected precision and recall."""
    tp = rng.binomial(60, recall, n)
    fp = rng.binomial(200, 60 * recall * (1 - precision) / precision / 200, n)
    fn = 60 - tp
    return np.stack([tp, fp, fn, pixels - tp - fp - fn], axis=1)


def test_the_scores_of_summed_counts_are_those_of_pixel_metrics():
    rng = np.random.default_rng(0)
    prob = rng.random((5, 12, 13)).astype(np.float32)
    truth = rng.random((5, 12, 13)) < 0.3
    per_slice = metrics.per_slice_metrics(prob, truth)
    summed = per_slice[["tp", "fp", "fn", "tn"]].to_numpy().sum(axis=0)
    whole = metrics.pixel_metrics(prob, truth)
    assert {k: float(v) for k, v in pixel_scores(summed).items()} == {
        k: whole[k] for k in ("accuracy", "precision", "recall", "f1")
    }
    rows = [metrics.tolerance_metrics(prob[z], truth[z], 2.0) for z in range(5)]
    keys = ("predicted_matched", "predicted", "truth_matched", "truth")
    summed = np.array([[r[k] for k in keys] for r in rows]).sum(axis=0)
    tolerant = metrics.tolerance_metrics(prob, truth, 2.0)
    assert {k: float(v) for k, v in tolerance_scores(summed).items()} == {
        k: tolerant[k] for k in ("precision", "recall", "f1")
    }


def test_undefined_scores_are_nan_and_tolerance_f1_follows_its_rules():
    nothing = pixel_scores(np.array([0, 0, 0, 10]))
    assert np.isnan(nothing["precision"]) and np.isnan(nothing["recall"])
    assert np.isnan(nothing["f1"]) and nothing["accuracy"] == 1.0
    both_empty, no_prediction = tolerance_scores(np.array([[0, 0, 0, 0], [0, 0, 0, 5]]))["f1"]
    assert np.isnan(both_empty) and no_prediction == 0.0


def test_identical_slices_give_a_zero_width_interval_at_the_exact_value():
    slice_counts = np.array([7, 3, 5, 985])
    counts = np.tile(slice_counts, (3 + 5 + 4, 1))
    out = count_intervals(counts, _labels([3, 5, 4]), samples=300)
    for key, value in pixel_scores(slice_counts).items():
        assert out[key]["value"] == out[key]["low"] == out[key]["high"] == float(value)
    assert out["f1"]["value"] == 2 * 7 / (2 * 7 + 3 + 5)
    assert out["f1"]["levels"] == ["tomograms", "slices"]
    assert (out["f1"]["n_tomograms"], out["f1"]["n_slices"], out["f1"]["samples"]) == (3, 12, 300)


def test_a_method_against_itself_differs_by_exactly_zero():
    rng = np.random.default_rng(1)
    counts = _noisy_counts(rng, 20, 0.7, 0.5)
    out = paired_count_intervals(counts, counts, _labels([8, 12]), samples=300)
    for row in out.values():
        assert row["value"] == row["low"] == row["high"] == 0.0
        assert not row["excludes_zero"]


def test_a_clearly_better_method_excludes_zero():
    rng = np.random.default_rng(2)
    labels = _labels([10, 10, 10])
    better = _noisy_counts(rng, 30, 0.85, 0.6)
    worse = _noisy_counts(rng, 30, 0.55, 0.6)
    out = paired_count_intervals(better, worse, labels, samples=500)
    assert out["precision"]["low"] > 0 and out["precision"]["excludes_zero"]
    assert out["precision"]["value"] == pytest.approx(0.3, abs=0.05)


def test_the_same_slices_in_another_order_do_not_exclude_zero():
    # B scores A's slices, shuffled within each tomogram: the same pooled score, and the
    # slice-to-slice differences of either sign leave 0 inside the interval
    rng = np.random.default_rng(3)
    sizes = [12, 12, 12]
    a = _noisy_counts(rng, sum(sizes), 0.7, 0.5)
    order = np.concatenate([rng.permutation(n) + 12 * i for i, n in enumerate(sizes)])
    out = paired_count_intervals(a, a[order], _labels(sizes), samples=500)
    for key in ("precision", "recall", "f1"):
        assert out[key]["value"] == pytest.approx(0.0, abs=1e-12)
        assert out[key]["low"] < 0 < out[key]["high"]
        assert not out[key]["excludes_zero"]


def test_the_interval_covers_the_true_precision_in_most_repetitions():
    # 6 tomograms x 8 slices of 100 predicted pixels each; a tomogram's precision varies
    # about the true 0.7 (SD 0.05), each slice's TP is binomial about it. Resampling the
    # slices alone ignores the tomograms' spread and covers far less often.
    true, repetitions = 0.7, 200
    covered = {"two levels": 0, "slices only": 0}
    labels = {"two levels": _labels([8] * 6), "slices only": ["one"] * 48}
    for repetition in range(repetitions):
        rng = np.random.default_rng([4, repetition])
        rates = np.repeat(np.clip(rng.normal(true, 0.05, 6), 0, 1), 8)
        tp = rng.binomial(100, rates)
        counts = np.stack([tp, 100 - tp, np.full(48, 50), np.full(48, 1000)], axis=1)
        for kind in covered:
            row = count_intervals(counts, labels[kind], samples=400, seed=repetition)
            covered[kind] += row["precision"]["low"] <= true <= row["precision"]["high"]
    assert covered["two levels"] >= 0.85 * repetitions  # 175 of 200 (a 95 % interval)
    assert covered["slices only"] < 0.7 * repetitions  # 116 of 200


def test_the_draws_are_seeded():
    rng = np.random.default_rng(5)
    counts, labels = _noisy_counts(rng, 24, 0.7, 0.5), _labels([6, 6, 12])
    first = count_intervals(counts, labels, samples=200, seed=7)
    assert count_intervals(counts, labels, samples=200, seed=7) == first
    assert count_intervals(counts, labels, samples=200, seed=8)["f1"] != first["f1"]
    assert first["f1"]["seed"] == 7


def test_the_weights_resample_tomograms_then_their_own_slices():
    sizes = [3, 5, 4]
    draws = bootstrap_weights(_labels(sizes), samples=500, seed=0)
    assert draws.weights.shape == (500, 12) and draws.levels == ("tomograms", "slices")
    blocks = np.split(draws.weights, np.cumsum(sizes)[:-1], axis=1)
    taken = np.stack([b.sum(axis=1) / n for b, n in zip(blocks, sizes, strict=True)], axis=1)
    assert np.all(taken == np.round(taken))  # each tomogram drawn a whole number of times
    assert np.all(taken.sum(axis=1) == 3)  # as many tomograms as there are
    assert taken.std() > 0 and np.any(draws.weights[:, 0] != draws.weights[:, 1])


def test_one_tomogram_resamples_its_slices_and_says_so():
    rng = np.random.default_rng(6)
    counts = _noisy_counts(rng, 16, 0.7, 0.5)
    row = count_intervals(counts, ["only"] * 16, samples=300)["f1"]
    assert row["levels"] == ["slices"] and row["n_tomograms"] == 1
    assert row["low"] < row["value"] < row["high"]
    single = count_intervals(counts[:4], ["a", "b", "c", "d"], samples=300)["f1"]
    assert single["levels"] == ["tomograms"]


def test_the_mean_over_tomograms_and_its_paired_difference():
    constant = tomogram_interval([0.6, 0.6, 0.6, np.nan], samples=300)
    assert constant["value"] == constant["low"] == constant["high"] == pytest.approx(0.6)
    assert constant["n_tomograms"] == 3 and constant["levels"] == ["tomograms"]
    spread = tomogram_interval([0.2, 0.4, 0.6, 0.8], samples=500)
    assert spread["value"] == pytest.approx(0.5)
    assert 0.2 <= spread["low"] < 0.5 < spread["high"] <= 0.8
    values = [0.3, 0.5, 0.9]
    same = paired_tomogram_interval(values, values, samples=300)
    assert same["value"] == same["low"] == same["high"] == 0.0 and not same["excludes_zero"]
    gain = paired_tomogram_interval([0.5, 0.6, 0.7], [0.3, 0.45, 0.5], samples=300)
    assert gain["excludes_zero"] and gain["low"] == pytest.approx(0.15)
    assert np.isnan(tomogram_interval([np.nan, np.nan])["value"])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one tomogram label per slice"):
        bootstrap_weights([])
    with pytest.raises(ValueError, match="per-slice counts"):
        count_intervals(np.ones((3, 4)), ["a", "b"])
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\) counts"):
        count_intervals(np.ones((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="differ in shape"):
        paired_count_intervals(np.ones((2, 4)), np.ones((3, 4)), ["a", "b"])
    with pytest.raises(ValueError, match="level"):
        count_intervals(np.ones((2, 4)), ["a", "b"], level=1.5)
