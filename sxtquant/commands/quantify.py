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
mask's path). Each mask is one task (--scheduler runs them on Dask workers); a
failing one is reported and the others go on. TABLE.batch_summary.csv lists every
mask with its status, error and seconds (exit code 1 if any failed), and
TABLE.sxtquant.json records the checksums of the masks and outputs with the
options: a rerun with nothing changed does nothing (--force to redo). With
--filopodia the filopodia tables get the `tomogram` column too; --labels-out is
then a folder that gets <tomogram>.labels.tif (.labels.ome.zarr for OME-Zarr).

Examples:
  sxtquant quantify cell.mask.tif --fill --separate --min-voxels 50 --exclude-border \\
      -o cell_objects.csv --labels-out cell_objects.tif
  sxtquant quantify seg/ --min-voxels 50 -o session_objects.csv --scheduler local:4
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sxtquant.batch import DEFAULT_BLOCK_SLICES, add_batch_options
from sxtquant.commands import add_voxel_size_option

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
        help="also save the measured objects as instance labels (e.g. objects.tif; a folder "
        "for several masks)",
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


def filopodia_paths(table_path):
    """The per-filopodium and summary tables written beside ``table_path``."""
    table_path = Path(table_path)
    stem = table_path.with_suffix("") if table_path.suffix else table_path
    return (
        stem.with_name(stem.name + ".filopodia.csv"),
        stem.with_name(stem.name + ".filopodia_summary.csv"),
    )


@dataclass(frozen=True)
class QuantifySpec:
    """The options of one measurement (picklable, for Dask workers)."""

    voxel_size: tuple[float, ...] | None = None
    kind: str = "auto"
    fill: bool = False
    closing_radius: int = 2
    separate: bool = False
    min_voxels: int = 0
    exclude_border: bool = False
    filopodia: bool = False
    dataset: str | None = None
    block_slices: int = DEFAULT_BLOCK_SLICES

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> QuantifySpec:
        return cls(
            voxel_size=tuple(args.voxel_size) if args.voxel_size else None,
            kind=args.kind,
            fill=args.fill,
            closing_radius=args.closing_radius,
            separate=args.separate,
            min_voxels=args.min_voxels,
            exclude_border=args.exclude_border,
            filopodia=args.filopodia,
            dataset=args.dataset,
            block_slices=args.block_slices,
        )

    @property
    def blockwise(self) -> bool:
        """Whether an OME-Zarr mask can be processed block by block (these options
        need the whole volume)."""
        return not (self.fill or self.separate or self.filopodia)

    def identity(self) -> dict:
        options = asdict(self)
        del options["block_slices"]  # does not change the result
        return {"command": "quantify", "options": options}


@dataclass(frozen=True)
class Measured:
    """The objects of one mask: ``table``, ``labels`` (in memory, or None when they
    were written block by block or not kept), ``filopodia`` tables, ``voxel`` size."""

    table: Any
    labels: Any
    filopodia: Any
    voxel: tuple[float, float, float]


def _require_3d(path, shape) -> None:
    from sxtquant.errors import InputError

    if shape[0] < 2:
        raise InputError(
            path, f"3D measurements require 3D input; got a single slice of shape {shape[1:]}"
        )


def measure_file(
    path,
    spec: QuantifySpec,
    *,
    scheduler=None,
    labels_out=None,
    work_dir=None,
    progress: bool = True,
) -> Measured:
    """Objects and their table for one mask file (block by block for OME-Zarr).

    An OME-Zarr mask whose options allow it goes through
    :func:`sxtquant.blockwise.quantify_blocks`: its labels are written to
    ``labels_out`` when that is an OME-Zarr path, else to a temporary OME-Zarr in
    ``work_dir`` (read back into ``Measured.labels`` if ``labels_out`` is given).
    """
    import numpy as np

    from sxtquant import blockwise, io
    from sxtquant.morphology import measure_objects
    from sxtquant.objects import is_label_volume, objects_from_mask
    from sxtquant.postprocess import fill_membranes

    if spec.blockwise and io.format_of(path) == "zarr":
        return _measure_blocks(path, spec, scheduler, labels_out, work_dir, progress)
    volume = io.read_volume(path, dataset=spec.dataset)
    _require_3d(path, volume.shape)
    voxel = volume.require_voxel_size(spec.voxel_size)
    data = blockwise.check_mask_values(np.asarray(volume.data), path)
    kind = spec.kind
    if kind == "auto":
        kind = "labels" if is_label_volume(data) else "mask"
    if spec.fill:
        data, kind = fill_membranes(data > 0, closing_radius=spec.closing_radius), "mask"
    elif kind == "mask":
        data = data > 0

    labels = objects_from_mask(
        data,
        voxel,
        is_labels=kind == "labels",
        separate=spec.separate,
        min_voxels=spec.min_voxels,
        exclude_border_objects=spec.exclude_border,
    )
    table = measure_objects(labels, voxel)
    filopodia = None
    if spec.filopodia:
        from sxtquant.filopodia import analyze

        filopodia = analyze(data, voxel, kind=kind)
    return Measured(table, labels, filopodia, voxel)


