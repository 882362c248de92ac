"""Bootstrap intervals of held-out scores: over test tomograms, and slices within each.

A held-out score (the membranes' F1, the cell's Dice) is measured on a handful of test
tomograms, each a stack of slices. Neighbouring slices of one tomogram are alike, and
tomograms differ (their cells, their acquisitions), so the slices are not independent
draws and a bootstrap over slices alone would give too narrow an interval. The
bootstrap here resamples both levels, as the data were sampled (the two-stage bootstrap
of hierarchical data, Davison & Hinkley 1997, §3.8): the tomograms with replacement,
then, for every drawn tomogram, its slices with replacement; a tomogram drawn twice adds
two independent resamples of its slices.

* :func:`bootstrap_weights` — the draws as weights: how often each slice is taken.
* :func:`count_intervals` — pooled scores from per-slice counts (pixel TP, FP, FN, TN):
  every draw sums the counts of its slices and recomputes the score from the sums, so
  the interval is that of the pooled score (the number of a hold-out table), not of a
  mean of per-slice scores.
* :func:`paired_count_intervals` — A − B of two methods scored on the same slices, both
  summed over the same draws.
* :func:`tomogram_interval`, :func:`paired_tomogram_interval` — a score that exists per
  tomogram only (a Dice, an instance F1): the mean over tomograms, tomograms resampled.
* :func:`pixel_scores`, :func:`tolerance_scores` — scores from summed counts, as
  :func:`~sxtquant.evaluate.metrics.pixel_metrics` and
  :func:`~sxtquant.evaluate.metrics.tolerance_metrics` compute them.

Every interval is the percentile interval (2.5 and 97.5 percentiles at ``level=0.95``)
of ``samples`` seeded draws; draws on which a score is undefined (NaN) are left out. The
result says which levels were resampled (``levels``): one test tomogram leaves only its
slices (``["slices"]``), one slice per tomogram only the tomograms.

Examples
--------
>>> counts = np.array([[8, 2, 2, 88], [6, 4, 2, 88], [9, 1, 1, 89], [7, 3, 3, 87]])
>>> f1 = count_intervals(counts, ["a", "a", "b", "b"], samples=200)["f1"]
>>> round(f1["value"], 3), f1["low"] <= f1["value"] <= f1["high"], f1["levels"]
(0.769, True, ['tomograms', 'slices'])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LEVEL",
    "PIXEL_COUNTS",
    "SAMPLES",
    "TOLERANCE_COUNTS",
    "Resampling",
    "bootstrap_weights",
    "count_intervals",
    "paired_count_intervals",
    "paired_tomogram_interval",
    "pixel_scores",
    "tolerance_scores",
    "tomogram_interval",
]

#: Bootstrap draws of an interval.
SAMPLES = 2000
#: Coverage of an interval.
LEVEL = 0.95
#: The per-slice count columns of :func:`pixel_scores`, in order.
PIXEL_COUNTS = ("tp", "fp", "fn", "tn")
#: The per-slice count columns of :func:`tolerance_scores`, in order (the counts of
#: :func:`~sxtquant.evaluate.metrics.tolerance_metrics`).
TOLERANCE_COUNTS = ("predicted_matched", "predicted", "truth_matched", "truth")

Scorer = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )


def _columns(counts, k: int, name: str) -> list[np.ndarray]:
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape[-1:] != (k,):
        raise ValueError(f"{name} needs (..., {k}) counts, got shape {counts.shape}")
    return [counts[..., i] for i in range(k)]


def pixel_scores(counts) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall and F1 from summed pixel counts.

    Parameters
    ----------
    counts : (..., 4) array of int or float
        TP, FP, FN, TN (:data:`PIXEL_COUNTS`), summed over the slices scored.

    Returns
    -------
    dict of str to (...) ndarray of float64
        ``accuracy``, ``precision``, ``recall``, ``f1``; NaN where undefined (as
        :func:`~sxtquant.evaluate.metrics.pixel_metrics`).
    """
    tp, fp, fn, tn = _columns(counts, 4, "pixel_scores")
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def tolerance_scores(counts) -> dict[str, np.ndarray]:
    """Tolerance precision, recall and F1 from summed tolerance counts.

    Parameters
    ----------
    counts : (..., 4) array
        Predicted pixels with a truth pixel within the tolerance, predicted pixels,
        truth pixels with a predicted one within it, truth pixels
        (:data:`TOLERANCE_COUNTS`), summed over the slices scored.

    Returns
    -------
    dict of str to (...) ndarray of float64
        ``precision``, ``recall``, ``f1`` as
        :func:`~sxtquant.evaluate.metrics.tolerance_metrics` defines them (F1 0 when
        exactly one of prediction and truth is empty, NaN when both are).
    """
    matched, predicted, found, truth = _columns(counts, 4, "tolerance_scores")
    precision, recall = _ratio(matched, predicted), _ratio(found, truth)
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic = 2 * precision * recall / (precision + recall)
    one_empty = (predicted == 0) | (truth == 0) | (precision + recall == 0)
    f1 = np.where((predicted == 0) & (truth == 0), np.nan, np.where(one_empty, 0.0, harmonic))
    return {"precision": precision, "recall": recall, "f1": f1}


