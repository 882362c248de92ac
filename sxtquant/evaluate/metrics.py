"""Pixel metrics and the expert-comparison pixel classes of a segmentation.

Built in layers (as nnU-Net's evaluation): pure functions on arrays first, then
:func:`evaluate` (one prediction against one truth, a JSON-ready dict), then
:func:`evaluate_files` (the same on files, through :mod:`sxtquant.io`), which the
``sxtquant evaluate`` command wraps.

Conventions
-----------
- Arrays are (Z, Y, X); a 2D (Y, X) array is taken as one slice.
- A *prediction* is either a probability map (float, values in [0, 1]) or a mask
  (bool or integer, e.g. uint8 0/255). A probability is positive where it is
  **strictly greater** than ``threshold`` (the paper's 0.9). A mask is positive
  where it is > 0 and ``threshold`` does not apply; for a 0/255 mask this is the
  same as thresholding ``mask / 255`` at any threshold in [0, 1).
- A *truth* or *artifact* mask is positive where it is > 0 (or True).
- A metric that is undefined (a ratio with a zero denominator) is NaN, never 0.

Definitions (TP, FP, FN, TN: pixel counts over the whole volume)
------------------------------------------------------------------
================  ==========================  =====================================
metric            formula                     NaN when
================  ==========================  =====================================
accuracy          (TP + TN) / all pixels      never (inputs are never empty)
precision         TP / (TP + FP)              nothing predicted
recall            TP / (TP + FN)              no truth
f1                2 TP / (2 TP + FP + FN)     nothing predicted and no truth
================  ==========================  =====================================

``f1`` equals the harmonic mean of precision and recall wherever both are defined;
an empty prediction against a non-empty truth scores 0 (a definite failure), not NaN.

The expert-comparison classes of the paper's Fig. 2D/E are computed per z-slice
from P (the binary prediction), T (the expert truth) and A (the artifact mask),
see :func:`expert_classes`; the artifact mask changes only the classes, never the
pixel metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sxtquant.core.defaults import THRESHOLD

DEFAULT_THRESHOLD = THRESHOLD


"""The paper's decision threshold on the membrane probability."""


CLASS_KEYS = ("true_positive", "false_positive", "artifact", "false_negative")


"""The four expert-comparison classes, in the order of the JSON and of Fig. 2E."""


PIXEL_KEYS = ("accuracy", "precision", "recall", "f1")


# Columns of the per-slice count table: TP, FP outside artifacts, FP inside
# artifacts, FN, TN. Every metric of this module is derived from these five counts.
_TP, _FP_CLEAN, _FP_ARTIFACT, _FN, _TN = range(5)


