"""One prediction scored against its truth: arrays or files."""

from __future__ import annotations

import os

import numpy as np

from sxtquant.evaluate.classes import _class_table, summarize_classes
from sxtquant.evaluate.metrics import (
    DEFAULT_THRESHOLD,
    PIXEL_KEYS,
    _pixel_summary,
    slice_counts,
    tolerance_metrics,
)


def evaluate(
    prediction: np.ndarray,
    truth: np.ndarray,
    artifacts: np.ndarray | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    tolerance: float | None = None,
) -> dict:
    """Everything ``sxtquant evaluate`` reports, for arrays, as a JSON-ready dict.

    Parameters
    ----------
    prediction : (Z, Y, X) or (Y, X) ndarray
        Probability map or mask, see :func:`binarize`.
    truth : ndarray, same shape
        Expert truth mask, positive where > 0.
    artifacts : ndarray, same shape, optional
        Artifact mask; changes only the ``classes``.
    threshold : float
        Decision threshold on probabilities (positive means > threshold).
    tolerance : float, optional
        Also report :func:`tolerance_metrics` with this tolerance in voxels
        (distances within each z-slice).

    Returns
    -------
    dict
        ``threshold``, ``n_slices``, ``accuracy``, ``precision``, ``recall``, ``f1``,
        ``counts`` (``tp``, ``fp``, ``fn``, ``tn``), ``classes`` (see
        :func:`summarize_classes`) and, if asked, ``tolerance``. Undefined values
        are NaN (``sxtquant.io.write_json`` writes them as null).
    """
    counts = slice_counts(prediction, truth, artifacts, threshold=threshold)
    pixel = _pixel_summary(counts.sum(axis=0))
    result: dict = {
        "threshold": float(threshold),
        "n_slices": int(counts.shape[0]),
        **{key: pixel[key] for key in PIXEL_KEYS},
        "counts": {key: pixel[key] for key in ("tp", "fp", "fn", "tn")},
        "classes": summarize_classes(_class_table(counts)),
    }
    if tolerance is not None:
        result["tolerance"] = tolerance_metrics(prediction, truth, tolerance, threshold=threshold)
    return result


def evaluate_files(
    prediction: str | os.PathLike,
    truth: str | os.PathLike,
    artifacts: str | os.PathLike | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    tolerance: float | None = None,
) -> dict:
    """:func:`evaluate` on files read by :func:`sxtquant.io.read_volume`.

    The result also names the files (``prediction``, ``truth``, ``artifacts``).

    Raises
    ------
    InputError
        A file that cannot be read, a float prediction outside [0, 1], shapes that
        differ (the message names both files), or a bad threshold or tolerance.
    """
    from sxtquant.core.errors import InputError
    from sxtquant.io.volumes import read_volume

    if not 0.0 <= float(threshold) <= 1.0:
        raise InputError("--threshold", f"must be in [0, 1], got {threshold}")
    if tolerance is not None and not float(tolerance) >= 0:
        raise InputError("--tolerance", f"must be >= 0 voxels, got {tolerance}")
    paths = {"prediction": prediction, "truth": truth, "artifacts": artifacts}
    volumes = {role: read_volume(path).data for role, path in paths.items() if path is not None}
    reference = volumes["prediction"].shape
    for role in ("truth", "artifacts"):
        if role in volumes and volumes[role].shape != reference:
            raise InputError(
                paths[role],
                f"{role} shape (z, y, x) {volumes[role].shape} does not match the "
                f"prediction {os.fspath(prediction)} shape {reference}",
            )
    try:
        result = evaluate(
            volumes["prediction"],
            volumes["truth"],
            volumes.get("artifacts"),
            threshold=threshold,
            tolerance=tolerance,
        )
    except ValueError as exc:
        raise InputError(prediction, str(exc)) from None
    names = {role: None if path is None else os.fspath(path) for role, path in paths.items()}
    return {**names, **result}
