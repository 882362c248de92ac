"""Detected filopodia against the simulated ones: matches and errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FilopodiumQuantity:
    """A filopodium quantity compared with the simulation's analytic value.

    ``measured`` is a column of the per-filopodium table of
    :func:`sxtquant.quantify.filopodia.analyze` (``scale`` times it), ``true`` a column of the
    simulator's ``objects.csv``; ``display`` converts nm units for plots and tables.
    """

    name: str
    measured: str
    true: str
    scale: float = 1.0
    unit: str = "nm"
    display_unit: str = "nm"
    display_factor: float = 1.0


#: What :func:`match_filopodia` compares: the centreline length (simulator: from the
#: cell surface to the tip), the diameter (twice the capsule radius), volume and
#: surface area of the part outside the cell body.
FILOPODIUM_QUANTITIES: tuple[FilopodiumQuantity, ...] = (
    FilopodiumQuantity("length", "length_nm", "length_nm"),
    FilopodiumQuantity("diameter", "radius_nm", "diameter_nm", scale=2.0),
    FilopodiumQuantity("volume", "volume_nm3", "volume_nm3", 1.0, "nm3", "10⁶ nm³", 1e-6),
    FilopodiumQuantity(
        "surface_area", "surface_area_nm2", "surface_area_nm2", 1.0, "nm2", "10⁴ nm²", 1e-4
    ),
)


def _overlaps(detected: np.ndarray, true: np.ndarray) -> pd.DataFrame:
    """Voxel counts of every (detected label, true label) pair with detected > 0."""
    inside = detected > 0
    a = detected[inside].astype(np.int64)
    b = true[inside].astype(np.int64)
    if a.size == 0:
        return pd.DataFrame({"label": [], "true_label": [], "voxels": []}, dtype=np.int64)
    pairs, counts = np.unique(np.stack([a, b]), axis=1, return_counts=True)
    return pd.DataFrame({"label": pairs[0], "true_label": pairs[1], "voxels": counts})


def _relative_error(measured: np.ndarray, true: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(true > 0, (measured - true) / true, np.nan)


def match_filopodia(
    detected_labels: np.ndarray,
    detected: pd.DataFrame,
    true_labels: np.ndarray,
    true_table: pd.DataFrame,
) -> pd.DataFrame:
    """Match each detected filopodium to the true one it overlaps most; compare values.

    Parameters
    ----------
    detected_labels : (Z, Y, X) ndarray of int
        The labels the ``label`` column of ``detected`` refers to (from
        :func:`sxtquant.quantify.filopodia.find_filopodia`).
    detected : pandas.DataFrame
        Per-filopodium table of :func:`sxtquant.quantify.filopodia.analyze`: ``label``,
        ``length_nm``, ``radius_nm``, ``volume_nm3``, ``surface_area_nm2``.
    true_labels : (Z, Y, X) ndarray of int
        The simulation's filled instance labels (``objects.tif``).
    true_table : pandas.DataFrame
        The simulation's ``objects.csv``: ``label``, ``class`` and, for filopodia,
        ``length_nm``, ``diameter_nm``, ``volume_nm3``, ``surface_area_nm2``.

    Returns
    -------
    pandas.DataFrame
        One row per detected filopodium, in the order of ``detected``, then one per
        true filopodium that no detection matched. Columns: ``label`` (detected; 0
        for a missed one), ``true_label`` (0 when the detection overlaps no true
        filopodium), ``overlap_voxels``, ``overlap_fraction`` (of the detection's
        voxels), ``status`` (``matched``, ``false`` for a detection of no filopodium,
        ``missed`` for a true filopodium not detected), and per quantity of
        :data:`FILOPODIUM_QUANTITIES` ``<name>_<unit>_measured``,
        ``<name>_<unit>_true`` and ``<name>_relative_error``
        ((measured - true) / true). Values that do not exist are NaN.

        Filopodia that leave the volume are left out of the statistics, as in the
        paper's Fig. 3B: a true filopodium flagged ``touches_border`` in
        ``true_table`` (the simulator's cut ones) and each detection matched to one
        get the status ``cut``, and so does a detection flagged ``touches_border``
        in ``detected`` that matches no wholly-inside true filopodium.
    """
    detected_labels = np.asarray(detected_labels)
    true_labels = np.asarray(true_labels)
    if detected_labels.shape != true_labels.shape:
        raise ValueError(
            f"detected labels {detected_labels.shape} and true labels {true_labels.shape} differ"
        )
    filopodia = true_table[true_table["class"] == "filopodium"].set_index("label")
    wanted = set(int(v) for v in detected["label"])
    overlaps = _overlaps(detected_labels, true_labels)
    overlaps = overlaps[
        overlaps["label"].isin(wanted) & overlaps["true_label"].isin(filopodia.index)
    ]
    sizes = _voxel_counts(detected_labels, wanted)
    best = (
        overlaps.sort_values(["label", "voxels", "true_label"], ascending=[True, False, True])
        .drop_duplicates("label")
        .set_index("label")
    )
    cut_truth = set()
    if "touches_border" in filopodia:
        cut_truth = set(filopodia.index[filopodia["touches_border"].astype(bool)].astype(int))
    rows = []
    for _, det in detected.iterrows():
        label = int(det["label"])
        row: dict = {"label": label, "true_label": 0, "overlap_voxels": 0}
        if label in best.index:
            row["true_label"] = int(best.loc[label, "true_label"])
            row["overlap_voxels"] = int(best.loc[label, "voxels"])
        size = sizes.get(label, 0)
        row["overlap_fraction"] = row["overlap_voxels"] / size if size else math.nan
        row["status"] = "matched" if row["true_label"] else "false"
        if row["true_label"] in cut_truth or (
            not row["true_label"] and bool(det.get("touches_border", False))
        ):
            row["status"] = "cut"
        for q in FILOPODIUM_QUANTITIES:
            row[f"{q.name}_{q.unit}_measured"] = q.scale * float(det.get(q.measured, math.nan))
        rows.append(row)
    found = {r["true_label"] for r in rows}
    for true_label in filopodia.index:
        if int(true_label) not in found:
            rows.append(
                {
                    "label": 0,
                    "true_label": int(true_label),
                    "overlap_voxels": 0,
                    "overlap_fraction": math.nan,
                    "status": "cut" if int(true_label) in cut_truth else "missed",
                }
            )
    columns = ["label", "true_label", "overlap_voxels", "overlap_fraction", "status"]
    for q in FILOPODIUM_QUANTITIES:
        columns += [
            f"{q.name}_{q.unit}_measured",
            f"{q.name}_{q.unit}_true",
            f"{q.name}_relative_error",
        ]
    table = pd.DataFrame(rows).reindex(columns=columns)
    table = table.astype({"label": np.int64, "true_label": np.int64, "overlap_voxels": np.int64})
    for q in FILOPODIUM_QUANTITIES:
        measured = f"{q.name}_{q.unit}_measured"
        truth = f"{q.name}_{q.unit}_true"
        values = filopodia[q.true] if q.true in filopodia else pd.Series(dtype=float)
        table[truth] = table["true_label"].map(values).astype(float)
        table[measured] = table[measured].astype(float)
        table[f"{q.name}_relative_error"] = _relative_error(
            table[measured].to_numpy(), table[truth].to_numpy()
        )
    return table


def _voxel_counts(labels: np.ndarray, wanted: set[int]) -> dict[int, int]:
    if not wanted:
        return {}
    values, counts = np.unique(labels[labels > 0], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True) if int(v) in wanted}


def matching_summary(matches: pd.DataFrame) -> dict:
    """Counts and errors of a :func:`match_filopodia` table.

    Returns
    -------
    dict
        ``true`` (true filopodia wholly inside the volume), ``detected``, ``matched``
        (detections matched to such a true filopodium), ``true_found`` (true
        filopodia matched at least once), ``false`` (detections of no filopodium),
        ``missed``, ``cut`` (rows left out because the filopodium leaves the volume),
        and ``mean_abs_relative_error`` per quantity over the matched rows (NaN if none).
    """
    status = matches["status"]
    matched = matches[status == "matched"]
    inside = (matches["true_label"] > 0) & (status != "cut")
    true_ids = set(matches.loc[inside, "true_label"])
    errors = {}
    for q in FILOPODIUM_QUANTITIES:
        values = matched[f"{q.name}_relative_error"].abs().dropna()
        errors[q.name] = float(values.mean()) if len(values) else math.nan
    return {
        "true": len(true_ids),
        "detected": int((matches["label"] > 0).sum()),
        "matched": len(matched),
        "true_found": int(matched["true_label"].nunique()),
        "false": int((status == "false").sum()),
        "missed": int((status == "missed").sum()),
        "cut": int((status == "cut").sum()),
        "mean_abs_relative_error": errors,
    }
