"""The claim statistics of the evaluation (evaluation/claims.py) on tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.claims import (
    CLAIMS,
    NOT_REPRODUCED,
    REPRODUCED,
    Claim,
    score_claim,
    score_claims,
)

MEDIAN = Claim("m", "a beats b", "-", "per_slice", "precision", "median", "a", "b")
POOLED = Claim("p", "a beats b", "-", "per_slice", "f1", "pooled_f1", "a", "b")
LOWER = Claim("l", "a misses less", "-", "classes", "false_negative", "mean", "a", "b", False)


def _table(values: dict[tuple[str, int], np.ndarray], column: str = "precision") -> pd.DataFrame:
    """Per-slice rows of (method, seed) -> values over 2 tomograms of len/2 slices."""
    rows = []
    for (method, seed), vals in values.items():
        half = len(vals) // 2
        for i, v in enumerate(vals):
            rows.append(
                {"method": method, "seed": seed, "tomogram": f"t{i // half}", "z": i % half}
                | ({column: v} if np.isscalar(v) else dict(zip(("tp", "fp", "fn"), v, strict=True)))
            )
    return pd.DataFrame(rows)


def test_a_constant_gain_is_reproduced_with_a_point_interval():
    rng = np.random.default_rng(1)
    base = {s: rng.uniform(0.2, 0.6, 20) for s in range(3)}
    table = _table({**{("a", s): base[s] + 0.1 for s in base}, **{("b", s): base[s] for s in base}})
    row = score_claim(MEDIAN, table)
    assert row["difference"] == pytest.approx(0.1)
    assert row["ci_low"] == pytest.approx(0.1) and row["ci_high"] == pytest.approx(0.1)
    assert (row["n_seeds"], row["n_slices"]) == (3, 20)
    assert row["verdict"] == REPRODUCED


def test_seeds_that_disagree_are_not_a_reproduction():
    # seed 0: a better by 0.2; seed 1: a worse by 0.2; mean difference 0
    x = np.linspace(0.2, 0.6, 10)
    table = _table({("a", 0): x + 0.2, ("b", 0): x, ("a", 1): x, ("b", 1): x + 0.2})
    row = score_claim(MEDIAN, table)
    assert row["difference"] == pytest.approx(0.0)
    assert row["ci_low"] < 0 < row["ci_high"]
    assert row["verdict"] == NOT_REPRODUCED


def test_the_claimed_direction_counts():
    x = np.linspace(0.2, 0.6, 10)
    table = _table({("a", 0): x, ("b", 0): x + 0.1})
    row = score_claim(MEDIAN, table)
    assert row["difference"] == pytest.approx(-0.1)
    assert row["verdict"] == NOT_REPRODUCED


def test_lower_is_better_flips_the_sign():
    x = np.linspace(10, 40, 10)
    table = _table({("a", 0): x - 5, ("b", 0): x}, column="false_negative")
    row = score_claim(LOWER, table)
    assert row["difference"] == pytest.approx(5.0)
    assert row["better_value"] == pytest.approx(x.mean() - 5)
    assert row["verdict"] == REPRODUCED


def test_pooled_f1_comes_from_summed_counts():
    # a: tp 8, fp 2, fn 0 on each of 4 slices -> F1 = 64 / (64 + 8) ; b: F1 = 2*4/(8+4+4)
    a = [(8, 2, 0)] * 4
    b = [(4, 4, 4)] * 4
    row = score_claim(POOLED, _table({("a", 0): a, ("b", 0): b}))
    assert row["better_value"] == pytest.approx(64 / 72)
    assert row["worse_value"] == pytest.approx(0.5)
    assert row["difference"] == pytest.approx(64 / 72 - 0.5)
    assert row["ci_low"] == pytest.approx(row["difference"])


def test_a_method_without_seeds_pairs_with_every_seed():
    x = np.linspace(0.2, 0.6, 10)
    table = _table({("a", 0): x + 0.1, ("a", 1): x + 0.3, ("b", 0): x})
    row = score_claim(MEDIAN, table)
    assert row["n_seeds"] == 2
    assert row["difference"] == pytest.approx(0.2)
    assert 0.1 - 1e-12 <= row["ci_low"] <= row["ci_high"] <= 0.3 + 1e-12


def test_undefined_slices_are_left_out_of_the_median():
    x = np.array([np.nan, 0.3, 0.4, 0.5, np.nan, 0.3, 0.4, 0.5])
    table = _table({("a", 0): x + 0.1, ("b", 0): x})
    row = score_claim(MEDIAN, table)
    assert row["difference"] == pytest.approx(0.1)


def test_only_the_slices_scored_for_both_are_compared():
    x = np.linspace(0.2, 0.6, 10)
    table = _table({("a", 0): x + 0.1, ("b", 0): x})
    # b's first slice of each tomogram is missing; a's values there would change the median
    table.loc[(table["method"] == "a") & (table["z"] == 0), "precision"] = 5.0
    table = table[~((table["method"] == "b") & (table["z"] == 0))]
    row = score_claim(MEDIAN, table)
    assert row["n_slices"] == 8
    assert row["difference"] == pytest.approx(0.1)
    table = table.copy()
    b = table["method"] == "b"
    table.loc[b, "tomogram"] = table.loc[b, "tomogram"] + "-other"
    with pytest.raises(ValueError, match="share no scored slice"):
        score_claim(MEDIAN, table)


def test_score_claims_takes_the_claims_whose_methods_ran():
    x = np.linspace(0.2, 0.6, 10)
    per_slice = _table({("semi-supervised", 0): x + 0.1, ("supervised-only", 0): x})
    classes = per_slice.rename(columns={"precision": "false_negative"})
    table = score_claims(per_slice, classes, samples=200)
    assert list(table["claim"]) == ["semi_beats_supervised"]
    assert {c.key for c in CLAIMS} >= set(table["claim"])
