"""The demo's report: its figures, its summary and its one-page HTML, from the numbers.

Everything here takes arrays and the run's ``results`` dict (what ``summary.json``
holds) and returns figures or text; ``sxtquant demo`` writes them.
"""

from __future__ import annotations

import math

from sxtquant.core.defaults import THRESHOLD
from sxtquant.core.voxels import VoxelSize
from sxtquant.quantify.recipe import SEGMENTATION

#: The demo's figures: key -> file name in the output folder.
FIGURES = {
    "overlay": "overlay.png",
    "render": "objects_3d.png",
    "filopodia": "filopodia.png",
    "truth": "measured_vs_true.png",
}
# The 3D rendering draws at most about this many triangles; beyond (a poor, ragged
# segmentation) it draws the meshes of a coarser copy of the labels, which is much
# faster than decimating millions of triangles.
RENDER_FACES = 150_000


def meshes_to_draw(meshes, labels, voxel_size_nm):
    """The meshes to draw: these, or those of a coarser copy of the labels if too many."""
    voxel = VoxelSize.of(voxel_size_nm)
    from sxtquant.quantify.mesh import labels_to_meshes

    faces = sum(len(m.faces) for m in meshes)
    if faces <= RENDER_FACES:
        return meshes
    step = math.ceil(math.sqrt(faces / RENDER_FACES))
    coarse = labels[::step, ::step, ::step]
    return labels_to_meshes(coarse, tuple(step * v for v in voxel), min_faces=8) or meshes


def demo_figures(tomogram, mask, truth, meshes, per, matches, voxel, seed) -> dict:
    """The demo's figures by file name: ``{name: (figure, dpi)}`` (``truth``: the true
    membranes of a simulated cell, or None; ``matches``: None without a simulation)."""
    from sxtquant.report.figures import (
        crop_figure,
        measured_vs_true_figure,
        message_figure,
        slice_overlay_figure,
    )
    from sxtquant.report.filopodia_plot import plot_filopodia
    from sxtquant.report.render import render_meshes

    out = {}
    title = f"Membrane segmentation (probability > {THRESHOLD:g})"
    fig = slice_overlay_figure(tomogram, mask, truth, voxel_size_nm=voxel, title=title)
    out[FIGURES["overlay"]] = (fig, 110)
    if meshes:
        fig = render_meshes(
            meshes, seed=seed, view=(35.0, -60.0), figsize=(8.0, 8.0), max_faces=2 * RENDER_FACES
        )
        out[FIGURES["render"]] = (crop_figure(fig, dpi=110), 110)
    else:
        out[FIGURES["render"]] = (message_figure("no objects were found: nothing to render"), 120)
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
    out[FIGURES["filopodia"]] = (fig, 100)
    if matches is not None:
        out[FIGURES["truth"]] = (measured_vs_true_figure(matches), 110)
    return out


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _fmt(value, spec: str = ".0f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:{spec}}{unit}"


def summary_rows(results: dict) -> list[tuple[str, str]]:
    filo = results["filopodia"]
    found = str(filo["found"])
    if "true_filopodia" in results:
        found += f" / {results['true_filopodia']} true"
    source = results.get("objects_from")
    rows = [
        ("objects found", str(results["objects"])),
        *(
            [("objects from", "the network's cell and organelle interiors")]
            if source == "regions"
            else [("objects from", "the filled membranes")]
            if source == "membranes"
            else []
        ),
        ("filopodia found", found),
        ("filopodia mean length", _fmt(filo["mean_length_nm"], ".0f", " nm")),
        ("filopodia mean diameter", _fmt(filo["mean_diameter_nm"], ".0f", " nm")),
    ]
    if "segmentation" in results:
        s = results["segmentation"]
        rows.append(
            (
                f"segmentation F1 (p > {THRESHOLD:g})",
                f"{_fmt(s['f1'], '.3f')} (precision {_fmt(s['precision'], '.3f')}, "
                f"recall {_fmt(s['recall'], '.3f')}; 2-voxel tolerance F1 "
                f"{_fmt(s['tolerance_f1'], '.3f')})",
            )
        )
    for key, name in (
        ("filopodia_vs_truth", "filopodia vs truth"),
        ("filopodia_on_true_membranes", "same, on true membranes"),
        ("filopodia_on_true_regions", "same, on true cell/organelle interiors"),
    ):
        if key in results:
            rows.append((name, matching_text(results[key])))
    return rows


def matching_text(m: dict) -> str:
    errors = m["mean_abs_relative_error"]
    cut = f" ({m['cut']} cut by the volume's border left out)" if m.get("cut") else ""
    return (
        f"{m['true_found']} of {m['true']} found, {m['false']} false{cut}; mean |error| "
        f"length {_fmt(100 * errors['length'], '.0f', ' %')}, diameter "
        f"{_fmt(100 * errors['diameter'], '.0f', ' %')}"
    )


def summary_text(results: dict, report_path) -> str:
    if results["input"] == "simulated":
        z, y, x = results["shape_zyx"]
        what = f"simulated cell (seed {results['seed']}, {z} x {y} x {x} voxels)"
    else:
        what = results["input"]
    voxel = " x ".join(f"{v:g}" for v in results["voxel_size_nm"])
    lines = [f"sxtquant demo: {what}, voxel {voxel} nm, model {results['model']}"]
    rows = summary_rows(results)
    width = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    seconds = results["seconds"]
    lines.append(
        "  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if k != "total")
    )
    lines.append(f"  total: {seconds['total']:.1f} s")
    lines.append(f"report: {report_path}")
    return "\n".join(lines)


def report_html(results, table, per, summary, matches, out) -> str:
    import html as _html

    import pandas as pd

    from sxtquant.evaluate.matching import FILOPODIUM_QUANTITIES
    from sxtquant.report.html import Section, html_figure, html_key_values, html_page, html_table

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
        **dict(summary_rows(results)),
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
        f"(probability > {THRESHOLD:g}) in orange"
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
                    "score": f"pixel-wise (probability > {THRESHOLD:g})",
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
        f"{SEGMENTATION.min_volume_nm3 * 1e-9:g} µm³ are dropped.</p>"
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
                f"{_html.escape(matching_text(ref))}. The difference between the two is "
                "what the segmentation costs.</p>"
            )
        regions = results.get("filopodia_on_true_regions")
        if regions is not None:
            body += (
                "<p>The objects here come from the network's cell and organelle interiors; "
                "the same steps on the true interiors (simulation/objects.tif) give "
                f"{_html.escape(matching_text(regions))}.</p>"
            )
        if m["true_found"] < m["true"] and regions is None:
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
