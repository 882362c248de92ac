"""sxtquant evaluate: pixel metrics and expert-comparison classes of a prediction against truth.

PREDICTION is a probability map (float, values in [0, 1]; positive where the
probability is strictly greater than --threshold, the paper's 0.9) or a mask
(uint8 0/255, any integer or bool; positive where > 0, --threshold does not apply:
for a 0/255 mask that is the same as thresholding mask/255). TRUTH and the
--artifacts mask are positive where > 0. All volumes must have the same (z, y, x)
shape; a single 2D image is one slice.

The JSON holds the pixel-wise accuracy, precision, recall and F1 over the whole
volume (NaN, written as null, where undefined: e.g. precision with nothing
predicted), the counts tp/fp/fn/tn, and the expert-comparison classes of the
paper's Fig. 2D/E per z-slice with their mean and SD (ddof = 1):
true_positive = P and T, false_positive = P and not T and not A, artifact = P and
not T and A, false_negative = T and not P, in percent of the slice's labelled
pixels (they add up to 100; slices with none are left out). The artifact mask
changes only the classes. --tolerance D adds precision/recall/F1 that count a
pixel as matched when the other mask has a pixel within D voxels in its z-slice.

Example:
  sxtquant evaluate cell.probability.tif cell.labels.tif --artifacts gold.tif -o metrics.json
"""

from __future__ import annotations

import argparse

from sxtquant.core.defaults import THRESHOLD

HELP = "pixel metrics and expert-comparison classes of a prediction against truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant evaluate`."""
    parser.add_argument(
        "prediction",
        metavar="PREDICTION",
        help="probability map (float in [0, 1]) or mask (uint8 0/255 or bool)",
    )
    parser.add_argument("truth", metavar="TRUTH", help="truth mask (foreground > 0)")
    parser.add_argument(
        "--artifacts",
        metavar="MASK",
        help="mask of reconstruction-artifact regions (> 0); changes only the classes",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help="decision threshold on the probability, positive means > it (default: %(default)s)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        metavar="VOXELS",
        help="also report precision/recall/F1 with this boundary tolerance, in voxels (in-plane)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="METRICS.json",
        help="write the JSON here (default: print it to stdout)",
    )


def run(args: argparse.Namespace) -> int:

    from sxtquant import io
    from sxtquant.evaluate.scoring import evaluate_files

    result = evaluate_files(
        args.prediction,
        args.truth,
        args.artifacts,
        threshold=args.threshold,
        tolerance=args.tolerance,
    )
    if args.output:
        io.write_json(result, args.output)
        line = ", ".join(f"{k} {result[k]:.3f}" for k in ("accuracy", "precision", "recall", "f1"))
        if result.get("tolerance"):
            line += f"; F1 within {args.tolerance:g} voxels {result['tolerance']['f1']:.3f}"
        print(f"{args.output}: {line} ({result['n_slices']} slices)")
    else:
        print(io.json_text(result), end="")
    return 0
