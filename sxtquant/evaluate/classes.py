"""The expert-comparison pixel classes of the paper's Fig. 2D/E."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sxtquant.evaluate.metrics import (
    _FN,
    _FP_ARTIFACT,
    _FP_CLEAN,
    _TP,
    CLASS_KEYS,
    DEFAULT_THRESHOLD,
    slice_counts,
)


def expert_classes(
    prediction: np.ndarray,
    truth: np.ndarray,
    artifacts: np.ndarray | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> pd.DataFrame:
    """The expert-comparison pixel classes of the paper's Fig. 2D/E, per z-slice.

    With P the binary prediction, T the expert truth and A the artifact mask:
    ``true_positive`` = P∧T, ``false_positive`` = P∧¬T∧¬A, ``artifact`` = P∧¬T∧A,
    ``false_negative`` = T∧¬P; each as a percentage of the slice's labelled pixels
    (TP + FP + artifact + FN), so the four add up to 100. Slices with no labelled
    pixel are left out. Without ``artifacts`` the ``artifact`` class is 0.

    Parameters
    ----------
    prediction : (Z, Y, X) or (Y, X) ndarray
        Probability map or mask, see :func:`binarize`.
    truth, artifacts : ndarray, same shape
        Masks, positive where > 0.
    threshold : float
        Decision threshold on probabilities.

    Returns
    -------
    pandas.DataFrame
        One row per slice with labelled pixels: ``z``, the four classes in percent,
        and ``labelled_pixels`` (the count they are percentages of).
    """
    counts = slice_counts(prediction, truth, artifacts, threshold=threshold)
    return _class_table(counts)


def _class_table(counts: np.ndarray) -> pd.DataFrame:
    classes = counts[:, [_TP, _FP_CLEAN, _FP_ARTIFACT, _FN]]
    labelled = classes.sum(axis=1)
    keep = np.flatnonzero(labelled)
    table = pd.DataFrame(
        100.0 * classes[keep] / labelled[keep, np.newaxis], columns=list(CLASS_KEYS)
    )
    table.insert(0, "z", keep.astype(int))
    table["labelled_pixels"] = labelled[keep]
    return table


def summarize_classes(table: pd.DataFrame) -> dict:
    """The ``classes`` block of the evaluation JSON from :func:`expert_classes`' table.

    Returns
    -------
    dict
        ``{"per_slice": [{"z": 0, "true_positive": ..., "false_positive": ...,
        "artifact": ..., "false_negative": ...}, ...], "mean": {the four keys},
        "sd": {the four keys}}``; SD with ddof = 1, NaN with fewer than two slices
        (mean NaN with none).
    """
    per_slice = [
        {"z": int(row["z"]), **{key: float(row[key]) for key in CLASS_KEYS}}
        for _, row in table.iterrows()
    ]
    n = len(table)
    mean = {key: float(table[key].mean()) if n else math.nan for key in CLASS_KEYS}
    sd = {key: float(table[key].std(ddof=1)) if n > 1 else math.nan for key in CLASS_KEYS}
    return {"per_slice": per_slice, "mean": mean, "sd": sd}