@dataclass(frozen=True)
class Resampling:
    """Bootstrap draws of the slices of a test set.

    Attributes
    ----------
    weights : (samples, n_slices) ndarray of int64
        How often each slice is taken in each draw.
    levels : tuple of str
        What was resampled: ``"tomograms"`` (more than one), ``"slices"`` (a tomogram
        with more than one slice).
    n_tomograms, n_slices, samples, seed : int
    """

    weights: np.ndarray
    levels: tuple[str, ...]
    n_tomograms: int
    n_slices: int
    samples: int
    seed: int


def bootstrap_weights(tomograms: Sequence, *, samples: int = SAMPLES, seed: int = 0) -> Resampling:
    """Two-level bootstrap draws of slices grouped by tomogram.

    Each draw takes as many tomograms as there are, with replacement; a tomogram
    taken m times contributes m independent resamples (with replacement) of its own
    slices. The slice weights of a draw therefore sum to the slices of the drawn
    tomograms.

    Parameters
    ----------
    tomograms : sequence
        The tomogram of every slice (any hashable labels, one per slice, in the
        order of the counts they will weight).
    samples : int
        Number of draws.
    seed : int
        Seed of :func:`numpy.random.default_rng`; the same labels and seed give the
        same draws, so two methods scored on the same slices share them.

    Returns
    -------
    Resampling
    """
    labels = np.asarray(tomograms)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"need one tomogram label per slice, got shape {labels.shape}")
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    _, group = np.unique(labels, return_inverse=True)
    group = group.ravel()
    n_tomograms = int(group.max()) + 1
    sizes = np.bincount(group, minlength=n_tomograms)
    rng = np.random.default_rng(seed)
    levels = tuple(
        level
        for level, resampled in (("tomograms", n_tomograms > 1), ("slices", sizes.max() > 1))
        if resampled
    )
    if n_tomograms > 1:
        picks = rng.integers(n_tomograms, size=(samples, n_tomograms))
        taken = (picks[:, :, None] == np.arange(n_tomograms)).sum(axis=1)
    else:
        taken = np.ones((samples, 1), dtype=np.int64)
    weights = np.zeros((samples, labels.size), dtype=np.int64)
    for t, size in enumerate(sizes):
        members = np.flatnonzero(group == t)
        if size == 1:
            weights[:, members[0]] = taken[:, t]
        else:
            weights[:, members] = rng.multinomial(taken[:, t] * size, np.full(size, 1.0 / size))
    return Resampling(weights, levels, n_tomograms, int(labels.size), int(samples), int(seed))


def _interval(
    value: float, draws: np.ndarray, resampling: Resampling, level: float, statistic: str
) -> dict:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    alpha = (1 - level) / 2
    draws = draws[np.isfinite(draws)]
    low, high = np.quantile(draws, [alpha, 1 - alpha]) if draws.size else (np.nan, np.nan)
    return {
        "value": float(value),
        "low": float(low),
        "high": float(high),
        "level": float(level),
        "statistic": statistic,
        "levels": list(resampling.levels),
        "n_tomograms": resampling.n_tomograms,
        "n_slices": resampling.n_slices,
        "samples": resampling.samples,
        "seed": resampling.seed,
    }


def _scored(counts, resampling: Resampling, scorer: Scorer):
    counts = np.asarray(counts)
    if counts.ndim != 2 or len(counts) != resampling.n_slices:
        raise ValueError(
            f"need ({resampling.n_slices}, k) per-slice counts, one row per tomogram label, "
            f"got shape {counts.shape}"
        )
    point = {k: float(v) for k, v in scorer(counts.sum(axis=0)).items()}
    draws = scorer(resampling.weights @ counts)
    return point, draws


