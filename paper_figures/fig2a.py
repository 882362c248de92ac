"""Fig. 2A: per-slice pixel metrics, supervised-only vs semi-supervised training.

Box plots (one box per method and metric over every seed's slices, every slice a dot)
of the per-slice accuracy, precision, recall and F1 on the held-out test slices, from
``per_slice_metrics.csv`` of the harness; the seed spread is drawn on top: one
diamond per training seed at that seed's median. The title gives the claim as
``claims.csv`` scores it (mean difference over seeds, paired bootstrap 95 %
interval). The paper reports a median per-slice precision at least 14 % higher with
semi-supervision.

Usage: ``python -m paper_figures.fig2a [--results DIR] [--out DIR]``
"""

from __future__ import annotations

from pathlib import Path

from paper_figures import _common

METRICS = ("accuracy", "precision", "recall", "f1")


def make(results=None, out=None) -> list[Path]:
    """Draw the figure from the harness outputs in ``results``; returns the files written."""
    import seaborn as sns

    results = _common.results_dir(results)
    table = _common.read_table(results, "per_slice_metrics.csv")
    methods = [m for m in ("supervised-only", "semi-supervised") if m in set(table["method"])]
    table = table[table["method"].isin(methods)]
    long = table.melt(
        id_vars=["method", "seed", "tomogram", "z"], value_vars=list(METRICS), var_name="metric"
    ).dropna(subset=["value"])
    long["value"] *= 100
    fig, axes = _common.new_figure(7.5, 4.2)
    ax = axes[0, 0]
    palette = {m: _common.PALETTE[m] for m in methods}
    layout = dict(
        data=long,
        x="metric",
        y="value",
        hue="method",
        hue_order=methods,
        order=METRICS,
        palette=palette,
        ax=ax,
    )
    sns.boxplot(**layout, showfliers=False, width=0.7)
    sns.stripplot(
        **layout,
        dodge=True,
        size=2.5,
        alpha=0.6,
        edgecolor="black",
        linewidth=0.3,
        legend=False,
    )
    medians = long.groupby(["method", "seed", "metric"], as_index=False)["value"].median()
    sns.stripplot(
        **(layout | {"data": medians}),
        dodge=True,
        jitter=False,
        marker="D",
        size=6,
        edgecolor="black",
        linewidth=0.8,
        legend=False,
    )
    ax.set_ylim(0, 100)
    ax.set_xlabel("")
    ax.set_ylabel("per-slice value (%)")
    n = table.drop_duplicates(["method", "tomogram", "z"]).groupby("method").size().to_dict()
    seeds = table.groupby("method")["seed"].nunique().to_dict()
    handles = ax.get_legend_handles_labels()[0][: len(methods)]
    ax.legend(
        handles,
        [f"{m} ({n.get(m, 0)} slices × {seeds.get(m, 0)} seeds; ◆ seed medians)" for m in methods],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08),
        ncol=len(methods),
        frameon=False,
    )
    ax.set_title(f"Fig. 2A ({_common.data_label(results)} data): {_claim(results)}", fontsize=10)
    return _common.save(fig, _common.figures_dir(results, out), "fig2a")


def _claim(results: Path) -> str:
    """The semi-supervised claim as ``claims.csv`` scores it, for the title."""
    claims = _common.read_table(results, "claims.csv").set_index("claim")
    if "semi_beats_supervised" not in claims.index:
        return "semi-supervised claim not scored (a method did not run)"
    row = claims.loc["semi_beats_supervised"]
    return (
        f"median precision {100 * row['worse_value']:.1f} % → {100 * row['better_value']:.1f} %, "
        f"{100 * row['difference']:+.1f} points [{100 * row['ci_low']:+.1f}, "
        f"{100 * row['ci_high']:+.1f}] over {row['n_seeds']} seeds: {row['verdict']}\n"
        "(paper: ≥ 14 % higher)"
    )


def main(argv=None) -> int:
    return _common.script_main(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
