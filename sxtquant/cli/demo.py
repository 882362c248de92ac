"""sxtquant demo: end-to-end demonstration: simulate, segment, quantify, report.

Simulates a cryo-SXT tomogram of a cell with filopodia (or takes --input), segments
its membranes with the network (the shipped model unless --model says otherwise),
makes solid objects (from the network's cell and organelle interiors when it has those
heads, else by closing and filling the membranes and separating touching objects),
finds and measures the filopodia (Fig. 3B of Dyhr et al. 2023), meshes the objects,
and writes a one-page report. For a simulated cell the report also sets the measured
values beside the true ones and scores the segmentation against the true membranes.
It prints a short summary and where the report is. Lengths are in nm, arrays (z, y, x).

Writes into OUT_DIR (default demo_output; a rerun replaces a previous demo's files):
  report.html                 the report (open it in any browser), with the PNGs:
  overlay.png                 x–y and x–z slices with the predicted membranes (Fig. 1B/2C)
  objects_3d.png              off-screen 3D rendering of the objects
  filopodia.png               filopodia dot plots (Fig. 3B)
  measured_vs_true.png        simulated input: measured vs true filopodia
  summary.json                every number of the report and the time of each stage
  simulation/                 simulated input: tomogram.mrc and its ground truth
                              (the files of 'sxtquant simulate')
  segmentation/               <stem>.probability.tif, <stem>.mask.tif (as 'sxtquant
                              segment'; a region-aware model adds <stem>.cell.probability.tif
                              and <stem>.organelles.probability.tif), metrics.json
                              (simulated input)
  quantification/             filled.mask.tif, objects.tif (labels), objects.csv,
                              filopodia.tif (labels), filopodia.csv, filopodia_summary.csv,
                              filopodia_vs_truth.csv (simulated input)
  meshes/                     objects.glb (one node per object), objects.stl

Examples:
  sxtquant demo                                   # simulated cell, shipped model
  sxtquant demo -o demo2 --seed 3 --model my_model/best
  sxtquant demo --input cell.mrc -o cell_demo     # your own tomogram
"""

from __future__ import annotations

import argparse
import math

from sxtquant.cli.options import add_device_option
from sxtquant.report.demo import FIGURES

HELP = "end-to-end demonstration: simulate, segment, quantify, report"

DEFAULT_SHAPE = (64, 256, 256)
DEFAULT_VOXEL_NM = 9.8
# Everything a demo run writes into OUT_DIR: removed first when OUT_DIR holds a
# previous demo's output (recognised by its summary.json).
OUTPUTS = (
    "report.html",
    "summary.json",
    *FIGURES.values(),
    "simulation",
    "segmentation",
    "quantification",
    "meshes",
)
MARKER = "sxtquant demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant demo`."""
    parser.add_argument(
        "-o",
        "--output",
        default="demo_output",
        metavar="OUT_DIR",
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--input",
        metavar="TOMOGRAM",
        help="a tomogram (z, y, x) to use instead of a simulated cell (MRC/REC, TIFF, "
        "HDF5, OME-Zarr)",
    )
    parser.add_argument(
        "--voxel-size",
        type=float,
        metavar="NM",
        help="voxel size in nm: of the simulated cell (default 9.8), or of --input when "
        "its header records none or a wrong one",
    )
    parser.add_argument(
        "--field-of-view",
        action="store_true",
        help="simulate a cell larger than the volume, cut by its borders (lateral and in z), "
        "as on a real tomogram; filopodia that leave the volume are flagged cut",
    )
    parser.add_argument(
        "--model",
        default="default",
        metavar="NAME_OR_PATH",
        help="checkpoint folder or name of a shipped model (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the simulated cell (default: %(default)s)"
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=DEFAULT_SHAPE,
        help="size of the simulated volume in voxels (default: 64 256 256)",
    )
    add_device_option(parser)


def _check_options(args: argparse.Namespace) -> None:
    from sxtquant.core.errors import InputError

    if args.voxel_size is not None and not (args.voxel_size > 0 and math.isfinite(args.voxel_size)):
        raise InputError("--voxel-size", f"must be a positive number of nm, got {args.voxel_size}")
    if args.input is None:
        if min(args.shape) < 16:
            raise InputError(
                "--shape",
                f"each size must be at least 16 voxels, got {' '.join(map(str, args.shape))}",
            )
        if args.seed < 0:
            raise InputError("--seed", f"must be >= 0, got {args.seed}")


