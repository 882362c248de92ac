"""The one-page report of ``sxtquant demo``: figures and HTML from arrays and tables.

Every function here takes arrays (axis order (z, y, x), lengths in nm) or pandas
tables and returns a matplotlib figure (on the Agg canvas: no display needed) or
HTML text; nothing touches a file. The demo command writes them with
:func:`sxtquant.io.save_figure` and :func:`sxtquant.io.write_text`.

=================================  ====================================================
:func:`overlay_rgb`                a grey slice with coloured masks on top (RGB)
:func:`comparison_masks`           true positive / false positive / false negative
:func:`slice_overlay_figure`       x–y and x–z slices as the paper's Fig. 1B/2C:
                                   tomogram, prediction, truth, prediction vs truth
:func:`match_filopodia`            each detected filopodium against the simulated one
                                   it overlaps most: measured, true, relative error
:func:`matching_summary`           counts and mean absolute relative errors
:func:`measured_vs_true_figure`    measured against true, one panel per quantity
:func:`crop_figure`                a figure cropped to its drawing (3D renderings)
:func:`message_figure`             a placeholder figure that says why there is none
:func:`html_table`, :func:`html_figure`, :func:`html_key_values`, :func:`html_page`
                                   self-contained HTML (inline CSS, no JavaScript)
=================================  ====================================================
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sxtquant.utils import as_voxel_size

__all__ = [
    "COLORS",
    "FILOPODIUM_QUANTITIES",
    "Section",
    "comparison_masks",
    "crop_figure",
    "html_figure",
    "html_key_values",
    "html_page",
    "html_table",
    "match_filopodia",
    "matching_summary",
    "measured_vs_true_figure",
    "message_figure",
    "overlay_rgb",
    "robust_limits",
    "slice_overlay_figure",
]

#: Overlay colours (RGB in [0, 1]): the prediction, the truth, and the comparison classes
#: (green / magenta / blue, told apart with the common colour-vision deficiencies).
COLORS: dict[str, tuple[float, float, float]] = {
    "prediction": (1.0, 0.55, 0.0),
    "truth": (0.0, 0.8, 1.0),
    "true_positive": (0.1, 0.85, 0.1),
    "false_positive": (1.0, 0.0, 0.85),
    "false_negative": (0.15, 0.45, 1.0),
}

_LEGEND = {
    "true_positive": "true positive",
    "false_positive": "false positive",
    "false_negative": "false negative (missed)",
}


@dataclass(frozen=True)
class FilopodiumQuantity:
    """A filopodium quantity compared with the simulation's analytic value.

    ``measured`` is a column of the per-filopodium table of
    :func:`sxtquant.filopodia.analyze` (``scale`` times it), ``true`` a column of the
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


# --------------------------------------------------------------------------- slice overlays


def _grey(image: np.ndarray, limits: tuple[float, float] | None = None) -> np.ndarray:
    """``image`` scaled to [0, 1] between ``limits`` (default: 0.5 and 99.5 percentiles)."""
    image = np.asarray(image, dtype=np.float32)
    if limits is None:
        finite = image[np.isfinite(image)]
        lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    else:
        lo, hi = limits
    span = float(hi - lo)
    if not span > 0:
        return np.full(image.shape, 0.5, np.float32)
    return np.clip((image - np.float32(lo)) / np.float32(span), 0.0, 1.0)


