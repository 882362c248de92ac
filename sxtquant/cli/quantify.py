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
                  fill them into solid objects (per slice, then in 3D); --z-vote R
                  first takes a majority vote over 2R+1 slices, --erode N then erodes
                  the objects by N voxels (the membrane's outer half);
  --segmentation  the recipe the demo runs on the network's membrane mask from
                  'sxtquant segment' (sxtquant.quantify.recipe.SEGMENTATION): --fill
                  --z-vote 1 --erode 1 --separate --min-volume 2e5;
  --separate      split touching objects by a marker-controlled watershed on the
                  distance transform (anisotropic voxels respected);
  --min-voxels N  drop objects smaller than N voxels (--min-volume NM3: than NM3 nm³);
  --exclude-border  drop objects that touch the volume's edge (cut off, as the
                  reference paper did); without it they are kept and flagged.

The table has one row per object, numbered 1..n, with the columns of
sxtquant.quantify.morphology.measure_objects: label, voxels, volume_nm3, surface_area_nm2
(sub-voxel marching-cubes estimate), surface_to_volume_per_um (µm⁻¹),
axis_major_nm / axis_second_nm / axis_minor_nm (full axes of the ellipsoid with the
same second moments), per-z-slice 2D cross-section statistics
slice_first_axis_nm_mean/_sd, slice_second_axis_nm_mean/_sd,
slice_perimeter_nm_mean/_sd (SD with ddof = 1; empty for a one-slice object) and
touches_border.

The voxel size comes from the file's header; --voxel-size (nm; one value, or three
for z y x) overrides it, and a file that records none needs it. 3D measurements
require 3D input: a single 2D image is refused.

--filopodia also finds the filopodia (sxtquant.quantify.filopodia.analyze) and writes, beside
TABLE, <stem>.filopodia.csv (one row per filopodium) and <stem>.filopodia_summary.csv
(mean and SD per quantity of Fig. 3B of Dyhr et al. 2023). --labels-out PATH saves
the measured objects as an instance-label volume (uint16, or uint32 past 65535
objects; .tif keeps the voxel size for Fiji/MIB); with --filopodia it also writes
<stem>.filopodia.tif beside TABLE, each filopodium under its label in the filopodia
table (one mask at a time).

