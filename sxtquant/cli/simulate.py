"""sxtquant simulate: simulate a cryo-SXT tomogram of a cell with exact ground truth.

A cell in vitreous ice (plasma membrane, nucleus with its double envelope,
mitochondria, ER tubules, vesicles, lipid droplets, filopodia, gold fiducials) with
water-window linear absorption coefficients (µm⁻¹), imaged as a parallel-beam tilt
series about y (±65° in 1° steps by default: the missing wedge), blurred by the zone
plate, with Poisson noise, and reconstructed slice-wise with SIRT (30 iterations) or
filtered back-projection. Lengths are in nm; axis order (z, y, x).

Writes into OUT_DIR:
  tomogram.mrc     float32 reconstruction (LAC, µm⁻¹), voxel size in the header
  membranes.tif    uint8 0/255 ground-truth membranes (2–3 voxel shells)
  objects.tif      uint16 filled instance labels (innermost object per voxel)
  artifacts.tif    uint8 0/255 regions of the gold fiducials' streak artifacts
  objects.csv      one row per label: class, parent, analytic geometry in nm
  simulation.json  seed, voxel size and every acquisition/content parameter
  preview_xy.png, preview_xz.png   with --preview

With --field-of-view the cell is larger than the volume and cut by its borders (part
of a mammalian cell: a stretch of the cell edge with its filopodia crosses the field
of view); objects.csv flags every cut object in touches_border.

With --dataset, OUT_DIR becomes a training set of 2D slices:
  dataset.json, labeled/images/<tomo>_z<zzzz>.tif (float32), labeled/labels/... (uint8
  0/255), labeled/regions/... (uint8 0 = outside the cell, 1 = cell, 2 = organelle),
  unlabeled/images/..., and test/{images,labels,regions} with --test-tomograms.
  With --stacks: one 3D file per tomogram, <split>/images/<tomo>.tif etc., every slice.
  --field-of-view F simulates the fraction F of the tomograms in field-of-view mode.
Unlabelled (and test) tomograms draw their conditions with
sxtquant.simulate.sample_conditions: the test conditions lie outside the training ranges.
Labelled tomograms are simulated at the standard conditions, or with
--labeled-conditions varied drawn from the training ranges too; with broad, labelled and
unlabelled tomograms draw from the broad ranges (tilt ±55-70° with offsets, blur
20-50 nm, dose 400-8000, jitter, depth of focus) that contain the test ranges. Each
tomogram has its
own random stream, so the test tomograms of a seed are the same whatever the other
options.
"""

from __future__ import annotations

import argparse
import math

from sxtquant.core.errors import InputError

HELP = "simulate a cryo-SXT tomogram of a cell with exact ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant simulate`."""
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        default=(64, 256, 256),
        help="volume size in voxels (default 64 256 256)",
    )
    parser.add_argument(
        "--voxel-size",
        type=float,
        default=9.8,
        metavar="NM",
        help="isotropic voxel size in nm (default 9.8, the reference paper's)",
    )
    acq = parser.add_argument_group("acquisition")
    acq.add_argument(
        "--tilt-max",
        type=float,
        default=65.0,
        metavar="DEG",
        help="tilt range ±DEG about y (default 65; 90 = no missing wedge)",
    )
    acq.add_argument(
        "--tilt-step",
        type=float,
        default=1.0,
        metavar="DEG",
        help="tilt step in degrees (default 1)",
    )
    acq.add_argument(
        "--blur-nm",
        type=float,
        default=25.0,
        metavar="NM",
        help="zone-plate PSF FWHM in nm (default 25; 40 is like Diamond B24)",
    )
    acq.add_argument(
        "--depth-of-focus",
        type=float,
        default=None,
        metavar="NM",
        help="depth of focus in nm: blur grows away from the mid-plane (off)",
    )
    acq.add_argument(
        "--dose",
        type=float,
        default=2000.0,
        metavar="PHOTONS",
        help="incident photons per pixel per projection (default 2000)",
    )
    acq.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        metavar="PX",
        help="SD of uncorrected per-projection shifts in pixels (default 0)",
    )
    acq.add_argument(
        "--reconstruction",
        choices=("sirt", "fbp"),
        default="sirt",
        help="reconstruction algorithm (default sirt)",
    )
    acq.add_argument(
        "--sirt-iterations",
        type=int,
        default=30,
        metavar="N",
        help="SIRT iterations (default 30, as in the IMOD workflow)",
    )
    cell = parser.add_argument_group("cell content")
    cell.add_argument(
        "--filopodia", type=int, default=6, metavar="N", help="number of filopodia (default 6)"
    )
    cell.add_argument(
        "--organelle-density",
        type=float,
        default=1.0,
        metavar="F",
        help="multiplies organelles per µm³ of cytoplasm (default 1)",
    )
    cell.add_argument(
        "--field-of-view",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        metavar="FRACTION",
        help="field-of-view mode: the cell is larger than the volume and cut by its "
        "borders; with --dataset, the fraction (0-1) of tomograms in that mode (alone: "
        "all). Put it after OUT_DIR",
    )
    cell.add_argument(
        "--fiducials",
        type=int,
        default=None,
        metavar="N",
        help="gold fiducial beads (default: 2–4 at random)",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--preview",
        action="store_true",
        help="also write PNGs of the central x–y and x–z slices beside the truth",
    )
    out.add_argument(
        "--tilt-series",
        action="store_true",
        help="also write the tilt series (-ln I/I0) as tilt_series.mrc",
    )
    ds = parser.add_argument_group("training set (--dataset)")
    ds.add_argument(
        "--dataset",
        action="store_true",
        help="write a training set of 2D slices into OUT_DIR instead",
    )
    ds.add_argument(
        "--labeled-tomograms",
        type=int,
        default=1,
        metavar="N",
        help="tomograms with membrane labels (default 1)",
    )
    ds.add_argument(
        "--labeled-conditions",
        choices=("standard", "varied", "broad"),
        default="standard",
        help="acquisition of the labelled tomograms: the standard conditions, drawn "
        "from the training ranges like the unlabelled ones, or (broad) labelled and "
        "unlabelled from the broad ranges (default: standard)",
    )
    ds.add_argument(
        "--unlabeled-tomograms",
        type=int,
        default=17,
        metavar="N",
        help="tomograms without labels, varied conditions (default 17)",
    )
    ds.add_argument(
        "--test-tomograms",
        type=int,
        default=0,
        metavar="N",
        help="labelled tomograms under held-out conditions (default 0)",
    )
    ds.add_argument(
        "--slice-step", type=int, default=1, metavar="K", help="keep every K-th z slice (default 1)"
    )
    ds.add_argument(
        "--stacks",
        action="store_true",
        help="one 3D file per tomogram (<split>/images/<tomo>.tif, every z slice; "
        "--slice-step is ignored) instead of one file per slice",
    )


