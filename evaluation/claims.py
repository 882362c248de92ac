"""The paper's claims, measured over training seeds with paired bootstrap intervals.

A claim compares two methods on the held-out test slices ("the semi-supervised network
has a higher median per-slice precision than the supervised-only one", Fig. 2A). One
training run cannot carry such a claim: a short run on another CPU rounds differently,
diverges, and can rank the two the other way. So every network (and the random forest)
is trained with several seeds, and a claim is scored by

* its **difference**: for each seed, the statistic of the better method minus that of
  the worse one over the test slices, averaged over seeds;
* a **paired bootstrap 95 % interval**: seeds and slices are resampled with replacement,
  the same draw for both methods (a slice is compared with itself, seed *i* of one
  method with seed *i* of the other), 2,000 times; the interval is the 2.5 and 97.5
  percentiles of the resampled difference;
* its **verdict**: ``reproduced`` when the interval excludes zero in the claimed
  direction, otherwise ``not reproduced at this size``.

A method trained once (Otsu's threshold has no seed) is paired with every seed of the
other. The statistic of a claim is a median of per-slice values (Fig. 2A), a pooled
pixel score over the slices (F1 from summed counts: the hold-out table's number), or a
mean of per-slice values (the expert-comparison classes, Fig. 2E).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CLAIMS",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "Claim",
    "percent_scale",
    "score_claim",
    "score_claims",
]

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced at this size"
BOOTSTRAP_SAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Claim:
    """One comparison of the paper.

    Attributes
    ----------
    key : str
        Short identifier (tests, tables).
    text : str
        The claim, as a sentence.
    paper : str
        Where the paper makes it and with what number.
    table : {"per_slice", "classes"}
        ``per_slice_metrics.csv`` or ``classes_per_slice.csv``.
    column : str
        The per-slice value compared (``precision``, ``f1``, a class share).
    statistic : {"median", "pooled_f1", "mean"}
    better, worse : str
        Methods; the claim is that ``better`` scores higher than ``worse`` (or lower,
        when ``higher_is_better`` is false).
    higher_is_better : bool
    """

    key: str
    text: str
    paper: str
    table: str
    column: str
    statistic: str
    better: str
    worse: str
    higher_is_better: bool = True


CLAIMS = (
    Claim(
        "semi_beats_supervised",
        "semi-supervised training raises the median per-slice precision over "
        "supervised-only training on the same labels",
        "Fig. 2A: at least 14 % higher",
        "per_slice",
        "precision",
        "median",
        "semi-supervised",
        "supervised-only",
    ),
    Claim(
        "network_beats_forest",
        "the network's pooled F1 is higher than the random forest's",
        "Fig. 2 / SI: the network outperforms classical segmentation",
        "per_slice",
        "f1",
        "pooled_f1",
        "semi-supervised",
        "random-forest",
    ),
    Claim(
        "forest_beats_otsu",
        "the random forest's pooled F1 is higher than Otsu's threshold's",
        "SI: a trained classifier beats a global threshold",
        "per_slice",
        "f1",
        "pooled_f1",
        "random-forest",
        "otsu",
    ),
    Claim(
        "network_fewer_missed_than_forest",
        "the network misses a smaller share of each slice's membrane than the random "
        "forest (expert-comparison class false negative)",
        "Fig. 2E: FN 27.7 ± 10.8 % for the network",
        "classes",
        "false_negative",
        "mean",
        "semi-supervised",
        "random-forest",
        higher_is_better=False,
    ),
)


def percent_scale(statistic: str) -> float:
    """The factor that puts a claim's values in percent: the median and pooled
    statistics are fractions, the class means (``mean``) are percentages already."""
    return 1.0 if statistic == "mean" else 100.0


def _wide(table: pd.DataFrame, method: str, columns: list[str]) -> pd.DataFrame:
    mine = table[table["method"] == method]
    if mine.empty:
        raise ValueError(f"no rows of method {method!r}")
    return mine.pivot(index=["tomogram", "z"], columns="seed", values=columns)


def _matrix(wide: pd.DataFrame, columns: list[str], seeds, slices) -> np.ndarray:
    """(seeds, slices, columns) values of one method on the given slices.

    A method with one seed only is repeated for every seed.
    """
    have = sorted(set(wide.columns.get_level_values("seed")))
    wide = wide.reindex(slices)
    out = np.empty((len(seeds), len(slices), len(columns)))
    for i, seed in enumerate(seeds):
        use = seed if seed in have else (have[0] if len(have) == 1 else None)
        if use is None:
            raise ValueError(f"no rows for seed {seed}")
        for j, column in enumerate(columns):
            out[i, :, j] = wide[(column, use)].to_numpy(float)
    return out


def _statistic(values: np.ndarray, statistic: str) -> np.ndarray:
    """Reduce (..., slices, columns) to (...) along the slice axis."""
    if statistic in ("median", "mean"):
        reduce = np.nanmedian if statistic == "median" else np.nanmean
        with warnings.catch_warnings():
            # a draw of slices on which a method marks nothing has no defined precision
            warnings.simplefilter("ignore", RuntimeWarning)
            return reduce(values[..., 0], axis=-1)
    if statistic == "pooled_f1":
        tp, fp, fn = (values[..., k].sum(axis=-1) for k in range(3))
        denominator = 2 * tp + fp + fn
        with np.errstate(all="ignore"):
            return np.where(denominator > 0, 2 * tp / denominator, np.nan)
    raise ValueError(f"unknown statistic {statistic!r}")


def score_claim(
    claim: Claim,
    table: pd.DataFrame,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict:
    """Difference, paired bootstrap interval and verdict of one claim.

    Parameters
    ----------
    claim : Claim
    table : DataFrame
        Per-slice rows with ``method``, ``seed``, ``tomogram``, ``z`` and the claim's
        column (``tp``, ``fp``, ``fn`` for ``pooled_f1``). Slices scored for one method
        only are left out.
    samples : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``claim``, ``text``, ``paper``, ``better``, ``worse``, ``statistic``,
        ``column``, ``better_value``, ``worse_value`` (means over seeds),
        ``difference`` (better - worse, sign flipped when lower is better, so a
        positive difference always favours the claim), ``ci_low``, ``ci_high``,
        ``n_seeds``, ``n_slices``, ``verdict``.
    """
    columns = ["tp", "fp", "fn"] if claim.statistic == "pooled_f1" else [claim.column]
    seeds = np.array(
        sorted(set(table.loc[table["method"].isin([claim.better, claim.worse]), "seed"]))
    )
    wide_better = _wide(table, claim.better, columns)
    wide_worse = _wide(table, claim.worse, columns)
    # the slices scored for both (the expert classes leave out a slice with no
    # labelled pixel, which depends on the prediction)
    slices = wide_better.index.intersection(wide_worse.index, sort=False)
    if not len(slices):
        raise ValueError(f"{claim.key}: the two methods share no scored slice")
    better = _matrix(wide_better, columns, seeds, slices)
    worse = _matrix(wide_worse, columns, seeds, slices)
    sign = 1.0 if claim.higher_is_better else -1.0
    b_value = _statistic(better, claim.statistic)  # (seeds,)
    w_value = _statistic(worse, claim.statistic)
    difference = float(sign * np.nanmean(b_value - w_value))
    rng = np.random.default_rng(seed)
    n_seeds, n_slices = better.shape[:2]
    seed_draw = rng.integers(n_seeds, size=(samples, n_seeds))
    slice_draw = rng.integers(n_slices, size=(samples, n_slices))
    # (samples, seeds, slices, columns): the same slices for every seed and both methods
    pick = (seed_draw[:, :, None], slice_draw[:, None, :])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a draw with no defined value
        boot = sign * np.nanmean(
            _statistic(better[pick], claim.statistic) - _statistic(worse[pick], claim.statistic),
            axis=1,
        )
    alpha = (1 - LEVEL) / 2
    low, high = (float(v) for v in np.nanquantile(boot, [alpha, 1 - alpha]))
    return {
        "claim": claim.key,
        "text": claim.text,
        "paper": claim.paper,
        "better": claim.better,
        "worse": claim.worse,
        "statistic": claim.statistic,
        "column": claim.column,
        "better_value": float(np.nanmean(b_value)),
        "worse_value": float(np.nanmean(w_value)),
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
        "n_seeds": int(n_seeds),
        "n_slices": int(n_slices),
        "verdict": REPRODUCED if low > 0 else NOT_REPRODUCED,
    }


def score_claims(
    per_slice: pd.DataFrame, classes: pd.DataFrame, *, samples: int = BOOTSTRAP_SAMPLES
) -> pd.DataFrame:
    """:func:`score_claim` of every claim in :data:`CLAIMS` whose methods were run."""
    tables = {"per_slice": per_slice, "classes": classes}
    rows = []
    for claim in CLAIMS:
        table = tables[claim.table]
        if {claim.better, claim.worse} <= set(table["method"]):
            rows.append(score_claim(claim, table, samples=samples))
    return pd.DataFrame(rows)
