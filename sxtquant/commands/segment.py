"""sxtquant segment: segment membranes in tomograms with the network (probability + mask).

For each INPUT (MRC/REC/ST, TIFF, folder of TIFF slices, HDF5, OME-Zarr; a 2D
image is a one-slice volume) writes, in OUT_DIR:

  <stem>.probability.tif   float32 membrane probability in [0, 1]
  <stem>.mask.tif          uint8 mask, 255 where probability > --threshold

both with the input's (z, y, x) shape and voxel size (nm). Every slice is
standardised (mean 0, SD 1) and segmented by tiles that overlap and are blended
without seams. Every input is read and checked before any output is written.

Examples:
  sxtquant segment cell.mrc -o seg/                       # shipped model, CPU or GPU
  sxtquant segment a.mrc b.tif -o seg/ --model my_model/  # a trained/converted checkpoint
  sxtquant segment cell.mrc -o seg/ --reference-rule      # the reference's tanh > 0 rule
"""

from __future__ import annotations

import argparse

HELP = "segment membranes in tomograms with the network (probability + mask)"

MASK_RULES = ("probability", "tanh-positive")
# the defaults of sxtquant.infer (not imported here: `sxtquant --help` must not load torch)
DEFAULT_TILE, DEFAULT_OVERLAP, DEFAULT_BATCH_SIZE = 256, 32, 4


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
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where the network runs; auto picks CUDA when present (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.9,
        metavar="P",
        help="mask = probability > P, strictly (default: %(default)s, the paper's)",
    )
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument(
        "--mask-rule",
        choices=MASK_RULES,
        default="probability",
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
        default=DEFAULT_TILE,
        metavar="N",
        help="tile side in pixels, a multiple of 16 (default: %(default)s)",
    )
    parser.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        metavar="N",
        help="minimum overlap of neighbouring tiles in pixels (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="tiles per network call (default: %(default)s)",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="average over 8 rotations/flips of every tile (8x slower, smoother)",
    )
    parser.add_argument(
        "--dataset", help="HDF5 only: path of the dataset inside the file (default: the only one)"
    )


def _check_options(args: argparse.Namespace, multiple: int) -> None:
    from sxtquant.errors import InputError

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


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from sxtquant import io
    from sxtquant.errors import InputError
    from sxtquant.infer import predict_volume, resolve_device
    from sxtquant.model import load_model

    # everything is checked before the first output is written
    _check_options(args, 16)
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise InputError("--device", str(exc)) from None
    model = load_model(args.model)
    _check_options(args, model.config.multiple)
    volumes = [io.read_volume(path, dataset=args.dataset) for path in args.inputs]
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output folder is a file")
    stems: dict[str, str] = {}
    for path in args.inputs:
        stem = io.volume_stem(path)
        if stem in stems:
            raise InputError(path, f"same output name '{stem}' as {stems[stem]}; segment it apart")
        stems[stem] = str(path)
    threshold = args.threshold if args.mask_rule == "probability" else 0.5

    for path, volume in zip(args.inputs, volumes, strict=True):
        stem = io.volume_stem(path)
        probability = predict_volume(
            model,
            volume.data,
            device=device,
            tile=args.tile,
            overlap=args.overlap,
            batch_size=args.batch_size,
            tta=args.tta,
            progress=True,
        )
        prob_path = io.write_probability(
            out_dir / f"{stem}.probability.tif", probability, volume.voxel_size_nm
        )
        mask = probability > np.float32(threshold)
        mask_path = io.write_mask(out_dir / f"{stem}.mask.tif", mask, volume.voxel_size_nm)
        fraction = float(mask.mean()) if mask.size else 0.0
        print(
            f"{path}: {prob_path}, {mask_path} "
            f"({volume.shape[0]} slices, {100 * fraction:.2f} % membrane)"
        )
        del probability, mask
    return 0
