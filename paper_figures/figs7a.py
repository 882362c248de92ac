"""Fig. S7A: hold-out metrics against the network's parameter count (model-size sweep).

Every preset of ``model_sweep.csv`` at its parameter count (log axis, 1.2 M to the
paper's 76.5 M): precision, F1 and image accuracy where it was trained; presets not
trained in this run are marked "not run" at the bottom of the plot.

Usage: ``python -m paper_figures.figs7a [--results DIR] [--out DIR]``
"""

from __future__ import annotations

from pathlib import Path

from paper_figures import _common

METRICS = {"precision": "precision", "f1": "F1", "image_accuracy": "image accuracy"}
COLOURS = {"precision": "#fc8d62", "f1": "#8da0cb", "image_accuracy": "#66c2a5"}


def make(results=None, out=None) -> list[Path]:
    """Draw the figure from the harness outputs in ``results``; returns the files written."""
    import seaborn as sns

    results = _common.results_dir(results)
    sweep = _common.read_table(results, "model_sweep.csv")
    fig, axes = _common.new_figure(6.5, 4.2)
    ax = axes[0, 0]
    ran = sweep[sweep["status"] == "run"]
    long = ran.melt(id_vars=["preset", "parameters"], value_vars=list(METRICS), var_name="metric")
    long = long.dropna(subset=["value"])
    long["value"] *= 100
    long["metric"] = long["metric"].map(METRICS)
    if len(long):
        sns.lineplot(
            data=long,
            x="parameters",
            y="value",
            hue="metric",
            marker="o",
            ax=ax,
            palette={METRICS[k]: c for k, c in COLOURS.items()},
            markersize=8,
        )
    for _, row in sweep.iterrows():
        ax.axvline(row["parameters"], color="grey", linewidth=0.6, linestyle=":")
        text = row["preset"] + ("" if row["status"] == "run" else "\n(not run)")
        ax.text(row["parameters"], 103, text, ha="center", va="top", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(sweep["parameters"].min() / 1.8, sweep["parameters"].max() * 1.8)
    ax.set_ylim(0, 110)
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("hold-out value (%)")
    if ax.get_legend() is not None:
        ax.legend(title=None, loc="center left", frameon=True)
    ax.set_title(
        f"Fig. S7A ({_common.data_label(results)} data): metrics vs network size", fontsize=10
    )
    return _common.save(fig, _common.figures_dir(results, out), "figs7a")


def main(argv=None) -> int:
    return _common.script_main(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
