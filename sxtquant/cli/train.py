"""sxtquant train: train the two-headed network semi-supervised (or supervised only).

DATA_DIR holds labelled pairs and, optionally, unlabelled slices:

  DATA_DIR/labeled/images/<name>.tif    2D slice or 3D stack (raw intensities)
  DATA_DIR/labeled/labels/<name>.tif    membrane labels, same name (> 0 = membrane)
  DATA_DIR/labeled/regions/<name>.tif   with --regions: 0 outside the cell, 1 cell
                                        interior, 2 organelle interior
  DATA_DIR/unlabeled/images/<name>.tif  optional: slices without labels

Training alternates supervised steps (label Huber loss + weighted image loss, all
weights) with unsupervised steps (image reconstruction loss, label decoder frozen),
as in Dyhr et al., PNAS 2023. 10 % of the labelled slices are held out for validation.
--in-slices K gives the network K adjacent slices (2.5D; needs 3D stacks, as written
by `sxtquant simulate --dataset --stacks`); --regions adds the cell-interior and
organelle-interior heads (`segment` then writes their probabilities too).

Writes OUT_DIR/best/ (the checkpoint with the lowest validation loss; use it with
`sxtquant segment --model OUT_DIR/best`), OUT_DIR/last/ (for --resume) and
OUT_DIR/log.csv (losses and validation pixel metrics per epoch).
"""

from __future__ import annotations

import argparse
import sys

from sxtquant.cli.options import add_device_option, check_device

PRESETS = ("tiny", "small", "base", "paper")  # sxtquant.train.PRESETS, without importing torch
HELP = "train the two-headed network semi-supervised (or supervised only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant train`."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="training data folder (see above)")
    parser.add_argument(
        "-o",
        "--output",
        dest="out_dir",
        metavar="OUT_DIR",
        required=True,
        help="folder for the checkpoints (best/, last/) and log.csv",
    )
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="paper",
        help="network width: paper (m = 64, 76.5 M parameters; needs a GPU), base (32), "
        "small (16), tiny (8) (default: paper)",
    )
    parser.add_argument(
        "--epochs", type=int, default=50, metavar="N", help="total number of epochs (default: 50)"
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=200,
        metavar="N",
        help="supervised steps per epoch (default: 200)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, metavar="N", help="crops per step (default: 8)"
    )
    parser.add_argument(
        "--crop",
        type=int,
        default=256,
        metavar="PX",
        help="side of the random training crops in pixels, a multiple of 16 (default: 256)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=1e-4,
        metavar="F",
        help="Adam learning rate (default: 1e-4; >= 1e-3 fails to train)",
    )
    parser.add_argument(
        "--membrane-weight",
        type=float,
        default=1.0,
        metavar="F",
        help="weight of membrane pixels in the label loss (default: 1, the paper's)",
    )
    parser.add_argument(
        "--bn-momentum",
        type=float,
        default=None,
        metavar="F",
        help="batch-norm momentum of a new network (default: the reference's 0.01; "
        "0.1 settles the running statistics faster in short runs)",
    )
    parser.add_argument(
        "--image-loss-weight",
        type=float,
        default=0.01,
        metavar="F",
        help="weight of the image loss in supervised steps (default: 0.01)",
    )
    parser.add_argument(
        "--unsupervised-ratio",
        type=float,
        default=1.0,
        metavar="F",
        help="unsupervised steps per supervised step (default: 1)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=10,
        metavar="N",
        help="stop after N epochs without a lower validation loss; "
        "0 never stops early (default: 10)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the initialisation, split and augmentation (default: 0)",
    )
    add_device_option(parser)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="data-loading processes (default: 0 on CPU, up to 8 on CUDA)",
    )
    parser.add_argument(
        "--supervised-only",
        action="store_true",
        help="train the U-Net branch on labelled data alone, no image loss "
        "(the paper's Fig. 2A ablation)",
    )
    parser.add_argument(
        "--init",
        metavar="MODEL",
        default=None,
        help="start from this trained model (a checkpoint folder, or 'default' for the "
        "shipped one) instead of random weights: fine-tune it on DATA_DIR; "
        "give its --preset",
    )
    parser.add_argument(
        "--dice-weight",
        type=float,
        default=0.0,
        metavar="F",
        help="add F x soft Dice loss to every label head's Huber loss (default: 0, the "
        "paper's; 1 keeps thin membranes and small organelles from fading to background)",
    )
    parser.add_argument(
        "--in-slices",
        type=int,
        default=1,
        metavar="K",
        help="adjacent z slices the network sees, odd (default: 1, the paper's 2D network; "
        "5 or 7: 2.5D context, needs 3D stacks)",
    )
    parser.add_argument(
        "--regions",
        action="store_true",
        help="also train cell-interior and organelle-interior heads on labeled/regions",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in OUT_DIR/last/ where it stopped"
    )


def run(args: argparse.Namespace) -> int:
    from sxtquant.core.errors import InputError
    from sxtquant.train.config import TrainConfig
    from sxtquant.train.data import load_training_data
    from sxtquant.train.loop import train

    try:
        config = TrainConfig(
            preset=args.preset,
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            crop=args.crop,
            lr=args.lr,
            image_loss_weight=args.image_loss_weight,
            unsupervised_ratio=args.unsupervised_ratio,
            patience=args.patience,
            seed=args.seed,
            supervised_only=args.supervised_only,
            device=args.device,
            num_workers=args.workers,
            bn_momentum=args.bn_momentum,
            membrane_weight=args.membrane_weight,
            init=args.init,
            in_slices=args.in_slices,
            regions=args.regions,
            dice_weight=args.dice_weight,
        )
    except ValueError as exc:
        raise InputError("options", str(exc)) from None
    check_device(args.device)
    data = load_training_data(args.data_dir, regions=args.regions)
    result = train(data, args.out_dir, config, resume=args.resume)
    best = result.log[result.best_epoch - 1] if result.best_epoch else None
    summary = f"trained {result.epochs_run} epochs"
    if result.stopped_early:
        summary += " (stopped early)"
    if best is not None:
        summary += (
            f"; best epoch {result.best_epoch}: validation loss {best['val_loss']:.4f}, "
            f"F1 {best['val_f1']:.3f}; model in {result.best_dir}"
        )
    sys.stdout.write(summary + "\n")
    return 0
