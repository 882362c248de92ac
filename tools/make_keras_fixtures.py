#!/usr/bin/env python3
"""Regenerate the Keras reference fixtures of ``sxtquant.nn.keras`` with the reference code itself.

Runs the reference implementation (github.com/noegroup/deep_sxt, TensorFlow) in a
throwaway environment: it is never imported by sxtquant or its tests, and its code is
not part of this repository. It builds the reference network ``MyDoubleDecoderNet``
with the published configuration (``paper``, m = 64) or the same structure at a
smaller width, gives it seeded random weights (batch-norm moving statistics
included, calibrated on data and then perturbed so that none is trivial), saves
them with Keras ``save_weights`` to HDF5, exactly as the published weights were
saved, and records the reference outputs (image head, label head) in eval mode
for a few fixed, per-slice standardised inputs.

Environment (outside the repository)::

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu tf-keras h5py
    git clone https://github.com/noegroup/deep_sxt /tmp/deep_sxt

Usage::

    /tmp/tfenv/bin/python tools/make_keras_fixtures.py --reference /tmp/deep_sxt \\
        --width 4 --out tests/fixtures/keras
    /tmp/tfenv/bin/python tools/make_keras_fixtures.py --reference /tmp/deep_sxt \\
        --width 64 --name paper --out /tmp/paper_fixture

``--reference`` defaults to the environment variable ``DEEP_SXT_REPO``.

Writes ``OUT/<name>_weights.h5`` (Keras ``save_weights`` output, in the legacy HDF5 layout
of the published files: a name ending in ``.weights.h5`` would select the Keras 3
layout) and ``OUT/<name>.reference.npz`` with, for each input case ``c``: ``c_input`` (N, 1, H, W),
``c_image`` and ``c_label`` (N, 1, H, W) float32, channels first like sxtquant; plus
``width`` and ``tf_version``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

# The reference is written for Keras 2 (tf.keras before TF 2.16): use tf-keras.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PUBLISHED_CONFIG = "network_params/model_config_semisupervised_2021_05.json"

# Input cases: name -> (N, H, W). Non-square sizes catch any H/W mix-up.
CASES = {"batch64": (2, 64, 64), "wide": (1, 48, 80), "tile256": (1, 256, 256)}


def scaled_config(published: dict, width: int) -> dict:
    """The published configuration with every filter count scaled from m = 64 to ``width``."""
    m0 = published["m_f"]
    config = copy.deepcopy(published)
    config["m_f"] = width
    for part in ("encoder", "decoder_image", "decoder_label"):
        config[part]["n_filters"] = [n * width // m0 for n in published[part]["n_filters"]]
    config["neck"]["n_filters"] = published["neck"]["n_filters"] * width // m0
    return config


def standardised_inputs(rng, n: int, h: int, w: int):
    """Smooth random images, each slice standardised to mean 0, SD 1 (the reference's rule)."""
    import numpy as np

    noise = rng.standard_normal((n, h + 8, w + 8))
    # a little spatial correlation, so the network sees structure and not only white noise
    kernel = np.ones(5) / 5
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 1, noise)
    smooth = np.apply_along_axis(lambda r: np.convolve(r, kernel, "same"), 2, smooth)
    smooth = smooth[:, 4 : 4 + h, 4 : 4 + w] + 0.3 * noise[:, 4 : 4 + h, 4 : 4 + w]
    mean = smooth.mean(axis=(1, 2), keepdims=True)
    sd = smooth.std(axis=(1, 2), keepdims=True)
    return ((smooth - mean) / sd).astype(np.float32)


def randomise(model, rng, calibration) -> None:
    """Seeded random weights; batch-norm moving statistics calibrated, then perturbed."""
    import numpy as np
    import tensorflow as tf

    for var in model.weights:
        name = var.name.split("/")[-1].split(":")[0]
        shape = tuple(var.shape)
        if name == "kernel":
            fan_in = int(np.prod(shape[:2])) * shape[2]
            if "transposed_convolution" in var.name:  # (h, w, out, in)
                fan_in = int(np.prod(shape[:2])) * shape[3]
            limit = np.sqrt(6.0 / fan_in)
            value = rng.uniform(-limit, limit, shape)
        elif name == "bias":
            value = 0.1 * rng.standard_normal(shape)
        elif name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "beta":
            value = 0.1 * rng.standard_normal(shape)
        elif name == "moving_mean":
            value = np.zeros(shape)
        elif name == "moving_variance":
            value = np.ones(shape)
        else:
            raise RuntimeError(f"unexpected weight {var.name}")
        var.assign(value.astype(np.float32))

    # Calibrate: with momentum 0 one training-mode pass sets each moving statistic to the
    # batch statistic, so eval-mode activations keep a sensible scale through the depth.
    bns = [
        layer
        for layer in _all_layers(model)
        if isinstance(layer, tf.keras.layers.BatchNormalization)
    ]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    model(calibration, training=True)
    for bn, momentum in zip(bns, momenta, strict=True):
        bn.momentum = momentum
        # then perturb, so that a converter that ignores them (or swaps them) fails
        mean = bn.moving_mean.numpy()
        var = bn.moving_variance.numpy()
        bn.moving_mean.assign(
            (mean + 0.1 * np.sqrt(var) * rng.standard_normal(mean.shape)).astype(np.float32)
        )
        bn.moving_variance.assign((var * rng.uniform(0.7, 1.4, var.shape)).astype(np.float32))


