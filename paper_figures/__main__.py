"""Draw every paper figure from the evaluation harness's outputs.

Usage: ``python -m paper_figures [--results evaluation/results] [--out DIR]``

Runs :mod:`paper_figures.fig2a`, :mod:`~paper_figures.fig2e`,
:mod:`~paper_figures.fig3b` and :mod:`~paper_figures.figs7a`; each writes a PNG and a
PDF (default folder: ``RESULTS/figures``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paper_figures import fig2a, fig2e, fig3b, figs7a

FIGURES = {"fig2a": fig2a, "fig2e": fig2e, "fig3b": fig3b, "figs7a": figs7a}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m paper_figures", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="harness output folder (default: evaluation/results)",
    )
    parser.add_argument("--out", type=Path, default=None, help="figure folder")
    parser.add_argument(
        "--only", choices=sorted(FIGURES), action="append", help="draw only these figures"
    )
    args = parser.parse_args(argv)
    try:
        for name in args.only or FIGURES:
            for path in FIGURES[name].make(args.results, args.out):
                print(path)
    except FileNotFoundError as exc:
        print(f"python -m paper_figures: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
