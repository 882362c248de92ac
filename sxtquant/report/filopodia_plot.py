"""The dot plots of the paper's Fig. 3B."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from sxtquant.quantify.filopodia import FIG3B, summarize


def plot_filopodia(
    per_filopodium: pd.DataFrame,
    path: str | os.PathLike | None = None,
    *,
    seed: int = 0,
):
    """Dot plots of the Fig. 3B quantities, one panel each, with the paper's values.

    Every filopodium is a dot (seaborn strip plot, seeded jitter); the black bar is
    the mean ± SD of this table, the grey one beside it the paper's where it states
    one (Dyhr et al. 2023, n = 59).

    Parameters
    ----------
    per_filopodium : pandas.DataFrame
        The table of :func:`analyze`.
    path : path-like, optional
        Also save the figure there (format from the suffix), atomically by
        :func:`sxtquant.io.save_figure`.
    seed : int
        Seed of the horizontal jitter.

    Returns
    -------
    matplotlib.figure.Figure
        On the Agg canvas: drawing needs no display.
    """
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    quantities = FIG3B[:8]
    summary = summarize(per_filopodium).set_index("column")
    fig = Figure(figsize=(12, 6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 4)
    rng = np.random.default_rng(seed)
    for ax, q in zip(axes.ravel(), quantities, strict=True):
        values = (
            pd.to_numeric(per_filopodium[q.column], errors="coerce").dropna().to_numpy(float)
            if q.column in per_filopodium
            else np.empty(0)
        )
        if len(values):
            x = rng.uniform(-0.15, 0.15, len(values))
            sns.scatterplot(x=x, y=values, ax=ax, s=18, alpha=0.7, edgecolor="none", legend=False)
        row = summary.loc[q.column]
        ax.errorbar(
            0.3, row["mean"], yerr=row["sd"], fmt="_", color="black", capsize=5, markersize=16
        )
        ticks, names = [0.0], [f"this\nn = {len(values)}"]
        if np.isfinite(q.paper_mean):
            ax.errorbar(
                1.0,
                q.paper_mean,
                yerr=q.paper_sd,
                fmt="_",
                color="grey",
                capsize=5,
                markersize=16,
            )
            ticks.append(1.0)
            names.append(f"paper\nn = {q.paper_n:g}")
        ax.set_xlim(-0.5, 1.5)
        ax.set_xticks(ticks, names)
        ax.set_title(q.name)
        ax.set_ylabel(q.unit)
        ax.set_ylim(bottom=0)
        sns.despine(ax=ax)
    fig.suptitle("Filopodia (as Fig. 3B of Dyhr et al. 2023): mean ± SD")
    if path is not None:
        from sxtquant.io.files import save_figure

        save_figure(fig, path)
    return fig