def normalise_heads(model, calibration) -> None:
    """Rescale the last convolution of each head so that outputs are O(1) and tanh not saturated.

    With random weights the heads come out with SDs of 10 or more, and a saturated tanh
    would make the label comparison blind; a fixture is only useful when both vary.
    """
    import tensorflow as tf

    image_conv = model.final_layers_image[-1].conv_3
    label_conv = model.final_layers_label[-1]
    label_conv.activation = tf.keras.activations.linear
    image, pre_tanh = model(calibration, training=False)
    label_conv.activation = tf.keras.activations.tanh
    for conv, out, target in ((image_conv, image, 1.0), (label_conv, pre_tanh, 1.5)):
        mean, sd = float(tf.reduce_mean(out)), float(tf.math.reduce_std(out))
        kernel, bias = conv.kernel, conv.bias
        kernel.assign(kernel * (target / sd))
        bias.assign((bias - mean) * (target / sd))


def _all_layers(layer):
    yield layer
    yield from layer._flatten_layers(include_self=False, recursive=True)


def build_reference(reference: str, width: int):
    """The reference's ``MyDoubleDecoderNet`` with the published config scaled to ``width``."""
    sys.path.insert(0, str(Path(reference).resolve()))
    from deep_sxt.models.double_decoder_cnn import MyDoubleDecoderNet

    published = json.loads(Path(reference, PUBLISHED_CONFIG).read_text())
    model = MyDoubleDecoderNet(config=scaled_config(published, width))
    model.build(input_shape=(None, 256, 256, 1))
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference",
        default=os.environ.get("DEEP_SXT_REPO"),
        help="checkout of github.com/noegroup/deep_sxt (default: $DEEP_SXT_REPO)",
    )
    parser.add_argument("--width", type=int, default=4, help="m, the base filter count (64: paper)")
    parser.add_argument("--name", default=None, help="file stem (default: m<width>)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=2023)
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated input cases among {', '.join(CASES)}",
    )
    args = parser.parse_args(argv)
    if not args.reference or not Path(args.reference, PUBLISHED_CONFIG).is_file():
        parser.error("--reference (or DEEP_SXT_REPO) must point to a deep_sxt checkout")

    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(args.seed)
    model = build_reference(args.reference, args.width)
    rng = np.random.default_rng(args.seed)
    calibration = standardised_inputs(rng, 2, 128, 128)[..., None]
    randomise(model, rng, calibration)
    normalise_heads(model, calibration)

    args.out.mkdir(parents=True, exist_ok=True)
    name = args.name or f"m{args.width}"
    weights = args.out / f"{name}_weights.h5"
    model.save_weights(str(weights))

    arrays = {"width": np.int64(args.width), "tf_version": np.str_(tf.__version__)}
    for case in args.cases.split(","):
        n, h, w = CASES[case]
        x = standardised_inputs(rng, n, h, w)
        image, label = model(x[..., None], training=False)
        arrays[f"{case}_input"] = x[:, None]
        arrays[f"{case}_image"] = np.moveaxis(image.numpy(), -1, 1)
        arrays[f"{case}_label"] = np.moveaxis(label.numpy(), -1, 1)
        lab = arrays[f"{case}_label"]
        print(
            f"{case}: image SD {arrays[f'{case}_image'].std():.3f}, "
            f"label mean {lab.mean():+.3f}, |label| > 0.99: {np.mean(np.abs(lab) > 0.99):.1%}"
        )
    np.savez_compressed(args.out / f"{name}.reference.npz", **arrays)
    n_params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    print(f"wrote {weights} ({n_params:,} trainable parameters) and {name}.reference.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
