"""sxtquant segment: segment membranes in tomograms with the network (probability + mask).

For each INPUT (MRC/REC/ST, TIFF, folder of TIFF slices, HDF5, OME-Zarr; a 2D
image is a one-slice volume) writes, in OUT_DIR:

  <stem>.probability.tif   float32 membrane probability in [0, 1]
  <stem>.mask.tif          uint8 mask, 255 where probability > --threshold
  <stem>.sxtquant.json     record: SHA-256 of the input and both outputs, the model
                           (name, folder, checksum) and the options

both images with the input's (z, y, x) shape and voxel size (nm). Every slice is
standardised (mean 0, SD 1) and segmented by tiles that overlap and are blended
without seams; the images are written one slice at a time. A network that sees
several slices (2.5D) gets each slice with its neighbours (reflected at the ends).

A network with region heads (trained with regions) also writes, from the same pass:

  <stem>.cell.probability.tif        float32 probability of the inside of the cell
  <stem>.organelles.probability.tif  float32 probability of the inside of an organelle

(listed in the record too). --axes zyx averages the predictions made with slices
along z, y and x (the volume whole in memory; for near-isotropic voxels).

An OME-Zarr INPUT (.zarr, .ome.zarr) is segmented block by block (--block-slices
slices at a time; never whole in memory, whatever its size) into
<stem>.probability.ome.zarr and <stem>.mask.ome.zarr instead (and
<stem>.<region>.probability.ome.zarr per region head); a 2.5D network's blocks read
their neighbouring slices, so the result is that of the whole volume. --axes is z only
for OME-Zarr.

A rerun skips every input whose record still matches (same input, model and
options; outputs present and unchanged) and redoes the others; --force redoes all.

INPUT may also be a folder of tomograms or a glob pattern (quoted: "data/*.mrc").
Given files only, every input is read and checked before any output is written
and a bad one stops the run (exit 2). A folder, a pattern or --scheduler makes it
a batch: each tomogram is one task, a failing one is reported and the others go
on; OUT_DIR/batch_summary.csv lists every input with its status (ok, failed,
skipped), error and seconds, and the exit code is 1 if any failed. With
--scheduler local:N or the address of a Dask scheduler the tasks run in
parallel on its workers, and an OME-Zarr tomogram's blocks are spread over them.

Examples:
  sxtquant segment cell.mrc -o seg/                       # shipped model, CPU or GPU
  sxtquant segment a.mrc b.tif -o seg/ --model my_model/  # a trained/converted checkpoint
  sxtquant segment cell.mrc -o seg/ --reference-rule      # the reference's tanh > 0 rule
  sxtquant segment cell.mrc -o seg/ --axes zyx --tta      # average over 3 axes x 8 symmetries
  sxtquant segment "session/*.mrc" -o seg/ --scheduler local:4
  sxtquant segment big.ome.zarr -o seg/ --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sxtquant.cli.options import (
    add_batch_options,
    add_device_option,
    check_batch_options,
    check_device,
)
from sxtquant.scale.segmentation import (
    MASK_RULES,
    SegmentSpec,
    model_reference,
    segment_file,
)

HELP = "segment membranes in tomograms with the network (probability + mask)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant segment`."""
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="tomograms (z, y, x) or 2D images to segment"
    )
    parser.add_argument(
        "-o",
        "--output",
        "--out-dir",
        dest="out_dir",
        default=".",
        metavar="OUT_DIR",
        help="folder for <stem>.probability.tif and <stem>.mask.tif (default: current folder)",
    )
    parser.add_argument(
        "--model",
        default="default",
        metavar="NAME_OR_PATH",
        help="checkpoint folder (from 'sxtquant train' or 'sxtquant convert') or the name of a "
        "shipped model (default: %(default)s)",
    )
    add_device_option(parser)
    parser.add_argument(
        "--threshold",
        type=float,
        default=SegmentSpec.threshold,
        metavar="P",
        help="mask = probability > P, strictly (default: %(default)s, the paper's)",
    )
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument(
        "--mask-rule",
        choices=MASK_RULES,
        default=SegmentSpec.mask_rule,
        help="'probability': probability > --threshold; 'tanh-positive': the reference "
        "implementation's rule, network output (tanh) > 0, i.e. probability > 0.5 "
        "(default: %(default)s)",
    )
    rule.add_argument(
        "--reference-rule",
        dest="mask_rule",
        action="store_const",
        const="tanh-positive",
        help="same as --mask-rule tanh-positive",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=SegmentSpec.tile,
        metavar="N",
        help="tile side in pixels, a multiple of 16 (default: %(default)s)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=SegmentSpec.overlap,
        metavar="N",
        help="minimum overlap of neighbouring tiles in pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=SegmentSpec.batch_size,
        metavar="N",
        help="tiles per network call (default: %(default)s)",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="average over 8 rotations/flips of every tile (8x slower, smoother)",
    )
    parser.add_argument(
        "--axes",
        default=SegmentSpec.axes,
        metavar="AXES",
        help="predict with the slices taken along each of these axes and average the "
        "probabilities: z (default: the network's own way, streamed slice by slice) or "
        "distinct letters of zyx, e.g. zyx (3x slower; the whole volume in memory; not for "
        "OME-Zarr; meant for near-isotropic voxels)",
    )
    parser.add_argument(
        "--z-smooth",
        type=int,
        default=SegmentSpec.z_smooth,
        metavar="SLICES",
        help="average the probability over +-SLICES slices before thresholding (the mask "
        "only; 2 = the paper's five slices; default 0: none)",
    )
    parser.add_argument(
        "--dataset", help="HDF5 only: path of the dataset inside the file (default: the only one)"
    )
    add_batch_options(
        parser,
        inputs="input",
        force_help="segment every input again, even where its record says it is up to date",
    )


