"""Where the network's filopodia go missing: its maps along every true filopodium.

For each simulated demo cell (whole cells, ``--seeds``; cells cut by the volume's
borders, ``--fov-seeds``), runs the shipped model's heads, reads its maps as
``quantify`` and the demo do (:data:`sxtquant.quantify.regions.NETWORK_MAP`), matches
the filopodia found to the truth, and describes every wholly-inside true filopodium
in bins of ``--bin-nm`` (default 100 nm) by distance from the true cell body: the mean
cell probability there, the mean membrane probability on its true membrane, and the
tomogram's contrast (mean inside less mean in a shell 2-4 voxels outside it, in units
of the background's standard deviation); for one found, also its relative length
error. A filopodium is ``detached`` when its cell probability falls below 0.5 in one
bin and rises above it again farther out: the map has a gap, and the piece beyond it
is not joined to the cell. Run from the repository root::

    .venv/bin/python evaluation/misses.py --seeds none --fov-seeds 20-31

Writes ``misses.csv`` (one row per true filopodium) in ``-o`` (default
``evaluation/results``) and prints the found and the missed side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.objects import VOXEL_NM, demo_cells  # noqa: E402

DETACHED_BELOW = 0.5


def profile(mask, distance, values, bin_nm: float) -> list[float]:
    """Mean of ``values`` over ``mask`` in bins of ``distance`` (NaN for an empty bin)."""
    import numpy as np

    index = (distance[mask] // bin_nm).astype(np.int64)
    counts = np.bincount(index)
    sums = np.bincount(index, weights=np.asarray(values, dtype=np.float64)[mask])
    with np.errstate(invalid="ignore"):
        return [float(m) for m in sums / counts]


def detached(cell_profile: list[float]) -> bool:
    """A bin below :data:`DETACHED_BELOW` with one at or above it farther out."""
    low = [i for i, p in enumerate(cell_profile) if p < DETACHED_BELOW]
    return bool(low) and any(p >= DETACHED_BELOW for p in cell_profile[low[0] + 1 :])


def true_body(sim):
    """The simulated cell without its filopodia (organelles included), and the labels
    of its filopodia."""
    import numpy as np

    table = sim.table.set_index("label")
    filopodia = table.index[table["class"] == "filopodium"].to_numpy()
    inside = table.index[table["class"] != "fiducial"].to_numpy()
    return np.isin(sim.objects, inside) & ~np.isin(sim.objects, filopodia), filopodia


def describe_cell(sim, maps, bin_nm: float) -> list[dict]:
    """One row per wholly-inside true filopodium of ``sim`` under the maps ``maps``."""
    import numpy as np
    from scipy import ndimage as ndi

    from sxtquant.evaluate.matching import match_filopodia
    from sxtquant.quantify.regions import NETWORK_MAP, objects_from_regions

    cell, organelles = maps["cell"], maps.get("organelles")
    parts = objects_from_regions(cell, VOXEL_NM, organelle_probability=organelles, **NETWORK_MAP)
    matches = match_filopodia(parts.filopodia_labels, parts.filopodia, sim.objects, sim.table)
    table = sim.table.set_index("label")
    body, filopodia = true_body(sim)
    from_body = ndi.distance_transform_edt(~body, sampling=VOXEL_NM)
    outside = sim.objects == 0
    tomogram = np.asarray(sim.tomogram, dtype=np.float32)
    spread = float(tomogram[outside].std())
    membranes = np.asarray(sim.membranes) > 0
    matched = matches[matches["true_label"] > 0].groupby("true_label")
    status = matched["status"].first()
    length_error = matched["length_relative_error"].first()
    rows = []
    for label in filopodia:
        if status.get(label) == "cut":
            continue
        tube = sim.objects == label
        near = ndi.binary_dilation(tube, iterations=2)
        shell = ndi.binary_dilation(tube, iterations=4) & ~near & outside
        cell_p = profile(tube, from_body, cell, bin_nm)
        inner = np.where(tube, tomogram, np.nan)
        contrast = [
            (a - b) / spread
            for a, b in zip(
                profile(tube, from_body, inner, bin_nm),
                profile(shell, from_body, tomogram, bin_nm),
                strict=False,
            )
        ]
        rows.append(
            {
                "true_label": int(label),
                "status": "matched" if status.get(label) == "matched" else "missed",
                "length_nm": float(table.loc[label, "length_nm"]),
                "diameter_nm": float(table.loc[label, "diameter_nm"]),
                "length_error": float(length_error.get(label, np.nan)),
                "in_cell_mask": float((parts.cell_labels[tube] > 0).mean()),
                "min_cell_probability": float(np.nanmin(cell_p)),
                "min_membrane_probability": float(
                    np.nanmin(profile(membranes & near, from_body, maps["membrane"], bin_nm))
                ),
                "min_contrast": float(np.nanmin(contrast)),
                "detached": detached(cell_p),
                "cell_probability_by_bin": " ".join(f"{p:.2f}" for p in cell_p),
                "contrast_by_bin": " ".join(f"{c:+.1f}" for c in contrast),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default", help="a shipped model or checkpoint")
    parser.add_argument("--seeds", default="0-3", help="whole-cell demo seeds (default 0-3)")
    parser.add_argument("--fov-seeds", default="0-7", help="field-of-view demo seeds (default 0-7)")
    parser.add_argument("--bin-nm", type=float, default=100.0, help="bin width (default 100 nm)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("-o", "--output", default=str(ROOT / "evaluation" / "results"))
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from sxtquant.core.progress import set_quiet
    from sxtquant.io.files import write_table
    from sxtquant.nn.checkpoint import load_model
    from sxtquant.nn.predict import predict_heads

    set_quiet(True)
    model = load_model(args.model)
    rows = []
    for mode, seed, sim in demo_cells(args.seeds, args.fov_seeds):
        maps = predict_heads(model, sim.tomogram, device="cpu", progress=False)
        for row in describe_cell(sim, maps, args.bin_nm):
            rows.append({"mode": mode, "seed": seed, **row})
            print(
                f"{mode:>13} seed {seed} filopodium {row['true_label']}: {row['status']:>7}, "
                f"detached {row['detached']!s:>5}, cell probability by bin "
                f"{row['cell_probability_by_bin']}, contrast {row['contrast_by_bin']}",
                flush=True,
            )
    frame = pd.DataFrame(rows)
    write_table(frame, Path(args.output) / "misses.csv")
    if len(frame):
        summary = frame.groupby(["mode", "status"]).agg(
            filopodia=("true_label", "size"),
            detached=("detached", "sum"),
            in_cell_mask=("in_cell_mask", "median"),
            min_contrast=("min_contrast", "median"),
            length_nm=("length_nm", "median"),
            diameter_nm=("diameter_nm", "median"),
            length_error=("length_error", "mean"),
        )
        print(summary.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