def _measure_blocks(path, spec, scheduler, labels_out, work_dir, progress) -> Measured:
    import os
    import shutil

    import numpy as np

    from sxtquant import blockwise, io

    volume, file_voxel = blockwise.open_blocks(path, block_slices=spec.block_slices)
    _require_3d(path, volume.shape)
    voxel = io.Volume(np.empty(0), file_voxel, Path(path)).require_voxel_size(spec.voxel_size)
    in_place = labels_out is not None and str(labels_out).lower().endswith(io.ZARR_SUFFIXES)
    if in_place:
        labels_path = Path(labels_out)
    else:
        folder = Path(work_dir) if work_dir is not None else Path.cwd()
        labels_path = folder / f".{io.volume_stem(path)}.labels-{os.getpid()}.ome.zarr"
    try:
        table, _ = blockwise.quantify_blocks(
            volume,
            voxel,
            labels_path,
            is_labels={"auto": None, "mask": False, "labels": True}[spec.kind],
            min_voxels=spec.min_voxels,
            exclude_border=spec.exclude_border,
            scheduler=scheduler,
            source=path,
            progress=progress,
        )
        labels = None
        if labels_out is not None and not in_place:  # another format: through memory
            labels = np.asarray(io.open_ome_zarr(labels_path)[0][...])
    finally:
        if not in_place:
            shutil.rmtree(labels_path, ignore_errors=True)
    return Measured(table, labels, None, voxel)


def run(args: argparse.Namespace) -> int:
    from sxtquant import batch
    from sxtquant.errors import InputError

    scheduler = batch.check_batch_options(args)
    if args.min_voxels < 0:
        raise InputError("--min-voxels", f"must be >= 0, got {args.min_voxels}")
    if args.closing_radius < 0:
        raise InputError("--closing-radius", f"must be >= 0, got {args.closing_radius}")
    out = Path(args.output)
    if out.is_dir():
        raise InputError(out, "is a folder; give the name of the table file, e.g. objects.csv")
    if args.voxel_size is not None:
        from sxtquant.utils import as_voxel_size

        try:
            as_voxel_size(args.voxel_size)
        except ValueError as exc:
            raise InputError("--voxel-size", str(exc)) from None
    inputs = batch.expand_inputs(args.masks, skip=(".probability",))
    spec = QuantifySpec.from_args(args)
    if not inputs.collection:
        return _run_single(inputs.paths[0], out, args, spec, scheduler)
    return _run_batch(inputs, out, args, spec, scheduler)


def _run_single(path, out: Path, args, spec: QuantifySpec, scheduler) -> int:
    from sxtquant import batch, io
    from sxtquant.io import write_table, write_volume

    if args.labels_out:
        _check_volume_suffix(args.labels_out)
    blocks = spec.blockwise and io.format_of(path) == "zarr"
    where = scheduler if blocks else batch.SchedulerSpec()
    with batch.connect(where) as client:
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
    report = [f"{out}: {len(table)} objects, voxel size {_voxel_text(voxel)}"]
    if filopodia is not None:
        per_path, summary_path = filopodia_paths(out)
        outputs.append((per_path, lambda path: write_table(filopodia[0], path)))
        outputs.append((summary_path, lambda path: write_table(filopodia[1], path)))
        report.append(f"{per_path}: {len(filopodia[0])} filopodia")
        report.append(f"{summary_path}: mean and SD per quantity")
    done = []
    if args.labels_out:
        if labels is not None:
            outputs.append((Path(args.labels_out), lambda p: write_volume(p, labels, voxel)))
        else:  # written block by block already
            done.append(Path(args.labels_out))
        dtype = labels.dtype if labels is not None else _stored_dtype(args.labels_out)
        report.append(f"{args.labels_out}: instance labels ({dtype})")
    _write_all(outputs, done)
    print("\n".join(report))
    return 0


def _stored_dtype(path):
    from sxtquant.io import open_ome_zarr

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


def tomogram_name(path) -> str:
    """The ``tomogram`` of a mask in the tidy table: its name without format suffixes
    and without a trailing ``.mask`` (``cell.mask.tif`` -> ``cell``)."""
    from sxtquant.io import volume_stem

    stem = volume_stem(path)
    return stem[: -len(".mask")] if stem.lower().endswith(".mask") and stem != ".mask" else stem