def _as_zyx(array: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):  # keep memory maps as they are
        array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D (y, x) or 3D (z, y, x) array, got {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    return array[np.newaxis] if array.ndim == 2 else array


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return threshold


def binarize(prediction: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """The binary prediction: probability > ``threshold``, or mask > 0.

    Parameters
    ----------
    prediction : (Z, Y, X) or (Y, X) ndarray
        float: a probability map with values in [0, 1]; bool or integer: a mask
        (e.g. uint8 0/255), positive where > 0, and ``threshold`` is ignored.
    threshold : float
        Decision threshold in [0, 1]; positive means strictly greater.

    Returns
    -------
    ndarray of bool, same shape

    Raises
    ------
    ValueError
        If a float prediction has values outside [0, 1] (or NaN), or the threshold
        is outside [0, 1].

    Examples
    --------
    >>> binarize(np.array([0.5, 0.9, 0.95])).tolist()
    [False, False, True]
    >>> binarize(np.array([0, 255], dtype=np.uint8)).tolist()
    [False, True]
    """
    threshold = _check_threshold(threshold)
    prediction = np.asarray(prediction)
    if prediction.dtype == bool:
        return prediction
    if np.issubdtype(prediction.dtype, np.integer):
        return prediction > 0
    if not np.issubdtype(prediction.dtype, np.floating):
        raise ValueError(f"prediction has unsupported data type {prediction.dtype}")
    if prediction.size:
        low, high = float(np.min(prediction)), float(np.max(prediction))
        if not (low >= 0.0 and high <= 1.0):  # also catches NaN
            raise ValueError(
                f"a float prediction must be a probability map with values in [0, 1], "
                f"got values in [{low:g}, {high:g}]; give masks as uint8 0/255 or bool"
            )
    return prediction > threshold


def _check_same_shape(**arrays: np.ndarray | None) -> None:
    shapes = {name: a.shape for name, a in arrays.items() if a is not None}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"shapes differ: {described}")


def slice_counts(
    prediction: np.ndarray,
    truth: np.ndarray,
    artifacts: np.ndarray | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> np.ndarray:
    """Per-slice pixel counts: the single pass every other metric is derived from.

    Works slice by slice, so a memory-mapped volume is never loaded whole.

    Parameters
    ----------
    prediction : (Z, Y, X) ndarray
        Probability map or mask, see :func:`binarize`.
    truth : (Z, Y, X) ndarray
        Truth mask, positive where > 0.
    artifacts : (Z, Y, X) ndarray, optional
        Artifact mask, positive where > 0.
    threshold : float
        Decision threshold on probabilities.

    Returns
    -------
    (Z, 5) ndarray of int64
        Columns: TP, FP outside artifacts, FP inside artifacts, FN, TN.
    """
    threshold = _check_threshold(threshold)
    prediction = _as_zyx(prediction, "prediction")
    truth = _as_zyx(truth, "truth")
    artifacts = None if artifacts is None else _as_zyx(artifacts, "artifacts")
    _check_same_shape(prediction=prediction, truth=truth, artifacts=artifacts)
    counts = np.zeros((prediction.shape[0], 5), dtype=np.int64)
    for z in range(prediction.shape[0]):
        p = binarize(prediction[z], threshold)
        t = np.asarray(truth[z]) > 0
        false_pos = p & ~t
        in_artifact = (
            np.count_nonzero(false_pos & (np.asarray(artifacts[z]) > 0))
            if artifacts is not None
            else 0
        )
        tp = np.count_nonzero(p & t)
        fp = np.count_nonzero(false_pos)
        fn = np.count_nonzero(t & ~p)
        counts[z] = (tp, fp - in_artifact, in_artifact, fn, p.size - tp - fp - fn)
    return counts


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


def _metrics_from_counts(tp, fp, fn, tn) -> dict[str, float]:
    return {
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def pixel_metrics(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, float | int]:
    """Pixel-wise accuracy, precision, recall and F1 over the whole volume.

    Parameters
    ----------
    prediction : (Z, Y, X) or (Y, X) ndarray
        Probability map or mask, see :func:`binarize`.
    truth : ndarray, same shape
        Truth mask, positive where > 0.
    threshold : float
        Decision threshold on probabilities (positive means > threshold).

    Returns
    -------
    dict
        ``accuracy``, ``precision``, ``recall``, ``f1`` (float, NaN where undefined)
        and the counts ``tp``, ``fp``, ``fn``, ``tn`` (int).

    Examples
    --------
    >>> truth = np.array([[1, 1, 0, 0]])
    >>> prob = np.array([[0.95, 0.5, 0.99, 0.1]])
    >>> m = pixel_metrics(prob, truth)
    >>> m["precision"], m["recall"], m["accuracy"]
    (0.5, 0.5, 0.5)
    """
    counts = slice_counts(prediction, truth, threshold=threshold).sum(axis=0)
    return _pixel_summary(counts)


def _pixel_summary(total: np.ndarray) -> dict[str, float | int]:
    tp = int(total[_TP])
    fp = int(total[_FP_CLEAN] + total[_FP_ARTIFACT])
    fn, tn = int(total[_FN]), int(total[_TN])
    return {**_metrics_from_counts(tp, fp, fn, tn), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def per_slice_metrics(
    prediction: np.ndarray,
    truth: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> pd.DataFrame:
    """Pixel metrics of every z-slice, as a tidy table (one row per slice).

    The distributions behind the paper's Fig. 2A box plots.

    Returns
    -------
    pandas.DataFrame
        Columns ``z``, ``accuracy``, ``precision``, ``recall``, ``f1`` (NaN where
        undefined for that slice), ``tp``, ``fp``, ``fn``, ``tn``.
    """
    counts = slice_counts(prediction, truth, threshold=threshold)
    rows = [{"z": z, **_pixel_summary(row)} for z, row in enumerate(counts)]
    columns = ["z", *PIXEL_KEYS, "tp", "fp", "fn", "tn"]
    return pd.DataFrame(rows, columns=columns)


def tolerance_metrics(
    prediction: np.ndarray,
    truth: np.ndarray,
    tolerance: float,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    sampling: float | Sequence[float] | None = None,
    mode: str = "slice",
) -> dict[str, float | int]:
    """Precision, recall and F1 that forgive a boundary offset up to ``tolerance``.

    A predicted pixel counts as correct if a truth pixel lies within distance
    ``tolerance`` of it (Euclidean, ``<=``); a truth pixel counts as found if a
    predicted pixel lies within ``tolerance`` of it. Thin membranes drawn by hand
    are rarely placed to the pixel, so this is the fairer score for them. With
    ``tolerance=0`` it equals :func:`pixel_metrics`.

    Parameters
    ----------
    prediction : (Z, Y, X) or (Y, X) ndarray
        Probability map or mask, see :func:`binarize`.
    truth : ndarray, same shape
        Truth mask, positive where > 0.
    tolerance : float
        Largest distance, in the units of ``sampling`` (voxels by default).
    threshold : float
        Decision threshold on probabilities.
    sampling : float or sequence of float, optional
        Voxel spacing for the distances (``(y, x)`` in ``"slice"`` mode,
        ``(z, y, x)`` in ``"volume"`` mode); default 1 (distances in voxels).
    mode : {"slice", "volume"}
        ``"slice"``: distances within each z-slice (truth drawn slice by slice, the
        paper's setting); ``"volume"``: 3D distances.

    Returns
    -------
    dict
        ``precision`` = correct predicted / predicted (NaN if nothing predicted),
        ``recall`` = found truth / truth (NaN if no truth), ``f1`` = their harmonic
        mean (0 if exactly one of prediction and truth is empty, NaN if both are),
        the counts ``predicted_matched``, ``predicted``, ``truth_matched``,
        ``truth`` summed over the volume, and ``tolerance``.
    """
    from scipy import ndimage

    if mode not in ("slice", "volume"):
        raise ValueError(f"mode must be 'slice' or 'volume', got {mode!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    threshold = _check_threshold(threshold)
    prediction = _as_zyx(prediction, "prediction")
    truth = _as_zyx(truth, "truth")
    _check_same_shape(prediction=prediction, truth=truth)

    def within(source: np.ndarray, target: np.ndarray) -> int:
        # How many `source` pixels have a `target` pixel within the tolerance.
        if not (source.any() and target.any()):
            return 0
        distance = ndimage.distance_transform_edt(~target, sampling=sampling)
        return int(np.count_nonzero(source & (distance <= tolerance)))

    if mode == "volume":
        blocks = [(binarize(prediction, threshold), np.asarray(truth) > 0)]
    else:
        blocks = (
            (binarize(prediction[z], threshold), np.asarray(truth[z]) > 0)
            for z in range(prediction.shape[0])
        )
    pred_matched = pred_total = truth_matched = truth_total = 0
    for p, t in blocks:
        pred_matched += within(p, t)
        truth_matched += within(t, p)
        pred_total += int(np.count_nonzero(p))
        truth_total += int(np.count_nonzero(t))
    precision = _ratio(pred_matched, pred_total)
    recall = _ratio(truth_matched, truth_total)
    if pred_total == 0 and truth_total == 0:
        f1 = math.nan
    elif pred_total == 0 or truth_total == 0 or precision + recall == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return {
        "tolerance": float(tolerance),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "predicted_matched": pred_matched,
        "predicted": pred_total,
        "truth_matched": truth_matched,
        "truth": truth_total,
    }


def image_accuracy_per_slice(reconstruction: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Per z-slice fraction of pixels reconstructed within one SD of the input.

    A pixel counts as reproduced where ``|reconstruction - image| <= SD``, SD being
    the standard deviation (ddof = 0) of that z-slice of ``image``. Both arrays must
    be in the same intensity space (for the network's image head: the per-slice
    standardised input, whose SD is 1).

    Parameters
    ----------
    reconstruction, image : (Z, Y, X) or (Y, X) ndarray of float, same shape

    Returns
    -------
    (Z,) ndarray of float64
        Fraction in [0, 1] for every slice.
    """
    reconstruction = _as_zyx(reconstruction, "reconstruction")
    image = _as_zyx(image, "image")
    _check_same_shape(reconstruction=reconstruction, image=image)
    fractions = np.empty(image.shape[0])
    for z in range(image.shape[0]):
        reference = np.asarray(image[z], dtype=np.float64)
        error = np.abs(np.asarray(reconstruction[z], dtype=np.float64) - reference)
        fractions[z] = np.count_nonzero(error <= reference.std()) / reference.size
    return fractions


def image_accuracy(reconstruction: np.ndarray, image: np.ndarray) -> float:
    """The image-reconstruction accuracy: fraction of all pixels reproduced within one SD.

    The paper's image-head score (> 80 % on hold-out data). Defined per slice as in
    :func:`image_accuracy_per_slice` (SD of each input z-slice) and pooled over all
    pixels; every slice has the same pixel count, so this is the mean over slices.

    Examples
    --------
    >>> image = np.array([[0.0, 2.0, 0.0, 2.0]])  # SD 1
    >>> float(image_accuracy(image + np.array([[0.5, -1.0, 1.5, 0.0]]), image))
    0.75
    """
    return float(image_accuracy_per_slice(reconstruction, image).mean())
