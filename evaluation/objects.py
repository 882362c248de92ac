"""Complete objects on the demo's simulated cells: filopodia found, cell body in one piece.

For each model and each simulated demo cell (seeds; whole cells, and cells larger
than the volume, cut by its borders: ``--field-of-view``), runs the demo's pipeline
(:func:`sxtquant.pipeline.analyze`, without meshes) and scores it against the truth
(:func:`sxtquant.pipeline.compare_with_truth`): filopodia found / false / cut, mean
absolute relative error of length and diameter, the membrane pixel scores, the cell
interior's Dice (filled cell of the analysis against the true cell with its
filopodia and organelles) and the number of pieces the cell body came out in (objects
holding at least 1 % of the true cell body and lying mostly in it). The same steps on
the true membranes (the ceiling of the quantify step) are scored for every cell, and
for a region-aware model the region path on the true cell and organelle interiors.
Run from the repository root::

    .venv/bin/python evaluation/objects.py --model default --model new=build/regions/run/last

Writes ``evaluation/results/objects.csv`` (one row per model, mode and seed) and
``objects.json`` (totals per model and mode, the found fraction and the false
detections per true filopodium with 95 % intervals over cells; with several models,
the first one's found fraction less each other's, paired over the same cells; and the
command, machine and seconds).
Filopodia that leave the volume are left out, as the paper's Fig. 3B did.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = (64, 256, 256)
VOXEL_NM = 9.8


def _seeds(text: str) -> list[int]:
    """``0-3`` or ``0,2,5`` or ``4``; ``none`` (or nothing): no seeds."""
    out: list[int] = []
    if text.strip().lower() in ("", "none"):
        return out
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def demo_cells(seeds: str, fov_seeds: str):
    """``(mode, seed, simulation)`` of every demo cell: whole cells, then field of view."""
    from sxtquant.simulate.cell import CellContent
    from sxtquant.simulate.tomogram import simulate_tomogram

    cases = [("whole", s) for s in _seeds(seeds)]
    cases += [("field_of_view", s) for s in _seeds(fov_seeds)]
    for mode, seed in cases:
        content = CellContent(field_of_view=True) if mode == "field_of_view" else None
        yield mode, seed, simulate_tomogram(SHAPE, VOXEL_NM, seed=seed, content=content)


def score_cell(analysis, sim, comparison) -> dict:
    """The numbers of one analysed cell against its simulation."""
    import numpy as np

    table = sim.table
    cell_classes = {"plasma_membrane"}
    inside = table.loc[table["class"] != "fiducial", "label"].to_numpy()
    body_labels = table.loc[table["class"].isin(cell_classes), "label"].to_numpy()
    true_cell = np.isin(sim.objects, inside)
    body = np.isin(sim.objects, body_labels)
    filled = analysis.objects > 0
    both = np.count_nonzero(filled & true_cell)
    dice = 2 * both / max(1, np.count_nonzero(filled) + np.count_nonzero(true_cell))
    # a piece of the body: an object with >= 1 % of the true body's voxels and most of
    # its own voxels in it (an organelle drawn over the body is not a piece of it)
    labels, counts = np.unique(analysis.objects[body], return_counts=True)
    sizes = np.bincount(analysis.objects.ravel())
    big = (labels > 0) & (counts >= 0.01 * max(1, np.count_nonzero(body)))
    pieces = int(np.sum(big & (counts >= 0.5 * sizes[labels])))
    m, ceiling = comparison.matching, comparison.on_true_membranes
    return {
        "true": m["true"],
        "found": m["true_found"],
        "false": m["false"],
        "cut": m["cut"],
        "length_error": m["mean_abs_relative_error"]["length"],
        "diameter_error": m["mean_abs_relative_error"]["diameter"],
        "true_membranes_found": ceiling["true_found"],
        "true_membranes_true": ceiling["true"],
        "true_membranes_false": ceiling["false"],
        "true_membranes_length_error": ceiling["mean_abs_relative_error"]["length"],
        "true_regions_found": (comparison.on_true_regions or {}).get("true_found"),
        "true_regions_false": (comparison.on_true_regions or {}).get("false"),
        "cell_dice": float(dice),
        "cell_body_pieces": pieces,
        "precision": comparison.scores["precision"],
        "recall": comparison.scores["recall"],
        "f1": comparison.scores["f1"],
        "f1_tolerance_2vx": comparison.scores["tolerance_f1"],
        "from_regions": analysis.from_regions,
    }


def _count_ratios(counts):
    """Found per true and false per true from summed (found, false, true) counts."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        true = np.where(counts[..., 2] > 0, counts[..., 2], np.nan)
        return {"found_fraction": counts[..., 0] / true, "false_per_true": counts[..., 1] / true}


def count_intervals(frame) -> dict:
    """95 % intervals of the pooled found fraction and false-per-true, cells resampled.

    The filopodia of one cell share its map and its acquisition, so they are not
    independent draws: the bootstrap resamples whole cells (each cell one "tomogram"
    of :func:`sxtquant.evaluate.intervals.count_intervals`) and pools their counts.
    """
    from sxtquant.evaluate.intervals import count_intervals as pooled

    counts = frame[["found", "false", "true"]].to_numpy()
    cells = [f"{m}/{s}" for m, s in zip(frame["mode"], frame["seed"], strict=True)]
    out = {}
    for name, row in pooled(counts, cells, scorer=_count_ratios).items():
        out[f"{name}_low"], out[f"{name}_high"] = row["low"], row["high"]
    return out