Region probabilities ([0, 1], MASK's shape and voxel size; sxtquant.quantify.regions):
--cell-probability PATH gives the cell instead of filled membranes (> --region-threshold,
holes filled, also where the border cuts it open), --organelle-probability PATH one
object per organelle. The objects are then the cell bodies (labels 1..), filopodia and
organelles; a body is measured whole, organelles included. For MASK <stem>.mask.<ext>
or <stem>.probability.<ext>, the <stem>.cell.probability.<ext> and
<stem>.organelles.probability.<ext> beside it are used unless --no-regions or either
option is given (a line says which). Without them, --fill also fills a cell that the
volume's y/x border cuts open (on the convex side of its membrane). Filopodia that
touch the volume's edge are flagged (touches_border) and, as in the paper's Fig. 3B,
left out of the summary (its n_touching_border counts them).

A MASK stored as OME-Zarr (.zarr, .ome.zarr) is processed block by block
(--block-slices slices at a time; objects crossing blocks are merged, the table is
the same as for the whole volume) unless --fill, --separate or --filopodia need the
whole volume in memory. Its --labels-out is best an OME-Zarr (.zarr), written
block by block too.

Several masks (files, folders or glob patterns; in a folder or pattern files named
*.probability.* are left out) give ONE tidy table: TABLE.csv and TABLE.parquet, one
row per object of every mask, with a first column `tomogram` (the mask's name
without its suffixes and a trailing ".mask": cell.mask.tif -> cell), the columns
above, then voxel_size_z_nm, voxel_size_y_nm, voxel_size_x_nm and `source` (the
mask's path). Each mask's region probabilities beside it are used as for one mask
(--cell-probability and --organelle-probability name one file: one MASK only). Each mask
is one task (--scheduler runs them on Dask workers); a failing one is reported and the
others go on. TABLE.batch_summary.csv lists every mask with its status, error and seconds
(exit code 1 if any failed), and TABLE.sxtquant.json records the checksums of the masks
(and region files) and outputs with the options: a rerun with nothing changed does
nothing (--force to redo). With --filopodia the filopodia tables get the `tomogram`
column too; --labels-out is then a folder that gets <tomogram>.labels.tif
(.labels.ome.zarr for OME-Zarr).

Examples:
  sxtquant quantify cell.mask.tif --fill --separate --min-voxels 50 --exclude-border \\
      -o cell_objects.csv --labels-out cell_objects.tif
  sxtquant quantify seg/cell.mask.tif --filopodia -o cell.csv   # uses seg/cell.cell.probability.tif
  sxtquant quantify seg/ --min-voxels 50 -o session_objects.csv --scheduler local:4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sxtquant.cli.options import add_batch_options, add_voxel_size_option, check_batch_options
from sxtquant.core.voxels import VoxelSize
from sxtquant.quantify.recipe import SEGMENTATION, ObjectRecipe
from sxtquant.quantify.regions import REGION_THRESHOLD
from sxtquant.scale.measurement import (
    QuantifySpec,
    _labels_file,
    filopodia_labels_path,
    filopodia_paths,
    measure_file,
    measure_region_file,
    quantify_job,
    tomogram_name,
)

HELP = "measure objects of a mask in physical units (nm) into a CSV table"

KINDS = ("auto", "mask", "labels")
#: columns the tidy table of several masks adds after measure_objects' columns
TIDY_COLUMNS = ("voxel_size_z_nm", "voxel_size_y_nm", "voxel_size_x_nm", "source")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant quantify`."""
    parser.add_argument(
        "masks",
        nargs="+",
        metavar="MASK",
        help="binary mask or instance labels (z, y, x); several, folders or glob patterns "
        "make one table of all",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="TABLE.csv",
        help="per-object table (.csv; .parquet also works); several masks: TABLE.csv and "
        "TABLE.parquet",
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
        "--segmentation",
        action="store_true",
        help="MASK is a membrane mask from 'sxtquant segment': make the objects as the demo "
        f"does (--fill --z-vote {SEGMENTATION.z_vote_radius} --erode {SEGMENTATION.erosion} "
        f"--separate --min-volume {SEGMENTATION.min_volume_nm3:g}; the other options still "
        "apply)",
    )
    for flag, field, kind, metavar, text in (
        ("--z-vote", "z_vote_radius", int, "R", "with --fill: vote over 2R+1 slices first"),
        ("--closing-radius", "closing_radius", int, "PX", "with --fill: bridge contour gaps "
         "up to about 2 x this many pixels"),
        ("--erode", "erosion", int, "N", "with --fill: erode the filled objects by N voxels, "
         "the outer half of a membrane label"),
        ("--min-voxels", "min_voxels", int, "N", "drop objects of fewer than N voxels"),
        ("--min-volume", "min_volume_nm3", float, "NM3", "drop objects smaller than NM3 nm³"),
    ):  # fmt: skip
        parser.add_argument(
            flag,
            type=kind,
            default=getattr(ObjectRecipe, field),
            metavar=metavar,
            help=text + " (default: %(default)s)",
        )
    parser.add_argument(
        "--separate",
        action="store_true",
        help="split touching objects by a distance-transform watershed",
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
        help="also save the measured objects as instance labels (e.g. objects.tif; a folder "
        "for several masks)",
    )
    for flag, text in (
        ("--cell-probability", "inside the cell: the cell comes from it, not from filled "
         "membranes (default: <stem>.cell.probability.* beside <stem>.mask.*)"),
        ("--organelle-probability", "inside an organelle: one object per organelle "
         "(default: <stem>.organelles.probability.* beside <stem>.mask.*)"),
    ):  # fmt: skip
        parser.add_argument(flag, metavar="PATH", help="probability ([0, 1]) of being " + text)
    parser.add_argument(
        "--no-regions", action="store_true", help="do not use region probabilities beside MASK"
    )
    parser.add_argument(
        "--region-threshold",
        type=float,
        default=REGION_THRESHOLD,
        metavar="P",
        help="inside the cell / an organelle where its probability > P (default: %(default)s)",
    )
    parser.add_argument(
        "--dataset", help="HDF5 only: path of the dataset inside the file (default: the only one)"
    )
    add_batch_options(
        parser,
        inputs="MASK",
        force_help="several masks: measure again even where the record says the table is "
        "up to date",
    )


def _spec(args: argparse.Namespace) -> QuantifySpec:
    """The options of ``args`` as the spec every mask's task gets."""
    recipe = ObjectRecipe(
        z_vote_radius=args.z_vote,
        closing_radius=args.closing_radius,
        erosion=args.erode,
        separate=args.separate,
        min_volume_nm3=args.min_volume,
        min_voxels=args.min_voxels,
        exclude_border=args.exclude_border,
    )
    if args.segmentation:
        recipe = recipe.replace(
            z_vote_radius=SEGMENTATION.z_vote_radius,
            erosion=SEGMENTATION.erosion,
            separate=True,
            min_volume_nm3=max(args.min_volume, SEGMENTATION.min_volume_nm3),
        )
    return QuantifySpec(
        voxel_size=tuple(args.voxel_size) if args.voxel_size else None,
        kind=args.kind,
        fill=args.fill or args.segmentation,
        z_vote_radius=recipe.z_vote_radius,
        closing_radius=recipe.closing_radius,
        erosion=recipe.erosion,
        separate=recipe.separate,
        min_voxels=recipe.min_voxels,
        min_volume_nm3=recipe.min_volume_nm3,
        exclude_border=recipe.exclude_border,
        filopodia=args.filopodia,
        dataset=args.dataset,
        block_slices=args.block_slices,
    )


def run(args: argparse.Namespace) -> int:
    from sxtquant import scale
    from sxtquant.core.errors import InputError

    scheduler = check_batch_options(args)
    if args.min_voxels < 0:
        raise InputError("--min-voxels", f"must be >= 0, got {args.min_voxels}")
    for flag, value in (
        ("--closing-radius", args.closing_radius),
        ("--z-vote", args.z_vote),
        ("--erode", args.erode),
        ("--min-volume", args.min_volume),
    ):
        if not value >= 0:
            raise InputError(flag, f"must be >= 0, got {value}")
    out = Path(args.output)
    if out.is_dir():
        raise InputError(out, "is a folder; give the name of the table file, e.g. objects.csv")
    if args.voxel_size is not None:
        from sxtquant.core.voxels import as_voxel_size

        try:
            as_voxel_size(args.voxel_size)
        except ValueError as exc:
            raise InputError("--voxel-size", str(exc)) from None
    if not 0.0 <= args.region_threshold < 1.0:
        raise InputError("--region-threshold", f"must be in [0, 1), got {args.region_threshold}")
    explicit = args.cell_probability or args.organelle_probability
    if args.no_regions and explicit:
        raise InputError("--no-regions", "contradicts --cell-probability/--organelle-probability")
    inputs = scale.expand_inputs(args.masks, skip=(".probability",))
    spec = _spec(args)
    if not inputs.collection:
        regions = _region_files(inputs.paths[0], args)
        return _run_single(inputs.paths[0], out, args, spec, scheduler, regions)
    if explicit:
        where = "--cell-probability" if args.cell_probability else "--organelle-probability"
        raise InputError(
            where,
            "names one file, so it goes with one MASK; with several, the region "
            "probabilities beside each mask are used",
        )
    return _run_batch(inputs, out, args, spec, scheduler)


#: the region probabilities written beside ``<stem>.mask.*`` by a region-aware model
REGION_MARKERS = {"cell": ".cell.probability", "organelles": ".organelles.probability"}


def _region_files(path, args) -> tuple[Path | None, Path | None]:
    """The cell and organelle probability files of MASK ``path``: given, or found beside
    a ``<stem>.mask<ext>`` / ``<stem>.probability<ext>`` (``<ext>`` its own, .tif, .tiff,
    .ome.zarr) unless ``--no-regions``."""
    from sxtquant.io.formats import volume_stem

    given = (args.cell_probability, args.organelle_probability)
    if any(given) or args.no_regions:
        return tuple(Path(p) if p else None for p in given)
    path = Path(path)
    stem = volume_stem(path)
    if stem.lower().endswith(tuple(REGION_MARKERS.values())):  # a region file itself
        return None, None
    marker = next((m for m in (".mask", ".probability") if stem.lower().endswith(m)), "")
    if not marker or len(stem) == len(marker):
        return None, None
    base = stem[: -len(marker)]
    suffixes = dict.fromkeys([path.name[len(stem) :], ".tif", ".tiff", ".ome.zarr"])
    found = []
    for marker in REGION_MARKERS.values():
        names = [path.with_name(base + marker + suffix) for suffix in suffixes if suffix]
        found.append(next((p for p in names if p.exists()), None))
    return found[0], found[1]


def _run_single(path, out: Path, args, spec: QuantifySpec, scheduler, regions=(None, None)):
    from sxtquant import io, scale
    from sxtquant.io.files import write_table
    from sxtquant.io.volumes import write_volume

    if args.labels_out:
        _check_volume_suffix(args.labels_out)
    parts = None
    if any(regions):
        if not args.quiet:
            used = zip(("cell", "organelles"), regions, strict=True)
            print("region probabilities: " + "; ".join(f"{r} {p}" for r, p in used if p))
        measured, parts = measure_region_file(path, regions, spec, args.region_threshold)
    else:
        blocks = spec.blockwise and io.format_of(path) == "zarr"
        where = scheduler if blocks else scale.SchedulerSpec()
        with scale.connect(where) as client:
            measured = measure_file(
                path, spec, scheduler=client, labels_out=args.labels_out, work_dir=out.parent
            )
    table, labels, filopodia, voxel = (
        measured.table,
        measured.labels,
        measured.filopodia,
        measured.voxel,
    )

    # everything is computed: now write (each file atomically; all or none)
    outputs = [(out, lambda path: write_table(table, path))]
    what = f" ({parts.summary()})" if parts is not None else ""
    report = [f"{out}: {len(table)} objects{what}, voxel size {VoxelSize.of(voxel)}"]
    if filopodia is not None:
        per_path, summary_path = filopodia_paths(out)
        outputs.append((per_path, lambda path: write_table(filopodia[0], path)))
        outputs.append((summary_path, lambda path: write_table(filopodia[1], path)))
        report.append(f"{per_path}: {len(filopodia[0])} filopodia")
        report.append(f"{summary_path}: mean and SD per quantity{_left_out(filopodia[1])}")
    done = []
    if args.labels_out:
        if labels is not None:
            outputs.append((Path(args.labels_out), lambda p: write_volume(p, labels, voxel)))
        else:  # written block by block already
            done.append(Path(args.labels_out))
        dtype = labels.dtype if labels is not None else _stored_dtype(args.labels_out)
        report.append(f"{args.labels_out}: instance labels ({dtype})")
        if measured.filopodia_labels is not None:
            path = filopodia_labels_path(out)
            outputs.append((path, lambda p: write_volume(p, measured.filopodia_labels, voxel)))
            report.append(f"{path}: filopodia labels, numbered as in {filopodia_paths(out)[0]}")
    _write_all(outputs, done)
    print("\n".join(report))
    return 0


def _left_out(summary) -> str:
    """The summary's note on the filopodia it leaves out (they touch the volume's edge)."""
    n = int(summary["n_touching_border"].iloc[0]) if len(summary) else 0
    return f" ({n} touching the volume's edge left out)" if n else ""


def _stored_dtype(path):
    from sxtquant.io.zarr import open_ome_zarr

    return open_ome_zarr(path)[0].dtype


def _write_all(outputs, done: list) -> None:
    """Call every ``write(path)``; if one fails, remove what was written (``done`` too)."""
    import shutil

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


def _batch_outputs(out: Path, spec: QuantifySpec, labels_files) -> tuple[Path, list[Path]]:
    base = out.with_suffix("") if out.suffix.lower() in (".csv", ".parquet") else out
    tables = [base.with_name(base.name + ".csv"), base.with_name(base.name + ".parquet")]
    if spec.filopodia:
        for path in filopodia_paths(tables[0]):
            tables += [path, path.with_suffix(".parquet")]
    return base, tables + [p for p in labels_files if p is not None]


def _run_batch(inputs, out: Path, args, spec: QuantifySpec, scheduler) -> int:
    import pandas as pd

    from sxtquant import io, scale
    from sxtquant.core.errors import InputError

    names: dict[str, str] = {}
    for path in inputs.paths:
        name = tomogram_name(path)
        if name in names:
            raise InputError(path, f"same tomogram name '{name}' as {names[name]}; rename one")
        names[name] = str(path)
    try:
        import pyarrow  # noqa: F401 - TABLE.parquet
    except ImportError:
        raise InputError(
            out,
            "several masks give TABLE.csv and TABLE.parquet; Parquet needs pyarrow: "
            "pip install 'sxtquant[dask]'",
        ) from None
    labels_dir = Path(args.labels_out) if args.labels_out else None
    if labels_dir is not None and (labels_dir.is_file() or labels_dir.suffix):
        raise InputError(labels_dir, "with several masks --labels-out is a folder")
    labels_files = [_labels_file(labels_dir, path, spec) for path in inputs.paths]
    base, outputs = _batch_outputs(out, spec, labels_files)
    record = base.with_name(base.name + scale.RECORD_SUFFIX)
    summary = base.with_name(base.name + ".batch_summary.csv")
    # each mask's region probabilities, found beside it: inputs of the record too
    regions = [_region_files(path, args) for path in inputs.paths]
    region_inputs = [p for pair in regions for p in pair if p is not None]
    identity = spec.identity() | {"labels_out": bool(labels_dir)}
    if region_inputs:
        identity["region_threshold"] = args.region_threshold
        if not args.quiet:
            used = sum(any(pair) for pair in regions)
            print(f"region probabilities: beside {used} of {len(regions)} masks", file=sys.stderr)
    all_inputs = [*inputs.paths, *region_inputs]
    if not args.force and scale.record_matches(
        record, inputs=all_inputs, outputs=outputs, identity=identity
    ):
        print(f"{outputs[0]}: up to date with its {len(inputs.paths)} masks")
        skipped = [scale.Outcome(str(p), "skipped", seconds=0.0) for p in inputs.paths]
        return scale.report(skipped, summary)

    if labels_dir is not None:
        labels_dir.mkdir(parents=True, exist_ok=True)
    zarr = [
        spec.blockwise and io.format_of(path) == "zarr" and not any(pair)
        for path, pair in zip(inputs.paths, regions, strict=True)
    ]
    with scale.connect(scheduler) as client:
        # OME-Zarr masks are measured from here, their blocks spread over the workers;
        # the others are one task each. Workers get absolute paths.
        where = (lambda p: Path(p).absolute()) if client is not None else Path
        labels = where(labels_dir) if labels_dir is not None else None
        jobs = [
            scale.Job(
                str(path),
                quantify_job,
                (where(path), spec, labels, where(base.parent)),
                ({"scheduler": client} if blocks else {})
                | _region_kwargs(pair, args.region_threshold, where),
            )
            for path, blocks, pair in zip(inputs.paths, zarr, regions, strict=True)
        ]
        ordered = scale.run_jobs(jobs, client, here=zarr, retries=args.retries)
    results = [o.result.value for o in ordered if o.status == "ok"]
    if results:
        table = pd.concat([r["table"] for r in results], ignore_index=True)
        io.write_table(table, outputs[0])
        io.write_table(table, outputs[1])
        print(f"{outputs[0]}, {outputs[1]}: {len(table)} objects of {len(results)} masks")
        if spec.filopodia:
            for k in range(2):
                part = pd.concat([r["filopodia"][k] for r in results], ignore_index=True)
                io.write_table(part, outputs[2 + 2 * k])
                io.write_table(part, outputs[3 + 2 * k])
        if len(results) == len(ordered):
            scale.write_record(record, inputs=all_inputs, outputs=outputs, identity=identity)
    return scale.report(ordered, summary)


def _region_kwargs(pair, threshold: float, where) -> dict:
    """``quantify_job``'s region arguments for a mask's (cell, organelles) files."""
    if not any(pair):
        return {}
    files = tuple(where(p) if p is not None else None for p in pair)
    return {"regions": files, "region_threshold": threshold}


def _check_volume_suffix(path) -> None:
    from sxtquant.core.errors import InputError
    from sxtquant.io.formats import HDF5_SUFFIXES, MRC_SUFFIXES, TIFF_SUFFIXES, ZARR_SUFFIXES

    suffixes = TIFF_SUFFIXES + MRC_SUFFIXES + ZARR_SUFFIXES + HDF5_SUFFIXES
    if not str(path).lower().endswith(suffixes):
        raise InputError(path, "unknown output type for --labels-out; use .tif, .mrc, .zarr or .h5")