def robust_limits(values: np.ndarray, *, spread: float = 6.0) -> tuple[float, float]:
    """Grey range of an image: its 0.5 and 99.5 percentiles, clipped to the median ± a spread.

    The clip (``spread`` interquartile ranges) keeps a few very bright or dark
    objects (gold fiducials, their streaks) from washing out everything else.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, q1, median, q3, hi = np.percentile(finite, [0.5, 25, 50, 75, 99.5])
    iqr = q3 - q1
    if iqr > 0:
        lo, hi = max(lo, median - spread * iqr), min(hi, median + spread * iqr)
    return float(lo), float(hi)


def overlay_rgb(
    image: np.ndarray,
    layers: Sequence[tuple[np.ndarray, tuple[float, float, float]]] = (),
    *,
    alpha: float = 0.75,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """A grey image with coloured masks blended on top.

    Parameters
    ----------
    image : (H, W) ndarray
        Any real values; shown in grey between ``limits``.
    layers : sequence of (mask, rgb)
        (H, W) masks (non-zero = on) and their colours (RGB in [0, 1]), drawn in
        order: a later layer covers an earlier one.
    alpha : float
        Opacity of the colours, in [0, 1].
    limits : (low, high), optional
        Grey range; default the 0.5 and 99.5 percentiles of ``image``.

    Returns
    -------
    (H, W, 3) ndarray of float32
        RGB in [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    rgb = np.repeat(_grey(image, limits)[..., None], 3, axis=2)
    for mask, color in layers:
        mask = np.asarray(mask) > 0
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the image's {image.shape}")
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(color, np.float32)
    return rgb


def comparison_masks(prediction: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel comparison of a binary prediction with the truth.

    Returns
    -------
    dict
        ``true_positive`` (P and T), ``false_positive`` (P, not T) and
        ``false_negative`` (T, not P), bool arrays of the inputs' shape.
    """
    p = np.asarray(prediction) > 0
    t = np.asarray(truth) > 0
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {p.shape} differs from the truth's {t.shape}")
    return {"true_positive": p & t, "false_positive": p & ~t, "false_negative": t & ~p}


def _scale_bar(ax, width_nm: float, height_nm: float) -> None:
    """A white bar of a round length (about a fifth of the width) at the bottom left."""
    target = width_nm / 5
    length = 10 ** math.floor(math.log10(target)) if target > 0 else 1.0
    for k in (5, 2, 1):
        if k * length <= target:
            length *= k
            break
    x0, y0 = 0.04 * width_nm, height_nm - 0.08 * height_nm
    ax.plot([x0, x0 + length], [y0, y0], color="white", linewidth=3, solid_capstyle="butt")
    text = f"{length / 1000:g} µm" if length >= 1000 else f"{length:g} nm"
    ax.text(
        x0 + length / 2,
        y0 - 0.03 * height_nm,
        text,
        color="white",
        fontsize=7,
        ha="center",
        va="bottom",
    )


def slice_overlay_figure(
    tomogram: np.ndarray,
    prediction: np.ndarray,
    truth: np.ndarray | None = None,
    *,
    voxel_size_nm: float | Sequence[float] = 1.0,
    z: int | None = None,
    y: int | None = None,
    title: str | None = None,
):
    """x–y and x–z slices with the predicted membranes, as the paper's Fig. 1B/2C.

    Rows: the x–y slice at ``z`` and the x–z slice at ``y``. Columns: the tomogram
    in grey; the predicted membranes in colour on it; with ``truth``, also the true
    membranes and the comparison (true positive green, false positive magenta,
    false negative blue). Axes are in nm (x–z slices keep their true aspect) with a
    scale bar; the grey range (:func:`robust_limits`) is shared by all panels.

    Parameters
    ----------
    tomogram : (Z, Y, X) ndarray
    prediction : (Z, Y, X) ndarray
        Binary membrane prediction (non-zero = membrane).
    truth : (Z, Y, X) ndarray, optional
        True membranes.
    voxel_size_nm : float or (z, y, x) tuple of float
    z, y : int, optional
        The slices; default the middle ones.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        ``2 x 2`` axes, or ``2 x 4`` with ``truth``; each axis titled by its column
        and labelled by its slice.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    tomogram = np.asarray(tomogram)
    if tomogram.ndim != 3:
        raise ValueError(f"expected a (z, y, x) tomogram, got shape {tomogram.shape}")
    for name, other in (("prediction", prediction), ("truth", truth)):
        if other is not None and np.shape(other) != tomogram.shape:
            raise ValueError(
                f"{name} shape {np.shape(other)} differs from the tomogram's {tomogram.shape}"
            )
    Z, Y, X = tomogram.shape
    dz, dy, dx = as_voxel_size(voxel_size_nm)
    z = Z // 2 if z is None else int(z)
    y = Y // 2 if y is None else int(y)
    if not (0 <= z < Z and 0 <= y < Y):
        raise ValueError(f"slice z = {z}, y = {y} outside the volume {tomogram.shape}")
    cuts = [
        (np.s_[z, :, :], f"x–y slice, z = {z}", Y * dy),
        (np.s_[:, y, :], f"x–z slice, y = {y}", Z * dz),
    ]
    sample = np.concatenate([tomogram[cut].ravel() for cut, _, _ in cuts]).astype(np.float32)
    limits = robust_limits(sample)
    columns = ["tomogram", "predicted membranes"]
    if truth is not None:
        columns += ["true membranes", "prediction vs truth"]
    width_nm = X * dx
    heights = [h for _, _, h in cuts]
    panel_w = 3.3
    fig = Figure(
        figsize=(panel_w * len(columns), panel_w * sum(heights) / width_nm + 1.3),
        layout="constrained",
    )
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(columns), squeeze=False, gridspec_kw={"height_ratios": heights})
    for row, (cut, label, height_nm) in enumerate(cuts):
        image = tomogram[cut]
        pred = np.asarray(prediction[cut]) > 0
        panels = [[], [(pred, COLORS["prediction"])]]
        if truth is not None:
            true = np.asarray(truth[cut]) > 0
            classes = comparison_masks(pred, true)
            panels += [
                [(true, COLORS["truth"])],
                [(classes[key], COLORS[key]) for key in _LEGEND],
            ]
        for col, layers in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(
                overlay_rgb(image, layers, limits=limits),
                extent=(0, width_nm, height_nm, 0),
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(columns[col], fontsize=10)
            if col == 0:
                ax.set_ylabel(label, fontsize=9)
                _scale_bar(ax, width_nm, height_nm)
    handles = [Patch(color=COLORS["prediction"], label="predicted membrane")]
    if truth is not None:
        handles.append(Patch(color=COLORS["truth"], label="true membrane"))
        handles += [Patch(color=COLORS[key], label=text) for key, text in _LEGEND.items()]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def crop_figure(figure, *, dpi: float = 110.0, pad: int = 8, background=None):
    """A figure showing ``figure`` rendered at ``dpi`` and cropped to its drawing.

    For drawings that leave wide empty margins which ``bbox_inches="tight"`` cannot
    remove (a 3D axes fills its figure whatever it shows). Pixels that differ from
    ``background`` (default: the figure's face colour) count as drawing; ``pad``
    pixels of margin are kept.

    Returns
    -------
    matplotlib.figure.Figure
        One borderless axes with the cropped image, sized to show it 1:1 at ``dpi``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    figure.set_dpi(dpi)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    color = to_rgba(figure.get_facecolor() if background is None else background)
    back = np.round(np.asarray(color[:3]) * 255).astype(np.int16)
    drawn = np.abs(image.astype(np.int16) - back).max(axis=2) > 8
    if drawn.any():
        rows, cols = np.flatnonzero(drawn.any(axis=1)), np.flatnonzero(drawn.any(axis=0))
        r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, image.shape[0])
        c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, image.shape[1])
        image = image[r0:r1, c0:c1]
    h, w = image.shape[:2]
    out = Figure(figsize=(w / dpi, h / dpi), dpi=dpi, facecolor=figure.get_facecolor())
    FigureCanvasAgg(out)
    ax = out.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    return out


def message_figure(text: str, *, figsize: tuple[float, float] = (5.0, 2.0)):
    """A figure that only says ``text`` (e.g. why there is nothing to draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11)
    return fig


# --------------------------------------------------------------------------- filopodia vs truth


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
        :func:`sxtquant.filopodia.find_filopodia`).
    detected : pandas.DataFrame
        Per-filopodium table of :func:`sxtquant.filopodia.analyze`: ``label``,
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
                    "status": "missed",
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
        ``true`` (true filopodia), ``detected``, ``matched`` (detections matched to a
        true filopodium), ``true_found`` (true filopodia matched at least once),
        ``false`` (detections of no filopodium), ``missed``, and
        ``mean_abs_relative_error`` per quantity over the matched rows (NaN if none).
    """
    status = matches["status"]
    matched = matches[status == "matched"]
    true_ids = set(matches.loc[matches["true_label"] > 0, "true_label"])
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
        "mean_abs_relative_error": errors,
    }


def measured_vs_true_figure(matches: pd.DataFrame):
    """Measured against true value of every matched filopodium, one panel per quantity.

    Parameters
    ----------
    matches : pandas.DataFrame
        From :func:`match_filopodia`.

    Returns
    -------
    matplotlib.figure.Figure
        One axis per entry of :data:`FILOPODIUM_QUANTITIES`, with the identity line
        (dashed) and the mean absolute relative error in the title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matched = matches[matches["status"] == "matched"]
    fig = Figure(figsize=(3.0 * len(FILOPODIUM_QUANTITIES), 3.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(FILOPODIUM_QUANTITIES), squeeze=False)[0]
    for ax, q in zip(axes, FILOPODIUM_QUANTITIES, strict=True):
        true = matched[f"{q.name}_{q.unit}_true"].to_numpy(float) * q.display_factor
        measured = matched[f"{q.name}_{q.unit}_measured"].to_numpy(float) * q.display_factor
        ok = np.isfinite(true) & np.isfinite(measured)
        ax.scatter(true[ok], measured[ok], s=25, color="tab:blue", zorder=3)
        top = max([*true[ok], *measured[ok], 0.0]) * 1.1 or 1.0
        ax.plot([0, top], [0, top], color="grey", linewidth=1, linestyle="--", zorder=1)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        errors = np.abs(measured[ok] - true[ok]) / true[ok] if ok.any() else np.empty(0)
        label = q.name.replace("_", " ")
        detail = f"mean |error| {100 * errors.mean():.0f} %" if errors.size else "no match"
        ax.set_title(f"{label} (n = {int(ok.sum())})\n{detail}", fontsize=9)
        ax.set_xlabel(f"true ({q.display_unit})")
        ax.set_ylabel(f"measured ({q.display_unit})")
    return fig


# --------------------------------------------------------------------------- HTML


@dataclass(frozen=True)
class Section:
    """One section of a report page: a heading and its HTML body."""

    heading: str
    body: str
    anchor: str | None = None


def _format_value(value, fmt: str | None = None) -> str:
    if value is None:
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return format(int(value), fmt or "d")
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return "–"
        if fmt:
            return format(float(value), fmt)
        v = abs(float(value))
        return format(float(value), ".3g" if (v and (v < 0.01 or v >= 1e5)) else ",.4g")
    return str(value)


def html_table(
    table: pd.DataFrame,
    *,
    columns: Mapping[str, str] | Sequence[str] | None = None,
    formats: Mapping[str, str] | None = None,
    caption: str | None = None,
) -> str:
    """An HTML table of a DataFrame, values escaped, NaN shown as "–".

    Parameters
    ----------
    table : pandas.DataFrame
    columns : mapping column -> heading, or sequence of columns, optional
        Which columns to show and how to head them (default: all, by name).
    formats : mapping column -> format spec, optional
        E.g. ``{"volume_nm3": ".3g", "f1": ".1%"}``; default a few significant digits.
    caption : str, optional
    """
    if columns is None:
        columns = {c: c for c in table.columns}
    elif not isinstance(columns, Mapping):
        columns = {c: c for c in columns}
    formats = dict(formats or {})
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append(
        "<thead><tr>"
        + "".join(f"<th>{html.escape(str(h))}</th>" for h in columns.values())
        + "</tr></thead><tbody>"
    )
    for _, row in table.iterrows():
        cells = []
        for c in columns:
            value = row[c] if c in row.index else None
            text = html.escape(_format_value(value, formats.get(c)))
            numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
                value, (bool, np.bool_)
            )
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    if table.empty:
        parts.append(f'<tr><td colspan="{len(columns)}" class="empty">(none)</td></tr>')
    parts.append("</tbody></table>")
    return "\n".join(parts)


def html_key_values(
    pairs: Mapping[str, object], *, formats: Mapping[str, str] | None = None
) -> str:
    """A two-column HTML table of names and values."""
    formats = dict(formats or {})
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th>"
        f"<td>{html.escape(_format_value(v, formats.get(k)))}</td></tr>"
        for k, v in pairs.items()
    )
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def html_figure(src: str, caption: str, *, alt: str | None = None) -> str:
    """An ``<img>`` with a caption; ``src`` is a path relative to the page (e.g. ``x.png``)."""
    link = html.escape(src, quote=True)
    text = html.escape(alt or caption, quote=True)
    return (
        f'<figure><a href="{link}"><img src="{link}" alt="{text}"></a>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1250px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
p.subtitle { color: #555; margin-top: 0; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
thead th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.empty { color: #888; font-style: italic; }
table.kv th { background: #f7f7f7; font-weight: 600; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; margin-top: 0.3em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
code { background: #f4f4f4; padding: 0 0.25em; }
"""


def html_page(
    title: str,
    sections: Sequence[Section],
    *,
    subtitle: str | None = None,
) -> str:
    """A complete, self-contained HTML page (inline CSS, no JavaScript, UTF-8).

    Images are referenced by the relative paths given to :func:`html_figure`; a
    table of contents links the sections that have an ``anchor``.
    """
    nav = " ".join(
        f'<a href="#{html.escape(s.anchor, quote=True)}">{html.escape(s.heading)}</a>'
        for s in sections
        if s.anchor
    )
    body = []
    for s in sections:
        anchor = f' id="{html.escape(s.anchor, quote=True)}"' if s.anchor else ""
        body.append(f"<section{anchor}>\n<h2>{html.escape(s.heading)}</h2>\n{s.body}\n</section>")
    sub = f'<p class="subtitle">{html.escape(subtitle)}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{sub}\n"
        + (f"<nav>{nav}</nav>\n" if nav else "")
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