def paired_differences(frame) -> dict:
    """The first model's found fraction less each other model's, per mode, cells paired.

    Both models are scored on the same cells, so each bootstrap draw of cells pools
    both models' counts over the same draw
    (:func:`sxtquant.evaluate.intervals.paired_count_intervals`); the 95 % interval is
    of the difference of the pooled fractions.
    """
    from sxtquant.evaluate.intervals import paired_count_intervals

    names = list(dict.fromkeys(frame["model"]))
    out = {}
    for mode, cells in frame.groupby("mode", sort=False):
        first = cells[cells["model"] == names[0]].set_index("seed")
        for other in names[1:]:
            second = cells[cells["model"] == other].set_index("seed").loc[first.index]
            row = paired_count_intervals(
                first[["found", "false", "true"]].to_numpy(),
                second[["found", "false", "true"]].to_numpy(),
                [f"{mode}/{s}" for s in first.index],
                scorer=_count_ratios,
            )["found_fraction"]
            out[f"{names[0]} - {other}/{mode}"] = {
                "found_fraction_difference": row["value"],
                "low": row["low"],
                "high": row["high"],
                "excludes_zero": row["excludes_zero"],
            }
    return out


def totals(rows) -> dict:
    """Counts summed over cells; errors averaged over the matched filopodia (weighted);
    the found fraction and the false detections per true filopodium with their 95 %
    intervals over cells (:func:`count_intervals`)."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(rows)
    found = frame["found"].to_numpy()

    def weighted(column: str, weights) -> float:
        values, w = frame[column].to_numpy(float), np.asarray(weights, float)
        keep = np.isfinite(values) & (w > 0)
        return float(np.average(values[keep], weights=w[keep])) if keep.any() else float("nan")

    return {
        "cells": len(frame),
        "true": int(frame["true"].sum()),
        "found": int(found.sum()),
        "false": int(frame["false"].sum()),
        "cut": int(frame["cut"].sum()),
        "found_fraction": float(found.sum() / max(1, frame["true"].sum())),
        "false_per_true": float(frame["false"].sum() / max(1, frame["true"].sum())),
        **count_intervals(frame),
        "mean_abs_length_error": weighted("length_error", found),
        "mean_abs_diameter_error": weighted("diameter_error", found),
        "true_membranes_found": int(frame["true_membranes_found"].sum()),
        "true_membranes_true": int(frame["true_membranes_true"].sum()),
        "true_membranes_false": int(frame["true_membranes_false"].sum()),
        "true_regions_found": int(frame["true_regions_found"].fillna(0).sum()),
        "true_regions_false": int(frame["true_regions_false"].fillna(0).sum()),
        "cell_dice_mean": float(frame["cell_dice"].mean()),
        "cell_body_pieces_max": int(frame["cell_body_pieces"].max()),
        "cells_in_one_piece": int((frame["cell_body_pieces"] == 1).sum()),
        "f1_mean": float(frame["f1"].mean()),
        "f1_tolerance_2vx_mean": float(frame["f1_tolerance_2vx"].mean()),
        "precision_mean": float(frame["precision"].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        metavar="[NAME=]MODEL",
        help="a shipped model's name or a checkpoint folder, optionally named (repeatable; "
        "default: default)",
    )
    parser.add_argument("--seeds", default="0-3", help="whole-cell demo seeds (default 0-3)")
    parser.add_argument("--fov-seeds", default="0-7", help="field-of-view demo seeds (default 0-7)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("-o", "--output", default=str(ROOT / "evaluation" / "results"))
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from sxtquant import pipeline
    from sxtquant.core.progress import set_quiet
    from sxtquant.io.files import write_json, write_table
    from sxtquant.nn.checkpoint import load_model

    set_quiet(True)
    started = time.perf_counter()
    models = {}
    for spec in args.model or ["default"]:
        name, _, path = spec.rpartition("=")
        models[name or path] = load_model(path)
    rows = []
    for mode, seed, sim in demo_cells(args.seeds, args.fov_seeds):
        for name, model in models.items():
            t0 = time.perf_counter()
            analysis = pipeline.analyze(
                sim.tomogram, VOXEL_NM, model, device="cpu", meshes=False, progress=False
            )
            comparison = pipeline.compare_with_truth(analysis, sim)
            row = {"model": name, "mode": mode, "seed": seed}
            row.update(score_cell(analysis, sim, comparison))
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(
                f"{name:>10} {mode:>13} seed {seed}: {row['found']}/{row['true']} found, "
                f"{row['false']} false, {row['cut']} cut, length error "
                f"{100 * row['length_error']:.0f} %, pieces {row['cell_body_pieces']}, "
                f"cell Dice {row['cell_dice']:.3f} (true membranes "
                f"{row['true_membranes_found']}/{row['true_membranes_true']})",
                flush=True,
            )
    frame = pd.DataFrame(rows)
    out = Path(args.output)
    write_table(frame, out / "objects.csv")
    summary = {
        f"{name}/{mode}": totals(group.to_dict("records"))
        for (name, mode), group in frame.groupby(["model", "mode"], sort=False)
    }
    write_json(
        {
            "command": "python evaluation/objects.py " + " ".join(argv or sys.argv[1:]),
            "shape_zyx": list(SHAPE),
            "voxel_size_nm": VOXEL_NM,
            "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
            "seconds": time.perf_counter() - started,
            "totals": summary,
            "paired": paired_differences(frame),
        },
        out / "objects.json",
    )
    for key, value in summary.items():
        print(key, value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
