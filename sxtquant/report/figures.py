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

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sxtquant.core.voxels import as_voxel_size
from sxtquant.evaluate.matching import FILOPODIUM_QUANTITIES

__all__ = [
    "COLORS",
    "comparison_masks",
    "crop_figure",
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
