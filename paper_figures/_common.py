"""Shared helpers of the figure scripts: where the harness outputs are, how to save."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent.parent / "evaluation" / "results"
"""Default folder of the harness outputs (``python -m evaluation run --out``)."""

METHOD_ORDER = ("supervised-only", "semi-supervised", "random-forest", "otsu")
PALETTE = {
    "supervised-only": "#8da0cb",
    "semi-supervised": "#fc8d62",
    "random-forest": "#66c2a5",
    "otsu": "#b3b3b3",
    "paper": "#4d4d4d",
}


def results_dir(results: str | os.PathLike | None) -> Path:
    folder = Path(results) if results is not None else RESULTS
    if not (folder / "run.json").is_file():
        raise FileNotFoundError(
            f"{folder} holds no harness run (run.json missing): run "
            "`python -m evaluation run --quick` first"
        )
    return folder


def figures_dir(results: Path, out: str | os.PathLike | None) -> Path:
    folder = Path(out) if out is not None else results / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_table(results: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(results / name)


def read_run(results: Path) -> dict:
    return json.loads((results / "run.json").read_text())


def data_label(results: Path) -> str:
    """``simulated`` or ``real``: shown in every figure title."""
    return read_run(results)["data"]


def new_figure(width: float, height: float, *, rows: int = 1, cols: int = 1):
    """A figure on the Agg canvas (no display needed) with seaborn's style."""
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def save(fig, folder: Path, stem: str) -> list[Path]:
    """PNG and PDF of ``fig`` through :func:`sxtquant.io.save_figure`."""
    from sxtquant.io.files import save_figure

    return [save_figure(fig, folder / f"{stem}.{suffix}", dpi=150) for suffix in ("png", "pdf")]


def script_main(make, description: str, argv=None) -> int:
    """The command line of one figure script: ``--results`` and ``--out`` folders."""
    import argparse

    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=None, help="harness output folder")
    parser.add_argument("--out", type=Path, default=None, help="figure folder")
    args = parser.parse_args(argv)
    for path in make(args.results, args.out):
        print(path)
    return 0