def _check(args: argparse.Namespace):
    """Turn the options into library parameters; bad values are InputErrors."""
    from sxtquant.simulate.cell import CellContent
    from sxtquant.simulate.tomography import Acquisition

    if any(n <= 0 for n in args.shape):
        raise InputError("--shape", f"sizes must be positive, got {' '.join(map(str, args.shape))}")
    if min(args.shape) < 16:
        raise InputError("--shape", f"each size must be at least 16 voxels, got {args.shape}")
    if not (args.voxel_size > 0 and math.isfinite(args.voxel_size)):
        raise InputError("--voxel-size", f"must be a positive number of nm, got {args.voxel_size}")
    for name in ("labeled_tomograms", "unlabeled_tomograms", "test_tomograms"):
        if getattr(args, name) < 0:
            raise InputError("--" + name.replace("_", "-"), "must be >= 0")
    if args.slice_step < 1:
        raise InputError("--slice-step", f"must be >= 1, got {args.slice_step}")
    fov = args.field_of_view
    if not (math.isfinite(fov) and 0 <= fov <= 1):
        raise InputError("--field-of-view", f"must be a fraction from 0 to 1, got {fov}")
    if not args.dataset and fov not in (0, 1):
        raise InputError(
            "--field-of-view",
            f"a fraction ({fov}) needs --dataset; for one tomogram give the option alone",
        )
    if args.stacks and not args.dataset:
        raise InputError("--stacks", "only with --dataset")
    try:
        acquisition = Acquisition(
            tilt_max_deg=args.tilt_max,
            tilt_step_deg=args.tilt_step,
            blur_fwhm_nm=args.blur_nm,
            depth_of_focus_nm=args.depth_of_focus,
            dose=args.dose,
            jitter_px=args.jitter,
            reconstruction=args.reconstruction,
            sirt_iterations=args.sirt_iterations,
        )
        content = CellContent(
            organelle_density=args.organelle_density,
            filopodia=args.filopodia,
            fiducials=args.fiducials,
            field_of_view=fov == 1,
        )
    except ValueError as exc:
        raise InputError("simulate", str(exc)) from None
    return acquisition, content


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    acquisition, content = _check(args)
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if args.dataset:
        from sxtquant.simulate.files import write_dataset

        try:
            n = write_dataset(
                out,
                seed=args.seed,
                labeled=args.labeled_tomograms,
                unlabeled=args.unlabeled_tomograms,
                test=args.test_tomograms,
                shape=args.shape,
                voxel_size_nm=args.voxel_size,
                slice_step=args.slice_step,
                labeled_conditions=args.labeled_conditions,
                layout="stacks" if args.stacks else "slices",
                field_of_view=args.field_of_view,
            )
        except ValueError as exc:
            raise InputError("--dataset", str(exc)) from None
        if not args.quiet:
            print(f"wrote {n} tomograms' {'stacks' if args.stacks else 'slices'} into {out}")
        return 0
    from sxtquant.simulate.files import write_simulation
    from sxtquant.simulate.tomogram import simulate_tomogram

    sim = simulate_tomogram(
        tuple(args.shape), args.voxel_size, seed=args.seed, content=content, acquisition=acquisition
    )
    write_simulation(sim, out, seed=args.seed, preview=args.preview, tilt_series=args.tilt_series)
    if not args.quiet:
        print(f"wrote {out}/tomogram.mrc and its ground truth ({len(sim.table)} objects)")
    return 0