def _clear_previous(out) -> None:
    """Remove a previous demo run's outputs (and only those) from ``out``."""
    import json
    import shutil

    marker = out / "summary.json"
    try:
        previous = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(previous, dict) or previous.get("program") != MARKER:
        return
    for name in OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys
    import time
    from pathlib import Path

    import numpy as np

    from sxtquant import io, pipeline
    from sxtquant.cli.options import check_device
    from sxtquant.core.defaults import THRESHOLD
    from sxtquant.core.errors import InputError
    from sxtquant.core.progress import StageTimer
    from sxtquant.core.voxels import VoxelSize
    from sxtquant.nn.checkpoint import load_model
    from sxtquant.report import demo as report

    started = time.perf_counter()
    # ---- everything is checked before the first output is written; cheap checks first
    _check_options(args)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    volume = None
    if args.input is not None:
        volume = io.read_volume(args.input)
        if volume.shape[0] < 2:
            raise InputError(
                args.input, f"the demo needs a 3D tomogram, got a single slice {volume.shape[1:]}"
            )
        voxel = volume.require_voxel_size(args.voxel_size)
    else:
        voxel = VoxelSize.of(args.voxel_size or DEFAULT_VOXEL_NM)
    device = check_device(args.device)
    model = load_model(args.model)

    simulated = volume is None
    names = ["simulate" if simulated else "read", "segment", "objects", "filopodia", "meshes"]
    names += ["evaluate", "figures"] if simulated else ["figures"]
    stages = StageTimer(names, desc="demo")
    _clear_previous(out)
    results: dict = {
        "program": MARKER,
        "command": "sxtquant " + shlex.join(sys.argv[1:]),
        "input": "simulated" if simulated else str(args.input),
        "model": str(args.model),
        "device": str(device),
        "voxel_size_nm": list(voxel),
        "threshold": THRESHOLD,
    }
    sim = comparison = None
    try:
        if simulated:
            with stages("simulate"):
                sim = _simulate(args, voxel[0], out / "simulation")
                tomogram, stem = sim.tomogram, "tomogram"
                results["seed"] = args.seed
                results["field_of_view"] = bool(args.field_of_view)
                results["true_filopodia"] = int((sim.table["class"] == "filopodium").sum())
        else:
            with stages("read"):
                tomogram, stem = np.asarray(volume.data), io.volume_stem(args.input)
        results["shape_zyx"] = list(tomogram.shape)
        analysis = pipeline.analyze(tomogram, voxel, model, device=device, timer=stages)
        results["objects_from"] = "regions" if analysis.from_regions else "membranes"
        results["membrane_fraction"] = analysis.membrane_fraction
        results["objects"] = len(analysis.table)
        results["filopodia"] = analysis.filopodia_numbers()
        results["meshes"] = len(analysis.meshes)
        if simulated:
            with stages("evaluate"):
                comparison = pipeline.compare_with_truth(analysis, sim)
                results["segmentation"] = comparison.scores
                results["filopodia_vs_truth"] = comparison.matching
                results["filopodia_on_true_membranes"] = comparison.on_true_membranes
                if comparison.on_true_regions is not None:
                    results["filopodia_on_true_regions"] = comparison.on_true_regions
        with stages("figures"):
            pipeline.write_analysis(analysis, out, stem=stem)
            matches = comparison.matches if comparison is not None else None
            if comparison is not None:
                io.write_json(comparison.metrics, out / "segmentation" / "metrics.json")
                io.write_table(matches, out / "quantification" / "filopodia_vs_truth.csv")
            drawn = report.meshes_to_draw(analysis.meshes, analysis.mesh_labels, voxel)
            truth = sim.membranes if sim is not None else None
            figures = report.demo_figures(
                tomogram, analysis.mask, truth, drawn, analysis.filopodia, matches, voxel, args.seed
            )
            for name, (figure, dpi) in figures.items():
                io.save_figure(figure, out / name, dpi=dpi)
    finally:
        stages.close()
    results["seconds"] = dict(stages.seconds)
    results["seconds"]["total"] = time.perf_counter() - started
    io.write_json(results, out / "summary.json")
    page = report.report_html(
        results, analysis.table, analysis.filopodia, analysis.filopodia_summary, matches, out
    )
    io.write_text(page, out / "report.html")
    print(report.summary_text(results, out / "report.html"))
    return 0


def _simulate(args, voxel_nm: float, folder):
    """The simulated cell of the demo, written to ``folder`` as 'sxtquant simulate' does."""
    from sxtquant.simulate.cell import CellContent
    from sxtquant.simulate.files import write_simulation
    from sxtquant.simulate.tomogram import simulate_tomogram

    content = CellContent(field_of_view=True) if args.field_of_view else None
    sim = simulate_tomogram(tuple(args.shape), voxel_nm, seed=args.seed, content=content)
    write_simulation(sim, folder, seed=args.seed)
    return sim
