"""sxtquant quantify: measure the objects of a mask in physical units (nm) into a CSV table.

MASK is a binary mask (any non-zero voxel is foreground, e.g. uint8 0/255) or an
instance-label volume (0 = background, one integer per object), (z, y, x), in any
format sxtquant reads. With --kind auto (the default) a volume with more than two
distinct values is read as labels, anything else as a mask; say --kind mask or
--kind labels to decide yourself (a label volume holding a single object looks like
a mask, which gives the same objects unless the object is in several pieces).

The objects of a mask are its 3D connected components (face connectivity); the
objects of a label volume are its labels. Before measuring:
  --fill          treat the foreground as membranes: close gaps in their contours and
                  fill them into solid objects (per slice, then in 3D);
  --separate      split touching objects by a marker-controlled watershed on the
                  distance transform (anisotropic voxels respected);
  --min-voxels N  drop objects smaller than N voxels;
  --exclude-border  drop objects that touch the volume's edge (cut off, as the
                  reference paper did); without it they are kept and flagged.

The table has one row per object, numbered 1..n, with the columns of
sxtquant.morphology.measure_objects: label, voxels, volume_nm3, surface_area_nm2
(sub-voxel marching-cubes estimate), surface_to_volume_per_um (µm⁻¹),
axis_major_nm / axis_second_nm / axis_minor_nm (full axes of the ellipsoid with the
same second moments), per-z-slice 2D cross-section statistics
slice_first_axis_nm_mean/_sd, slice_second_axis_nm_mean/_sd,
slice_perimeter_nm_mean/_sd (SD with ddof = 1; empty for a one-slice object) and
touches_border.

The voxel size comes from the file's header; --voxel-size (nm; one value, or three
for z y x) overrides it, and a file that records none needs it. 3D measurements
require 3D input: a single 2D image is refused.

--filopodia also finds the filopodia (sxtquant.filopodia.analyze) and writes, beside
TABLE, <stem>.filopodia.csv (one row per filopodium) and <stem>.filopodia_summary.csv
(mean and SD per quantity of Fig. 3B of Dyhr et al. 2023). --labels-out PATH saves
the measured objects as an instance-label volume (uint16, or uint32 past 65535
objects; .tif keeps the voxel size for Fiji/MIB).

Example:
  sxtquant quantify cell.mask.tif --fill --separate --min-voxels 50 --exclude-border \\
      -o cell_objects.csv --labels-out cell_objects.tif
"""

from __future__ import annotations

import argparse

from sxtquant.commands import add_voxel_size_option

HELP = "measure objects of a mask in physical units (nm) into a CSV table"

