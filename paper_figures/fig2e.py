"""Fig. 2E: expert-comparison pixel classes, mean ± SD over slices, beside the paper's.

True positive, false negative, false positive and artifact, each in percent of a
slice's labelled pixels, for every method of the harness (``classes.json``) and
for the paper (69.8 ± 10.4, 27.7 ± 10.8, 1.3 ± 2.2, 1.2 ± 2.1 %).

Usage: ``python -m paper_figures.fig2e [--results DIR] [--out DIR]``
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from paper_figures import _common

CLASSES = ("true_positive", "false_negative", "false_positive", "artifact")
NAMES = {
    "true_positive": "true positive",
    "false_negative": "false negative",
    "false_positive": "false positive",
    "artifact": "artifact",
}


def make(results=None, out=None) -> list[Path]:
    """Draw the figure from the harness outputs in ``results``; returns the files written."""
    import seaborn as sns

    results = _common.results_dir(results)
    blocks = json.loads((results / "classes.json").read_text())
    groups = [(m, blocks["methods"][m]) for m in _common.METHOD_ORDER if m in blocks["methods"]]
    groups.append(("paper", blocks["paper"]))
    fig, axes = _common.new_figure(8.0, 4.2)
    ax = axes[0, 0]
    width = 0.8 / len(groups)
    x = np.arange(len(CLASSES))
    for i, (name, block) in enumerate(groups):
        mean = np.array(
            [block["mean"][c] if block["mean"][c] is not None else np.nan for c in CLASSES], float
        )
        sd = np.array(
            [block["sd"][c] if block["sd"][c] is not None else np.nan for c in CLASSES], float
        )
        offset = (i - (len(groups) - 1) / 2) * width
        ax.bar(
            x + offset,
            mean,
            width * 0.95,
            yerr=np.nan_to_num(sd),
            capsize=3,
            color=_common.PALETTE.get(name, "grey"),
            label=name if name != "paper" else "paper (expert comparison)",
            edgecolor="black",
            linewidth=0.4,
            error_kw={"elinewidth": 0.8},
        )
    ax.set_xticks(x, [NAMES[c] for c in CLASSES])
    ax.set_ylabel("% of the slice's labelled pixels (mean ± SD)")
    tops = [
        (block["mean"][c] or 0.0) + (block["sd"][c] or 0.0) for _, block in groups for c in CLASSES
    ]
    ax.set_ylim(0, max(105.0, 1.05 * max(tops)))
    ax.legend(loc="upper right", frameon=True, fontsize=8)
    ax.set_title(
        f"Fig. 2E ({_common.data_label(results)} data): pixel classes on the hold-out slices",
        fontsize=10,
    )
    sns.despine(ax=ax)
    return _common.save(fig, _common.figures_dir(results, out), "fig2e")


def main(argv=None) -> int:
    return _common.script_main(make, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