def tidy(table, tomogram: str, voxel, source) -> Any:
    """``table`` with a first column ``tomogram`` and, last, the voxel size and source."""
    table = table.copy()
    table.insert(0, "tomogram", tomogram)
    for axis, size in zip("zyx", voxel, strict=True):
        table[f"voxel_size_{axis}_nm"] = float(size)
    table["source"] = str(source)
    return table


def _labels_file(labels_dir, path, spec: QuantifySpec) -> Path | None:
    from sxtquant import io

    if labels_dir is None:
        return None
    suffix = ".ome.zarr" if spec.blockwise and io.format_of(path) == "zarr" else ".tif"
    return Path(labels_dir) / f"{tomogram_name(path)}.labels{suffix}"


def quantify_job(path, spec: QuantifySpec, labels_dir=None, work_dir=None, *, scheduler=None):
    """One mask of a batch (a Dask task): its tidy table, filopodia tables and labels file.

    Returns
    -------
    sxtquant.batch.JobResult
        ``value``: ``{"table": ..., "filopodia": (per, summary) or None}``.
    """
    from sxtquant.batch import JobResult
    from sxtquant.io import write_volume

    name = tomogram_name(path)
    labels_path = _labels_file(labels_dir, path, spec)
    measured = measure_file(
        path,
        spec,
        scheduler=scheduler,
        labels_out=labels_path,
        work_dir=work_dir,
        progress=scheduler is not None,
    )
    if labels_path is not None and measured.labels is not None:
        write_volume(labels_path, measured.labels, measured.voxel)
    filopodia = None
    if measured.filopodia is not None:
        filopodia = tuple(t.copy() for t in measured.filopodia)
        for table in filopodia:
            table.insert(0, "tomogram", name)
    value = {"table": tidy(measured.table, name, measured.voxel, path), "filopodia": filopodia}
    message = f"{path}: {len(measured.table)} objects, voxel size {_voxel_text(measured.voxel)}"
    return JobResult("ok", message, value)


def _batch_outputs(out: Path, spec: QuantifySpec, labels_files) -> tuple[Path, list[Path]]:
    base = out.with_suffix("") if out.suffix.lower() in (".csv", ".parquet") else out
    tables = [base.with_name(base.name + ".csv"), base.with_name(base.name + ".parquet")]
    if spec.filopodia:
        for path in filopodia_paths(tables[0]):
            tables += [path, path.with_suffix(".parquet")]
    return base, tables + [p for p in labels_files if p is not None]


def _run_batch(inputs, out: Path, args, spec: QuantifySpec, scheduler) -> int:
    import pandas as pd

    from sxtquant import batch, io
    from sxtquant.errors import InputError

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
    record = base.with_name(base.name + batch.RECORD_SUFFIX)
    summary = base.with_name(base.name + ".batch_summary.csv")
    identity = spec.identity() | {"labels_out": bool(labels_dir)}
    if not args.force and batch.record_matches(
        record, inputs=inputs.paths, outputs=outputs, identity=identity
    ):
        print(f"{outputs[0]}: up to date with its {len(inputs.paths)} masks")
        skipped = [batch.Outcome(str(p), "skipped", seconds=0.0) for p in inputs.paths]
        return batch.report(skipped, summary)

    if labels_dir is not None:
        labels_dir.mkdir(parents=True, exist_ok=True)
    zarr = [spec.blockwise and io.format_of(path) == "zarr" for path in inputs.paths]
    with batch.connect(scheduler) as client:
        # OME-Zarr masks are measured from here, their blocks spread over the workers;
        # the others are one task each. Workers get absolute paths.
        where = (lambda p: Path(p).absolute()) if client is not None else Path
        labels = where(labels_dir) if labels_dir is not None else None
        jobs = [
            batch.Job(
                str(path),
                quantify_job,
                (where(path), spec, labels, where(base.parent)),
                {"scheduler": client} if blocks else {},
            )
            for path, blocks in zip(inputs.paths, zarr, strict=True)
        ]
        ordered = batch.run_jobs(jobs, client, here=zarr, retries=args.retries)
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
            batch.write_record(record, inputs=inputs.paths, outputs=outputs, identity=identity)
    return batch.report(ordered, summary)


def _check_volume_suffix(path) -> None:
    from sxtquant.errors import InputError
    from sxtquant.io import HDF5_SUFFIXES, MRC_SUFFIXES, TIFF_SUFFIXES, ZARR_SUFFIXES

    suffixes = TIFF_SUFFIXES + MRC_SUFFIXES + ZARR_SUFFIXES + HDF5_SUFFIXES
    if not str(path).lower().endswith(suffixes):
        raise InputError(path, "unknown output type for --labels-out; use .tif, .mrc, .zarr or .h5")


def _voxel_text(voxel) -> str:
    return " x ".join(f"{v:g}" for v in voxel) + " nm (z, y, x)"