KINDS = ("auto", "mask", "labels")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant quantify`."""
    parser.add_argument("mask", metavar="MASK", help="binary mask or instance labels (z, y, x)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="TABLE.csv",
        help="per-object table (.csv; .parquet also works)",
    )
    add_voxel_size_option(parser)
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="auto",
        help="read MASK as a mask or as labels (default auto: labels if > 2 distinct values)",
    )
    parser.add_argument(
        "--fill",
        action="store_true",
        help="close and fill membrane contours into solid objects before labelling",
    )
    parser.add_argument(
        "--closing-radius",
        type=int,
        default=2,
        metavar="PX",
        help="with --fill: bridge contour gaps up to about 2 x this many pixels (default 2)",
    )
    parser.add_argument(
        "--separate",
        action="store_true",
        help="split touching objects by a distance-transform watershed",
    )
    parser.add_argument(
        "--min-voxels",
        type=int,
        default=0,
        metavar="N",
        help="drop objects of fewer than N voxels (default 0: keep all)",
    )
    parser.add_argument(
        "--exclude-border",
        action="store_true",
        help="drop objects that touch the edge of the volume",
    )
    parser.add_argument(
        "--filopodia",
        action="store_true",
        help="also write <stem>.filopodia.csv and <stem>.filopodia_summary.csv beside TABLE",
    )
    parser.add_argument(
        "--labels-out",
        metavar="PATH",
        help="also save the measured objects as instance labels (e.g. objects.tif)",
    )
    parser.add_argument(
        "--dataset", help="HDF5 only: path of the dataset inside the file (default: the only one)"
    )


def filopodia_paths(table_path):
    """The per-filopodium and summary tables written beside ``table_path``."""
    from pathlib import Path

    table_path = Path(table_path)
    stem = table_path.with_suffix("") if table_path.suffix else table_path
    return (
        stem.with_name(stem.name + ".filopodia.csv"),
        stem.with_name(stem.name + ".filopodia_summary.csv"),
    )


def run(args: argparse.Namespace) -> int:
    import shutil
    from pathlib import Path

    import numpy as np

    from sxtquant.errors import InputError
    from sxtquant.io import read_volume, write_table, write_volume
    from sxtquant.morphology import measure_objects
    from sxtquant.objects import is_label_volume, objects_from_mask
    from sxtquant.postprocess import fill_membranes

    if args.min_voxels < 0:
        raise InputError("--min-voxels", f"must be >= 0, got {args.min_voxels}")
    if args.closing_radius < 0:
        raise InputError("--closing-radius", f"must be >= 0, got {args.closing_radius}")
    out = Path(args.output)
    if out.is_dir():
        raise InputError(out, "is a folder; give the name of the table file, e.g. objects.csv")
    if args.labels_out:
        _check_volume_suffix(args.labels_out)

    volume = read_volume(args.mask, dataset=args.dataset)
    if volume.shape[0] < 2:
        raise InputError(
            args.mask,
            f"3D measurements require 3D input; got a single slice of shape {volume.shape[1:]}",
        )
    voxel = volume.require_voxel_size(args.voxel_size)
    data = np.asarray(volume.data)
    if np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.round(data)):
        raise InputError(
            args.mask,
            "holds non-integral values; give a binary mask or instance labels "
            "(threshold a probability map first, e.g. with sxtquant segment)",
        )
    if np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.int64)
    if data.dtype.kind == "i" and data.min() < 0:
        raise InputError(args.mask, "holds negative values; labels must be >= 0")
    kind = args.kind
    if kind == "auto":
        kind = "labels" if is_label_volume(data) else "mask"
    if args.fill:
        data, kind = fill_membranes(data > 0, closing_radius=args.closing_radius), "mask"
    elif kind == "mask":
        data = data > 0

    labels = objects_from_mask(
        data,
        voxel,
        is_labels=kind == "labels",
        separate=args.separate,
        min_voxels=args.min_voxels,
        exclude_border_objects=args.exclude_border,
    )
    table = measure_objects(labels, voxel)

    filopodia = None
    if args.filopodia:
        from sxtquant.filopodia import analyze

        filopodia = analyze(data, voxel, kind=kind)

    # everything is computed: now write (each file atomically; all or none)
    outputs = [(out, lambda path: write_table(table, path))]
    report = [f"{out}: {len(table)} objects, voxel size {_voxel_text(voxel)}"]
    if filopodia is not None:
        per_path, summary_path = filopodia_paths(out)
        outputs.append((per_path, lambda path: write_table(filopodia[0], path)))
        outputs.append((summary_path, lambda path: write_table(filopodia[1], path)))
        report.append(f"{per_path}: {len(filopodia[0])} filopodia")
        report.append(f"{summary_path}: mean and SD per quantity")
    if args.labels_out:
        outputs.append((Path(args.labels_out), lambda path: write_volume(path, labels, voxel)))
        report.append(f"{args.labels_out}: instance labels ({labels.dtype})")
    done = []
    try:
        for path, write in outputs:
            write(path)
            done.append(path)
    except BaseException:
        for path in done:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    print("\n".join(report))
    return 0


def _check_volume_suffix(path) -> None:
    from sxtquant.errors import InputError
    from sxtquant.io import HDF5_SUFFIXES, MRC_SUFFIXES, TIFF_SUFFIXES, ZARR_SUFFIXES

    suffixes = TIFF_SUFFIXES + MRC_SUFFIXES + ZARR_SUFFIXES + HDF5_SUFFIXES
    if not str(path).lower().endswith(suffixes):
        raise InputError(path, "unknown output type for --labels-out; use .tif, .mrc, .zarr or .h5")


def _voxel_text(voxel) -> str:
    return " x ".join(f"{v:g}" for v in voxel) + " nm (z, y, x)"