def _check_options(args: argparse.Namespace, multiple: int) -> None:
    from sxtquant.core.errors import InputError
    from sxtquant.nn.tiling import check_axes

    try:
        check_axes(args.axes)
    except ValueError as error:
        raise InputError("--axes", str(error)) from None

    if not 0.0 <= args.threshold <= 1.0:
        raise InputError("--threshold", f"must be a probability in [0, 1], got {args.threshold}")
    if args.tile < multiple or args.tile % multiple:
        raise InputError("--tile", f"must be a positive multiple of {multiple}, got {args.tile}")
    if args.overlap < 0 or args.tile - args.overlap < multiple:
        raise InputError(
            "--overlap",
            f"must be >= 0 and at most --tile minus {multiple} ({args.tile - multiple}), "
            f"got {args.overlap}",
        )
    if args.batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {args.batch_size}")
    if args.z_smooth < 0:
        raise InputError("--z-smooth", f"must be >= 0 slices, got {args.z_smooth}")


def _spec(args: argparse.Namespace, model_identity: dict) -> SegmentSpec:
    """The options of ``args`` as the spec every tomogram's task gets."""
    threshold = args.threshold if args.mask_rule == "probability" else 0.5
    return SegmentSpec(
        model=model_reference(args.model),
        model_identity=model_identity,
        device=args.device,
        threshold=threshold,
        mask_rule=args.mask_rule,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        tta=args.tta,
        z_smooth=args.z_smooth,
        dataset=args.dataset,
        block_slices=args.block_slices,
        force=args.force,
        axes=args.axes,
    )


def run(args: argparse.Namespace) -> int:
    from sxtquant import io, scale
    from sxtquant.core.errors import InputError

    # everything is checked before the first output is written
    scheduler = check_batch_options(args)
    _check_options(args, 16)
    inputs = scale.expand_inputs(args.inputs)
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output folder is a file")
    stems: dict[str, str] = {}
    for path in inputs.paths:
        if args.axes != "z" and io.format_of(path) == "zarr":
            raise InputError(
                "--axes", f"{path} is OME-Zarr, segmented block by block along z: use z"
            )
        stem = io.volume_stem(path)
        if stem in stems:
            raise InputError(path, f"same output name '{stem}' as {stems[stem]}; segment it apart")
        stems[stem] = str(path)
    if scheduler.kind == "in-process":  # workers of a cluster may have a GPU this one lacks
        check_device(args.device)
    model = scale.cached_model(str(args.model))
    _check_options(args, model.config.multiple)
    spec = _spec(args, scale.model_identity(args.model))

    if args.scheduler is None and not inputs.expanded:
        # files named one by one: all read and checked first, then all or nothing
        for path in inputs.paths:
            if io.format_of(path) == "zarr":
                scale.open_blocks(path, block_slices=spec.block_slices)
            else:
                io.read_volume(path, dataset=args.dataset)
        for path in inputs.paths:
            print(segment_file(path, out_dir, spec).message, flush=True)
        return 0

    zarr = [io.format_of(path) == "zarr" for path in inputs.paths]
    with scale.connect(scheduler) as client:
        # OME-Zarr tomograms are segmented from here, their blocks spread over the
        # workers; the others are one task each. Workers get absolute paths.
        where = (lambda p: Path(p).absolute()) if client is not None else Path
        jobs = [
            scale.Job(
                str(path),
                segment_file,
                (where(path), where(out_dir), spec),
                {"scheduler": client} if blocks else {"progress": client is None},
            )
            for path, blocks in zip(inputs.paths, zarr, strict=True)
        ]
        ordered = scale.run_jobs(jobs, client, here=zarr, retries=args.retries)
    return scale.report(ordered, out_dir / scale.SUMMARY_FILE)