def count_intervals(
    counts,
    tomograms: Sequence,
    *,
    scorer: Scorer = pixel_scores,
    samples: int = SAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, dict]:
    """Pooled scores of per-slice counts with their two-level bootstrap intervals.

    Parameters
    ----------
    counts : (n_slices, k) array of int
        Per-slice counts, the columns ``scorer`` reads (:data:`PIXEL_COUNTS` for
        :func:`pixel_scores`).
    tomograms : sequence, length n_slices
        The tomogram of every slice.
    scorer : callable
        Maps summed counts (..., k) to a dict of scores (...).
    samples, seed : int
        Of :func:`bootstrap_weights`.
    level : float
        Coverage of the percentile interval.

    Returns
    -------
    dict of str to dict
        For every score: ``value`` (pooled over all slices), ``low``, ``high``,
        ``level``, ``statistic`` (``"pooled"``), ``levels``, ``n_tomograms``,
        ``n_slices``, ``samples``, ``seed``.
    """
    resampling = bootstrap_weights(tomograms, samples=samples, seed=seed)
    point, draws = _scored(counts, resampling, scorer)
    return {k: _interval(point[k], draws[k], resampling, level, "pooled") for k in point}


def paired_count_intervals(
    counts_a,
    counts_b,
    tomograms: Sequence,
    *,
    scorer: Scorer = pixel_scores,
    samples: int = SAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, dict]:
    """The difference A − B of two methods' pooled scores on the same slices.

    Both methods are summed over the same draws (a slice is compared with itself, a
    drawn tomogram with itself), so what the two share cancels.

    Parameters
    ----------
    counts_a, counts_b : (n_slices, k) arrays
        The two methods' per-slice counts, row i of both the same slice.
    tomograms, scorer, samples, seed, level
        As :func:`count_intervals`.

    Returns
    -------
    dict of str to dict
        As :func:`count_intervals`, ``value`` being the difference of the pooled
        scores, ``statistic`` ``"pooled difference"``, and ``excludes_zero`` whether
        the interval lies on one side of 0.
    """
    if np.shape(counts_a) != np.shape(counts_b):
        raise ValueError(f"counts differ in shape: {np.shape(counts_a)}, {np.shape(counts_b)}")
    resampling = bootstrap_weights(tomograms, samples=samples, seed=seed)
    point_a, draws_a = _scored(counts_a, resampling, scorer)
    point_b, draws_b = _scored(counts_b, resampling, scorer)
    out = {}
    for k in point_a:
        row = _interval(
            point_a[k] - point_b[k], draws_a[k] - draws_b[k], resampling, level, "pooled difference"
        )
        out[k] = row | {"excludes_zero": bool(row["low"] > 0 or row["high"] < 0)}
    return out


def _tomogram_mean(values, samples: int, seed: int, level: float, statistic: str) -> dict:
    values = np.asarray(values, dtype=np.float64).ravel()
    defined = values[np.isfinite(values)]
    if defined.size:
        resampling = bootstrap_weights(np.arange(defined.size), samples=samples, seed=seed)
        draws = resampling.weights @ defined / resampling.weights.sum(axis=1)
        value = float(defined.mean())
    else:  # no tomogram has a score
        resampling = Resampling(np.zeros((samples, 0)), (), 0, 0, int(samples), int(seed))
        draws, value = np.empty(0), np.nan
    row = _interval(value, draws, resampling, level, statistic)
    del row["n_slices"]
    return row


def tomogram_interval(
    values, *, samples: int = SAMPLES, seed: int = 0, level: float = LEVEL
) -> dict:
    """The mean of a per-tomogram score with its bootstrap interval over tomograms.

    Parameters
    ----------
    values : (n_tomograms,) array of float
        One score per tomogram; NaN (undefined on that tomogram) is left out.
    samples, seed, level
        As :func:`count_intervals`.

    Returns
    -------
    dict
        ``value`` (the mean), ``low``, ``high``, ``level``, ``statistic`` (``"mean over
        tomograms"``), ``levels``, ``n_tomograms`` (those with a defined score),
        ``samples``, ``seed``; NaN throughout when no tomogram has a score.
    """
    return _tomogram_mean(values, samples, seed, level, "mean over tomograms")


def paired_tomogram_interval(
    values_a, values_b, *, samples: int = SAMPLES, seed: int = 0, level: float = LEVEL
) -> dict:
    """The mean over tomograms of A − B, tomograms resampled (the same for both).

    Parameters
    ----------
    values_a, values_b : (n_tomograms,) arrays of float
        The two methods' scores, element i of both the same tomogram; a tomogram where
        either is NaN is left out.

    Returns
    -------
    dict
        As :func:`tomogram_interval` (``statistic`` ``"mean difference over
        tomograms"``), with ``excludes_zero``.
    """
    a, b = np.asarray(values_a, np.float64), np.asarray(values_b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"values differ in shape: {a.shape}, {b.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        row = _tomogram_mean(a - b, samples, seed, level, "mean difference over tomograms")
    return row | {"excludes_zero": bool(row["low"] > 0 or row["high"] < 0)}
