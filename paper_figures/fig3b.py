"""Fig. 3B: filopodia morphology, measured on simulated filopodia against their truth.

Top row: dot plots of the three quantities the paper gives population values for
(2D second axis, 3D major axis, surface-to-volume ratio), every simulated
filopodium a dot, our mean ± SD beside the paper's (n = 59). Bottom row: measured
against the simulator's analytic value for length, radius, volume and
surface-to-volume ratio, with the identity line. From ``filopodia.csv``.

Usage: ``python -m paper_figures.fig3b [--results DIR] [--out DIR]``
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paper_figures import _common

DOTS = (
    # (title, column, unit, paper mean, paper SD)
    ("2D second axis", "slice_second_axis_nm_mean", "nm", 132.0, 28.0),
    ("3D major axis", "axis_major_nm", "nm", 966.0, 394.0),
    ("surface-to-volume ratio", "surface_to_volume_per_um", "µm⁻¹", 30.2, 5.3),
)
PAIRS = (
    # (title, measured, truth, unit, scale)
    ("length (base to tip)", "length_nm", "true_length_nm", "nm", 1.0),
    ("radius", "radius_nm", "true_radius_nm", "nm", 1.0),
    ("volume", "volume_nm3", "true_volume_nm3", "10⁶ nm³", 1e-6),
    (
        "surface-to-volume ratio",
        "surface_to_volume_per_um",
        "true_surface_to_volume_per_um",
        "µm⁻¹",
        1.0,
    ),
)


def make(results=None, out=None) -> list[Path]:
    """Draw the figure from the harness outputs in ``results``; returns the files written."""
    import seaborn as sns

    results = _common.results_dir(results)
    table = _common.read_table(results, "filopodia.csv")
    found = table[table["detected"].astype(bool)]
    fig = None
    fig, axes = _common.new_figure(12.0, 6.5, rows=2, cols=4)
    rng = np.random.default_rng(0)
    colour = _common.PALETTE["semi-supervised"]
    for ax, (title, column, unit, p_mean, p_sd) in zip(axes[0], DOTS, strict=False):
        values = found[column].dropna().to_numpy(float)
        jitter = rng.uniform(-0.12, 0.12, len(values))
        sns.scatterplot(
            x=jitter,
            y=values,
            ax=ax,
            s=22,
            color=colour,
            edgecolor="black",
            linewidth=0.3,
            legend=False,
        )
        if len(values):
            sd = values.std(ddof=1) if len(values) > 1 else 0.0
            ax.errorbar(0.35, values.mean(), yerr=sd, fmt="o", color="black", capsize=5)
        ax.errorbar(1.0, p_mean, yerr=p_sd, fmt="o", color=_common.PALETTE["paper"], capsize=5)
        ax.set_xlim(-0.5, 1.5)
        ax.set_xticks([0.1, 1.0], [f"simulated\nn = {len(values)}", "paper\nn = 59"])
        ax.set_title(title)
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0)
    axes[0, 3].axis("off")
    axes[0, 3].text(
        0.0,
        0.5,
        "Dots: simulated filopodia,\nmeasured by sxtquant.quantify.filopodia.\n"
        "Black: their mean ± SD.\nGrey: the paper's mean ± SD\n(59 real filopodia).",
        transform=axes[0, 3].transAxes,
        va="center",
        fontsize=9,
    )
    for ax, (title, measured, truth, unit, scale) in zip(axes[1], PAIRS, strict=True):
        x = found[truth].to_numpy(float) * scale
        y = found[measured].to_numpy(float) * scale
        sns.scatterplot(x=x, y=y, ax=ax, s=22, color=colour, edgecolor="black", linewidth=0.3)
        if len(x):
            lo = 0.0
            hi = 1.08 * float(np.nanmax(np.concatenate([x, y])))
            ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle="--")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            err = 100 * np.nanmean(np.abs(y / x - 1))
            ax.text(0.04, 0.92, f"mean |error| {err:.1f} %", transform=ax.transAxes, fontsize=9)
        ax.set_title(title)
        ax.set_xlabel(f"analytic truth ({unit})")
        ax.set_ylabel(f"measured ({unit})")
    fig.suptitle(
        f"Fig. 3B on simulated filopodia ({len(found)} of {len(table)} found): "
        "measured vs analytic truth",
        fontsize=11,
    )
    return _common.save(fig, _common.figures_dir(results, out), "fig3b")


def main(argv=None) -> int:
    return _common.script_main(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
