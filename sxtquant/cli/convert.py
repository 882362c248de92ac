"""sxtquant convert: import the reference implementation's Keras weights as an sxtquant model.

Reads a Keras weights file of the reference implementation (github.com/noegroup/deep_sxt),
e.g. the published weights_semisupervised_2021_05.h5, without TensorFlow, and writes a
normal sxtquant checkpoint folder (config.json, weights.pt, metadata.json with the
source file and its SHA-256). Then segment with it:

    sxtquant convert weights_semisupervised_2021_05.h5 -o published_model
    sxtquant segment cell.mrc --model published_model -o out

The converted network gives the reference's outputs to 1e-4 (see docs/convert.md for
the reference's pre-processing and decision rules).
"""

from __future__ import annotations

import argparse

HELP = "import the reference implementation's Keras weights (.h5) as an sxtquant model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant convert`."""
    parser.add_argument("weights", metavar="WEIGHTS.h5", help="Keras save_weights HDF5 file")
    parser.add_argument(
        "-o", "--output", required=True, metavar="MODEL_DIR", help="checkpoint folder to write"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--preset",
        default="paper",
        help="architecture the weights belong to: paper (m = 64, the published network; "
        "default), base, small, tiny, or auto (read it from the file)",
    )
    group.add_argument(
        "--config",
        metavar="CONFIG.json",
        help="architecture as a JSON file: the reference's model_config_*.json or an "
        "sxtquant config.json",
    )


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sxtquant import __version__
    from sxtquant.core.errors import InputError
    from sxtquant.nn.checkpoint import save_checkpoint
    from sxtquant.nn.keras import load_keras_weights, sha256_of
    from sxtquant.nn.network import count_parameters

    architecture: object = args.preset
    if args.config is not None:
        try:
            architecture = json.loads(Path(args.config).read_text())
        except (OSError, ValueError) as exc:
            raise InputError(args.config, f"cannot read the config JSON ({exc})") from None
        if not isinstance(architecture, dict):
            raise InputError(args.config, "the config JSON must be an object")
    try:
        model = load_keras_weights(args.weights, architecture)
    except InputError:
        raise
    except (ValueError, TypeError) as exc:  # a config the network cannot be built from
        raise InputError(args.config or args.preset, str(exc)) from None

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    metadata = {
        "source": "keras",
        "source_file": str(Path(args.weights).resolve()),
        "source_sha256": sha256_of(args.weights),
        "reference": "github.com/noegroup/deep_sxt (MyDoubleDecoderNet)",
        "sxtquant_version": __version__,
        "trainable_parameters": count_parameters(model),
        "preprocessing": "per-slice standardisation (mean 0, SD 1)",
        "label": "tanh in [-1, 1]; probability = (label + 1) / 2; the reference's mask: "
        "label > 0 (probability > 0.5); the paper's threshold: probability > 0.9",
    }
    save_checkpoint(model, out, metadata=metadata)
    print(
        f"{args.weights}: {count_parameters(model):,} parameters "
        f"(m = {model.config.width}) -> {out}"
    )
    return 0
