"""sxtquant demo: end-to-end demonstration: simulate, segment, quantify, report.

Simulates a cryo-SXT tomogram of a cell with filopodia (or takes --input), segments
its membranes with the network (the shipped model unless --model says otherwise),
closes and fills the membranes into solid objects, separates touching objects,
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
                              segment'), metrics.json (simulated input)
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

HELP = "end-to-end demonstration: simulate, segment, quantify, report"

DEFAULT_SHAPE = (64, 256, 256)
DEFAULT_VOXEL_NM = 9.8
THRESHOLD = 0.9  # the paper's decision threshold
Z_RADIUS = 1  # majority vote of the mask over 2 x 1 + 1 slices before filling
CLOSING_RADIUS = 2  # pixels: bridges membrane gaps up to about 4 pixels
# The filled membranes reach one voxel beyond the membrane's mid-surface (the labels
# are 2-3 voxel shells): one erosion step puts the objects' surface back on it.
MEMBRANE_EROSION = 1
# The 3D rendering draws at most about this many triangles; beyond (a poor, ragged
# segmentation) it draws the meshes of a coarser copy of the labels, which is much
# faster than decimating millions of triangles.
RENDER_FACES = 150_000
MIN_OBJECT_NM3 = 2e5  # objects smaller than a ball of ~36 nm radius are noise
TOLERANCE_VOXELS = 2.0

# Everything a demo run writes into OUT_DIR: removed first when OUT_DIR holds a
# previous demo's output (recognised by its summary.json).
FIGURES = {
    "overlay": "overlay.png",
    "render": "objects_3d.png",
    "filopodia": "filopodia.png",
    "truth": "measured_vs_true.png",
}
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
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where the network runs; auto picks CUDA when present (default: %(default)s)",
    )


def _check_options(args: argparse.Namespace) -> None:
    from sxtquant.errors import InputError

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


class _Stages:
    """Times the stages of the run and shows which one is running (silenced by --quiet)."""

    def __init__(self, names):
        from sxtquant.utils import progress

        self.seconds: dict[str, float] = {}
        self._bar = progress(total=len(names), desc="demo", unit="stage", position=0)

    def __call__(self, name: str):
        import contextlib
        import time

        @contextlib.contextmanager
        def stage():
            self._bar.set_postfix_str(name)
            start = time.perf_counter()
            yield
            self.seconds[name] = time.perf_counter() - start
            self._bar.update(1)

        return stage()

    def close(self) -> None:
        self._bar.close()


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

    from sxtquant import io
    from sxtquant.errors import InputError
    from sxtquant.utils import as_voxel_size

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
        voxel = as_voxel_size(args.voxel_size or DEFAULT_VOXEL_NM)

    from sxtquant.infer import predict_volume, resolve_device
    from sxtquant.model import load_model

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise InputError("--device", str(exc)) from None
    model = load_model(args.model)

    simulated = volume is None
    names = ["simulate" if simulated else "read", "segment", "objects", "filopodia", "meshes"]
    names += ["evaluate", "figures"] if simulated else ["figures"]
    stages = _Stages(names)
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
    sim = None
    try:
        # ---- input
        if simulated:
            with stages("simulate"):
                sim = _simulate(args, voxel[0], out / "simulation")
                tomogram, stem = sim.tomogram, "tomogram"
                results["seed"] = args.seed
                results["true_filopodia"] = int((sim.table["class"] == "filopodium").sum())
        else:
            with stages("read"):
                tomogram, stem = np.asarray(volume.data), io.volume_stem(args.input)
        results["shape_zyx"] = list(tomogram.shape)

        # ---- segmentation: as `sxtquant segment`
        with stages("segment"):
            probability = predict_volume(model, tomogram, device=device, progress=True)
            mask = probability > np.float32(THRESHOLD)
            seg = out / "segmentation"
            io.write_probability(seg / f"{stem}.probability.tif", probability, voxel)
            io.write_mask(seg / f"{stem}.mask.tif", mask, voxel)
            results["membrane_fraction"] = float(mask.mean())

        # ---- objects: close, fill, separate, measure
        with stages("objects"):
            objects, table = _objects(mask, voxel, out / "quantification")
            results["objects"] = len(table)

        # ---- filopodia
        with stages("filopodia"):
            per, summary, filo_labels = _filopodia(objects > 0, voxel, out / "quantification")
            results["filopodia"] = _filopodia_numbers(per)

        # ---- meshes
        with stages("meshes"):
            meshes, mesh_labels = _meshes(objects, filo_labels, voxel, out / "meshes")
            results["meshes"] = len(meshes)

        # ---- evaluation against the simulation's truth
        matches = None
        if simulated:
            with stages("evaluate"):
                metrics, matches = _evaluate(sim, mask, filo_labels, per, seg, out)
                results["segmentation"] = metrics
                results["filopodia_vs_truth"] = _matching(matches)
                results["filopodia_on_true_membranes"] = _true_membrane_reference(sim, voxel)

        # ---- figures, the numbers, and the report last
        with stages("figures"):
            drawn = _render_meshes(meshes, mesh_labels, voxel)
            _figures(out, tomogram, mask, sim, drawn, per, matches, voxel, args.seed)
    finally:
        stages.close()
    results["seconds"] = dict(stages.seconds)
    results["seconds"]["total"] = time.perf_counter() - started
    io.write_json(results, out / "summary.json")
    io.write_text(_report_html(results, table, per, summary, matches, out), out / "report.html")
    print(_summary_text(results, out / "report.html"))
    return 0


# --------------------------------------------------------------------------- stages


def _simulate(args, voxel_nm: float, folder):
    from sxtquant.commands.simulate import write_simulation
    from sxtquant.simulate import simulate_tomogram

    sim = simulate_tomogram(tuple(args.shape), voxel_nm, seed=args.seed)
    write_simulation(sim, folder, seed=args.seed)
    return sim


def _fill_objects(mask, voxel):
    """Membrane mask -> labelled solid objects (majority vote over z, close, fill, split)."""
    from sxtquant.objects import objects_from_mask
    from sxtquant.postprocess import erode, fill_membranes, smooth_z

    membranes = smooth_z(mask, Z_RADIUS)
    filled = erode(fill_membranes(membranes, closing_radius=CLOSING_RADIUS), MEMBRANE_EROSION)
    min_voxels = max(1, math.ceil(MIN_OBJECT_NM3 / math.prod(voxel)))
    return objects_from_mask(filled, voxel, is_labels=False, separate=True, min_voxels=min_voxels)


def _objects(mask, voxel, folder):
    """Membranes -> solid objects: z majority vote, close and fill, separate, measure.

    (Averaging the probability over z before the threshold would erase membranes
    that cross slices obliquely, such as the top and bottom of a flat cell.)
    """
    from sxtquant import io
    from sxtquant.morphology import measure_objects

    objects = _fill_objects(mask, voxel)
    table = measure_objects(objects, voxel)
    io.write_mask(folder / "filled.mask.tif", objects > 0, voxel)
    io.write_volume(folder / "objects.tif", objects, voxel)
    io.write_table(table, folder / "objects.csv")
    return objects, table


def _find_filopodia(cell_mask, voxel):
    """The filopodia table of a filled cell mask and the labels of the kept ones."""
    import numpy as np

    from sxtquant.filopodia import find_filopodia
    from sxtquant.objects import label_dtype

    per, candidates = find_filopodia(cell_mask, voxel, kind="mask")
    keep = np.zeros(int(candidates.max()) + 1 if candidates.size else 1, dtype=bool)
    keep[per["label"].to_numpy(int)] = True
    keep[0] = False
    return per, np.where(keep[candidates], candidates, 0).astype(label_dtype(int(keep.size)))


def _filopodia(cell_mask, voxel, folder):
    """The filopodia of the filled objects, measured; their labels (kept ones only)."""
    from sxtquant import io
    from sxtquant.filopodia import summarize

    per, labels = _find_filopodia(cell_mask, voxel)
    summary = summarize(per)
    io.write_volume(folder / "filopodia.tif", labels, voxel)
    io.write_table(per, folder / "filopodia.csv")
    io.write_table(summary, folder / "filopodia_summary.csv")
    return per, summary, labels


def _filopodia_numbers(per) -> dict:
    def mean(values):
        values = values.dropna()
        return float(values.mean()) if len(values) else math.nan

    return {
        "found": len(per),
        "mean_length_nm": mean(per["length_nm"]),
        "mean_diameter_nm": mean(2 * per["radius_nm"]),
    }


def _meshes(objects, filo_labels, voxel, folder):
    """One mesh per object, the filopodia apart from their cell body; GLB and STL.

    Returns the meshes and the labels they were made from (objects, then filopodia).
    """
    import numpy as np

    from sxtquant.mesh import labels_to_meshes, write_meshes

    n = int(objects.max()) if objects.size else 0
    labels = objects.astype(np.uint32)
    labels[filo_labels > 0] = filo_labels[filo_labels > 0].astype(np.uint32) + n
    if not n:
        return [], labels
    meshes = labels_to_meshes(labels, voxel)
    for mesh in meshes:
        label = int(mesh.metadata.get("label", 0))
        if label > n:
            mesh.metadata["name"] = f"filopodium_{label - n}"
    if meshes:
        write_meshes(meshes, folder / "objects.glb")
        write_meshes(meshes, folder / "objects.stl")
    return meshes, labels


def _render_meshes(meshes, labels, voxel):
    """The meshes to draw: these, or those of a coarser copy of the labels if too many."""
    from sxtquant.mesh import labels_to_meshes

    faces = sum(len(m.faces) for m in meshes)
    if faces <= RENDER_FACES:
        return meshes
    step = math.ceil(math.sqrt(faces / RENDER_FACES))
    coarse = labels[::step, ::step, ::step]
    return labels_to_meshes(coarse, tuple(step * v for v in voxel), min_faces=8) or meshes


def _evaluate(sim, mask, filo_labels, per, seg, out):
    from sxtquant import io
    from sxtquant.metrics import evaluate
    from sxtquant.report import match_filopodia

    metrics = evaluate(mask, sim.membranes, sim.artifacts, tolerance=TOLERANCE_VOXELS)
    io.write_json(metrics, seg / "metrics.json")
    matches = match_filopodia(filo_labels, per, sim.objects, sim.table)
    io.write_table(matches, out / "quantification" / "filopodia_vs_truth.csv")
    tol = metrics["tolerance"]
    return {
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "f1": metrics["f1"],
        "tolerance_voxels": TOLERANCE_VOXELS,
        "tolerance_precision": tol["precision"],
        "tolerance_recall": tol["recall"],
        "tolerance_f1": tol["f1"],
    }, matches


def _true_membrane_reference(sim, voxel) -> dict:
    """The objects and filopodia steps run on the true membranes, matched to the truth.

    What a perfect network would give: it separates the errors of the segmentation from
    those of the quantification that follows it.
    """
    from sxtquant.report import match_filopodia, matching_summary

    objects = _fill_objects(sim.membranes, voxel)
    per, labels = _find_filopodia(objects > 0, voxel)
    return matching_summary(match_filopodia(labels, per, sim.objects, sim.table))


def _matching(matches) -> dict:
    from sxtquant.report import matching_summary

    return matching_summary(matches)


def _figures(out, tomogram, mask, sim, meshes, per, matches, voxel, seed) -> None:
    from sxtquant.filopodia import plot_filopodia
    from sxtquant.io import save_figure
    from sxtquant.mesh import render_meshes
    from sxtquant.report import (
        crop_figure,
        measured_vs_true_figure,
        message_figure,
        slice_overlay_figure,
    )

    truth = sim.membranes if sim is not None else None
    title = "Membrane segmentation (probability > 0.9)"
    fig = slice_overlay_figure(tomogram, mask, truth, voxel_size_nm=voxel, title=title)
    save_figure(fig, out / FIGURES["overlay"], dpi=110)
    if meshes:
        fig = render_meshes(
            meshes, seed=seed, view=(35.0, -60.0), figsize=(8.0, 8.0), max_faces=2 * RENDER_FACES
        )
        save_figure(crop_figure(fig, dpi=110), out / FIGURES["render"], dpi=110)
    else:
        save_figure(
            message_figure("no objects were found: nothing to render"), out / FIGURES["render"]
        )
    fig = plot_filopodia(per, seed=seed)
    if per.empty:
        fig.text(
            0.5,
            0.5,
            "no filopodia found",
            ha="center",
            va="center",
            fontsize=16,
            color="firebrick",
            bbox={"facecolor": "white", "edgecolor": "firebrick"},
        )
    save_figure(fig, out / FIGURES["filopodia"], dpi=100)
    if matches is not None:
        save_figure(measured_vs_true_figure(matches), out / FIGURES["truth"], dpi=110)


# --------------------------------------------------------------------------- report


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _fmt(value, spec: str = ".0f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:{spec}}{unit}"


def _summary_rows(results: dict) -> list[tuple[str, str]]:
    filo = results["filopodia"]
    found = str(filo["found"])
    if "true_filopodia" in results:
        found += f" / {results['true_filopodia']} true"
    rows = [
        ("objects found", str(results["objects"])),
        ("filopodia found", found),
        ("filopodia mean length", _fmt(filo["mean_length_nm"], ".0f", " nm")),
        ("filopodia mean diameter", _fmt(filo["mean_diameter_nm"], ".0f", " nm")),
    ]
    if "segmentation" in results:
        s = results["segmentation"]
        rows.append(
            (
                "segmentation F1 (p > 0.9)",
                f"{_fmt(s['f1'], '.3f')} (precision {_fmt(s['precision'], '.3f')}, "
                f"recall {_fmt(s['recall'], '.3f')}; 2-voxel tolerance F1 "
                f"{_fmt(s['tolerance_f1'], '.3f')})",
            )
        )
    for key, name in (
        ("filopodia_vs_truth", "filopodia vs truth"),
        ("filopodia_on_true_membranes", "same, on true membranes"),
    ):
        if key in results:
            rows.append((name, _matching_text(results[key])))
    return rows


def _matching_text(m: dict) -> str:
    errors = m["mean_abs_relative_error"]
    return (
        f"{m['true_found']} of {m['true']} found, {m['false']} false; mean |error| "
        f"length {_fmt(100 * errors['length'], '.0f', ' %')}, diameter "
        f"{_fmt(100 * errors['diameter'], '.0f', ' %')}"
    )


def _summary_text(results: dict, report_path) -> str:
    if results["input"] == "simulated":
        z, y, x = results["shape_zyx"]
        what = f"simulated cell (seed {results['seed']}, {z} x {y} x {x} voxels)"
    else:
        what = results["input"]
    voxel = " x ".join(f"{v:g}" for v in results["voxel_size_nm"])
    lines = [f"sxtquant demo: {what}, voxel {voxel} nm, model {results['model']}"]
    rows = _summary_rows(results)
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    seconds = results["seconds"]
    lines.append(
        "  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if k != "total")
    )
    lines.append(f"  total: {seconds['total']:.1f} s")
    lines.append(f"report: {report_path}")
    return "\n".join(lines)


def _report_html(results, table, per, summary, matches, out) -> str:
    import html as _html

    import pandas as pd

    from sxtquant.report import (
        FILOPODIUM_QUANTITIES,
        Section,
        html_figure,
        html_key_values,
        html_page,
        html_table,
    )

    simulated = results["input"] == "simulated"
    z, y, x = results["shape_zyx"]
    voxel = " × ".join(f"{v:g}" for v in results["voxel_size_nm"])
    overview = {
        "input": (
            f"simulated cell, seed {results['seed']} (simulation/tomogram.mrc)"
            if simulated
            else results["input"]
        ),
        "volume": f"{z} × {y} × {x} voxels (z, y, x) of {voxel} nm",
        "model": results["model"],
        "device": results["device"],
        **dict(_summary_rows(results)),
    }
    sections = [Section("Overview", html_key_values(overview), "overview")]

    # segmentation
    notes = []
    seg = results.get("segmentation")
    if seg is not None and not (seg["f1"] >= 0.5):
        notes.append(
            f"The segmentation is poor (F1 {_fmt(seg['f1'], '.2f')} against the true "
            "membranes): the objects and filopodia below inherit its errors."
        )
    body = "".join(f'<p class="note">{_html.escape(n)}</p>' for n in notes)
    body += html_figure(
        FIGURES["overlay"],
        "Central x–y and x–z slices: the tomogram in grey with the predicted membranes "
        "(probability > 0.9) in orange"
        + (
            "; the true membranes in cyan; true positives green, false positives magenta, "
            "false negatives blue."
            if simulated
            else "."
        ),
    )
    if seg is not None:
        metrics = pd.DataFrame(
            [
                {
                    "score": "pixel-wise (probability > 0.9)",
                    "precision": seg["precision"],
                    "recall": seg["recall"],
                    "F1": seg["f1"],
                },
                {
                    "score": f"within {seg['tolerance_voxels']:g} voxels (per slice)",
                    "precision": seg["tolerance_precision"],
                    "recall": seg["tolerance_recall"],
                    "F1": seg["tolerance_f1"],
                },
            ]
        )
        body += html_table(
            metrics,
            formats={"precision": ".3f", "recall": ".3f", "F1": ".3f"},
            caption="Predicted mask against the true membranes (simulation/membranes.tif)",
        )
    body += (
        f"<p>Membrane voxels: {100 * results['membrane_fraction']:.2f} % of the volume. "
        '<a href="segmentation/">Probability map and mask</a> (TIFF, with the voxel size).</p>'
    )
    sections.append(Section("Membrane segmentation", body, "segmentation"))

    # objects
    body = (
        "<p>The predicted membranes, smoothed by a majority vote over 3 slices, are "
        "closed and filled into solid objects, eroded by one voxel (the membrane's outer "
        "half) so that their surface lies on the membrane's mid-surface, touching objects "
        "are split by a watershed on the distance transform, and objects under "
        f"{MIN_OBJECT_NM3 * 1e-9:g} µm³ are dropped.</p>"
    )
    if results["meshes"]:
        body += html_figure(
            FIGURES["render"],
            f"{_plural(results['meshes'], 'surface mesh', 'surface meshes')} (objects and, "
            "apart, their filopodia) in random colours; meshes/objects.glb and meshes/objects.stl "
            "open in ParaView, Blender or MeshLab (coordinates in nm).",
        )
    else:
        body += '<p class="note">No objects were found, so there is nothing to mesh.</p>'
    shown = table.assign(
        volume_um3=table["volume_nm3"] * 1e-9, surface_area_um2=table["surface_area_nm2"] * 1e-6
    )
    body += html_table(
        shown.head(30),
        columns={
            "label": "label",
            "voxels": "voxels",
            "volume_um3": "volume (µm³)",
            "surface_area_um2": "surface area (µm²)",
            "surface_to_volume_per_um": "surface/volume (µm⁻¹)",
            "axis_major_nm": "major axis (nm)",
            "axis_second_nm": "second axis (nm)",
            "axis_minor_nm": "minor axis (nm)",
            "touches_border": "touches border",
        },
        formats={"volume_um3": ".4f", "surface_area_um2": ".3f", "surface_to_volume_per_um": ".1f"}
        | {c: ".0f" for c in ("axis_major_nm", "axis_second_nm", "axis_minor_nm")},
        caption=f"Objects ({len(table)}"
        + (", the 30 first" if len(table) > 30 else "")
        + "; all columns in quantification/objects.csv)",
    )
    sections.append(Section("Objects", body, "objects"))

    # filopodia
    body = ""
    if per.empty:
        body += (
            '<p class="note">No filopodia were found: no long, thin tube sticks out of the '
            "filled objects (with a poor segmentation the cell may not even close).</p>"
        )
    body += html_figure(
        FIGURES["filopodia"],
        "Every filopodium is a dot; black: mean ± SD here, grey: the paper's (n = 59).",
    )
    per_shown = per.assign(
        diameter_nm=2 * per["radius_nm"],
        volume_1e6nm3=per["volume_nm3"] * 1e-6,
        surface_area_1e4nm2=per["surface_area_nm2"] * 1e-4,
    )
    body += html_table(
        per_shown,
        columns={
            "label": "label",
            "length_nm": "length (nm)",
            "diameter_nm": "diameter (nm)",
            "volume_1e6nm3": "volume (10⁶ nm³)",
            "surface_area_1e4nm2": "surface area (10⁴ nm²)",
            "surface_to_volume_per_um": "surface/volume (µm⁻¹)",
            "axis_major_nm": "3D major axis (nm)",
            "slice_second_axis_nm_mean": "2D second axis (nm)",
            "touches_border": "touches border",
        },
        formats={
            "length_nm": ".0f",
            "diameter_nm": ".0f",
            "volume_1e6nm3": ".2f",
            "surface_area_1e4nm2": ".1f",
            "surface_to_volume_per_um": ".1f",
            "axis_major_nm": ".0f",
            "slice_second_axis_nm_mean": ".0f",
        },
        caption="Filopodia (quantification/filopodia.csv; labels in filopodia.tif)",
    )
    body += html_table(
        summary,
        columns={
            "quantity": "quantity",
            "unit": "unit",
            "mean": "mean",
            "sd": "SD",
            "n": "n",
            "paper_mean": "paper mean",
            "paper_sd": "paper SD",
        },
        caption="Mean and SD per quantity of Fig. 3B (quantification/filopodia_summary.csv)",
    )
    sections.append(Section("Filopodia", body, "filopodia"))

    # measured vs true
    if matches is not None:
        m = results["filopodia_vs_truth"]
        body = (
            f"<p>{m['true_found']} of the {m['true']} simulated filopodia were found; "
            f"{m['false']} detection(s) overlap no simulated filopodium. Each detection is "
            "matched to the simulated filopodium it overlaps most (simulation/objects.tif). "
            "True values are the simulator's analytic geometry of the part outside the "
            "cell body (length from the cell surface to the tip).</p>"
        )
        ref = results.get("filopodia_on_true_membranes")
        if ref is not None:
            body += (
                "<p>For reference, the same steps on the true membranes "
                "(simulation/membranes.tif), as a perfect network would segment them: "
                f"{_html.escape(_matching_text(ref))}. The difference between the two is "
                "what the segmentation costs.</p>"
            )
        if m["true_found"] < m["true"]:
            body += (
                "<p><b>Why filopodia are missed.</b> They are found in the filled cell: "
                "membrane contours closed per slice, filled, and the cell body split "
                "from its thin protrusions by an opening with a ball wider than a "
                "filopodium. The missing wedge (no projections beyond the tilt range) "
                "leaves the cell's flat top and bottom membranes nearly invisible, and a "
                "filopodium's two walls, 80–180 nm apart, blur into one line with open "
                "ends; where a contour stays open its slice is not filled, the filled "
                "body is thinner than the ball, and the protrusions are not cut from it. "
                "Better membranes (the published network, or a model retrained on your "
                "data) are the remedy, not looser thresholds.</p>"
            )
        body += html_figure(
            FIGURES["truth"],
            "Measured against true value of the matched filopodia; dashed: equal.",
        )
        columns = {
            "label": "detected",
            "true_label": "true label",
            "status": "status",
            "overlap_fraction": "overlap",
        }
        formats = {"overlap_fraction": ".0%"}
        shown = matches.astype({"label": object, "true_label": object})
        for column in ("label", "true_label"):  # 0: none
            shown.loc[shown[column] == 0, column] = None
        for q in FILOPODIUM_QUANTITIES:
            name = q.name.replace("_", " ")
            for kind in ("measured", "true"):
                column = f"{q.name}_{q.unit}_{kind}"
                shown[column] = shown[column] * q.display_factor
                columns[column] = f"{name} {kind} ({q.display_unit})"
                formats[column] = ".0f" if q.display_unit == "nm" else ".2f"
            columns[f"{q.name}_relative_error"] = f"{name} error"
            formats[f"{q.name}_relative_error"] = "+.0%"
        body += html_table(
            shown,
            columns=columns,
            formats=formats,
            caption="Measured vs true (quantification/filopodia_vs_truth.csv); "
            "error = (measured − true) / true",
        )
        sections.append(Section("Measured vs true", body, "truth"))

    # timings and files
    seconds = results["seconds"]
    timing = pd.DataFrame(
        [{"stage": k, "seconds": v} for k, v in seconds.items() if k != "total"]
        + [{"stage": "total (until the report)", "seconds": seconds.get("total", math.nan)}]
    )
    body = f"<p>Command: <code>{_html.escape(results['command'])}</code></p>"
    body += html_table(timing, formats={"seconds": ".1f"})
    files = sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    files = [f for f in files if f != "report.html"]
    body += "<p>Files written:</p><ul>" + "".join(
        f'<li><a href="{_html.escape(f, quote=True)}">{_html.escape(f)}</a></li>' for f in files
    )
    body += "</ul>"
    sections.append(Section("Run", body, "run"))
    subtitle = (
        "Cryo-SXT membrane segmentation and filopodia quantification (sxtquant demo); "
        "method of Dyhr et al., PNAS 120(24) e2209938120, 2023."
    )
    return html_page("sxtquant demo report", sections, subtitle=subtitle)
