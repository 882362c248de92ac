"""Import the reference implementation's Keras weights into sxtquant's network.

The reference implementation of the paper (github.com/noegroup/deep_sxt, TensorFlow)
publishes its trained network as a Keras ``save_weights`` HDF5 file
(``weights_semisupervised_2021_05.h5``, and a 2023 set). :func:`load_keras_weights`
reads such a file with h5py -- TensorFlow is not needed -- and returns
:class:`sxtquant.nn.network.SXTNet` with the same outputs (image and label heads) as the
reference model in inference mode.

How the mapping works
---------------------
The file stores one group per top-level Keras layer (``encoder``, ``mid_branch_0``,
``image_decoder``, ``label_decoder_final_batchnorm``...), and under it every weight by
its Keras path, e.g.::

    encoder/encoder_resnet_block_1_0/my_bottleneck_layer_3/conv2d_13/kernel:0

Layers the reference names itself (``encoder_resnet_block_1_0``) name our module
directly. Layers Keras numbered automatically (``my_bottleneck_layer_3``,
``conv2d_13``, ``batch_normalization_4``) carry session-wide counters that differ from
file to file; their rank among their siblings of the same kind (Keras numbers layers in
construction order) gives their place: the second bottleneck of the block, the second
convolution of that bottleneck. Every weight is thus mapped by its path, never by its
position in the file, and checked against the shape our module expects.

Conversions: ``Conv2D`` kernels (h, w, in, out) become (out, in, h, w);
``Conv2DTranspose`` kernels (h, w, out, in) become PyTorch ``ConvTranspose2d``
weights (in, out, h, w) -- both frameworks scatter input pixel ``i`` to outputs
``2 i + a`` with kernel tap ``a``, so there is no spatial flip; the alignment of the
'same' output (keep the first ``2 n`` rows) is done by the model's
``SameConvTranspose2d``. Batch norm: ``gamma``, ``beta``, ``moving_mean``,
``moving_variance`` become ``weight``, ``bias``, ``running_mean``, ``running_var``,
with Keras' epsilon 1e-3 (the file does not store it; the reference uses Keras'
default everywhere).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sxtquant.core.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["infer_config", "keras_weight_map", "load_keras_weights", "sha256_of"]

# Keras' BatchNormalization default epsilon, used by every batch norm of the reference.
KERAS_BN_EPS = 1e-3

# Layers Keras names by class with a session-wide counter: "conv2d", "conv2d_13"...
_AUTO_NAMED = re.compile(
    r"^(?P<kind>conv2d|batch_normalization|my_bottleneck_layer|my_activation_block)(?:_(?P<n>\d+))?$"
)

_LEAF = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}

# Canonical Keras layer path (auto-named layers replaced by "kind#rank") -> our module path,
# and how to name that Keras layer in a message. "d" ranks a bottleneck/activation in its
# block, "c" a convolution in its bottleneck (conv_1, conv_2, conv_3 in ours).
_BOTTLENECK = r"/(?:my_bottleneck_layer#(?P<d>\d+)/)?conv2d#(?P<c>\d+)"
_ACTIVATION = r"/(?:my_activation_block#(?P<d>\d+)/)?batch_normalization#0"
_IJ = r"(?P<i>\d+)_(?P<j>\d+)"
_DEC = r"(?P<dec>image|label)_decoder/(?P=dec)_decoder"
_CONV = "<conv2d #{c1}>"
_IN_BLOCK = "<my_bottleneck_layer #{d1}>/" + _CONV
_BN_IN_BLOCK = "<my_activation_block #{d1}>/<batch_normalization>"
_RULE_TABLE = [
    (
        r"encoder/encoder_initial_convolution" + _BOTTLENECK,
        "encoder.initial_conv.conv_{c1}",
        "encoder/encoder_initial_convolution/" + _CONV,
    ),
    (
        r"encoder/encoder_initial_activation" + _ACTIVATION,
        "encoder.initial_activation.batch_norm",
        "encoder/encoder_initial_activation/<batch_normalization>",
    ),
    (
        r"encoder/encoder_resnet_block_" + _IJ + _BOTTLENECK,
        "encoder.resnet_blocks.{i}.{j}.conv.{d}.conv_{c1}",
        "encoder/encoder_resnet_block_{i}_{j}/" + _IN_BLOCK,
    ),
    (
        r"encoder/encoder_resnet_block_" + _IJ + _ACTIVATION,
        "encoder.resnet_blocks.{i}.{j}.activation.{d}.batch_norm",
        "encoder/encoder_resnet_block_{i}_{j}/" + _BN_IN_BLOCK,
    ),
    (
        r"mid_branch_(?P<k>\d+)/mid_branch_(?P=k)_convolution_(?P<d>\d+)/conv2d#(?P<c>\d+)",
        "neck.paths.{k}.conv.{d}.conv_{c1}",
        "mid_branch_{k}/mid_branch_{k}_convolution_{d}/" + _CONV,
    ),
    (
        r"mid_branch_(?P<k>\d+)/mid_branch_(?P=k)_activation_(?P<d>\d+)/batch_normalization#0",
        "neck.paths.{k}.activation.{d}.batch_norm",
        "mid_branch_{k}/mid_branch_{k}_activation_{d}/<batch_normalization>",
    ),
    (
        _DEC + r"_transposed_convolution_(?P<i>\d+)",
        "{dec}_decoder.conv_t.{i}",
        "{dec}_decoder/{dec}_decoder_transposed_convolution_{i}",
    ),
    (
        _DEC + r"_resnet_block_" + _IJ + _BOTTLENECK,
        "{dec}_decoder.resnet_blocks.{i}.{j}.conv.{d}.conv_{c1}",
        "{dec}_decoder/{dec}_decoder_resnet_block_{i}_{j}/" + _IN_BLOCK,
    ),
    (
        _DEC + r"_resnet_block_" + _IJ + _ACTIVATION,
        "{dec}_decoder.resnet_blocks.{i}.{j}.activation.{d}.batch_norm",
        "{dec}_decoder/{dec}_decoder_resnet_block_{i}_{j}/" + _BN_IN_BLOCK,
    ),
    (
        _DEC + r"_final_convolution" + _BOTTLENECK,
        "{dec}_decoder.final_conv.conv_{c1}",
        "{dec}_decoder/{dec}_decoder_final_convolution/" + _CONV,
    ),
    (
        _DEC + r"_final_activation" + _ACTIVATION,
        "{dec}_decoder.final_activation.batch_norm",
        "{dec}_decoder/{dec}_decoder_final_activation/<batch_normalization>",
    ),
    (
        r"image_decoder_final_convolution_(?P<n>\d+)" + _BOTTLENECK,
        "image_decoder.head.{n}.conv_{c1}",
        "image_decoder_final_convolution_{n}/" + _CONV,
    ),
    (
        r"label_decoder_final_batchnorm",
        "label_decoder.head_batch_norm",
        "label_decoder_final_batchnorm",
    ),
    (
        r"label_decoder_final_convolution_1" + _BOTTLENECK,
        "label_decoder.head_conv_1.conv_{c1}",
        "label_decoder_final_convolution_1/" + _CONV,
    ),
    (
        r"label_decoder_final_convolution_2",
        "label_decoder.head_conv_2",
        "label_decoder_final_convolution_2",
    ),
]
_RULES = [(re.compile(p + "$"), t) for p, t, _ in _RULE_TABLE]


def _template_pattern(template: str) -> re.Pattern[str]:
    """A regex matching what ``template.format(...)`` produces, fields captured by name."""
    pattern = re.escape(template)
    for name in re.findall(r"\\\{(\w+)\\\}", pattern):
        group = r"(?P<dec>image|label)" if name == "dec" else rf"(?P<{name}>\d+)"
        pattern = pattern.replace(rf"\{{{name}\}}", group, 1)
    return re.compile(pattern + r"\.(?P<leaf>\w+)$")


_REVERSE = [(_template_pattern(t), k) for _, t, k in _RULE_TABLE]
_KERAS_LEAF = {
    "weight": "kernel|gamma",
    "bias": "bias|beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}


def _keras_location(key: str) -> str:
    """Where the reference would store the weight of our state-dict ``key`` (for messages)."""
    for pattern, template in _REVERSE:
        m = pattern.match(key)
        if m:
            fields = m.groupdict()
            if "d" in fields:
                fields["d1"] = int(fields["d"]) + 1
            leaf = _KERAS_LEAF.get(fields["leaf"], fields["leaf"])
            if "batch_norm" not in key:
                leaf = leaf.split("|")[0]
            elif "|" in leaf:
                leaf = leaf.split("|")[1]
            return template.format(**fields) + "/" + leaf
    return key


@dataclasses.dataclass(frozen=True)
class KerasWeight:
    """One weight of a Keras HDF5 file, located by structure."""

    path: str  # the Keras weight name in the file, e.g. "encoder/.../conv2d_13/kernel:0"
    target: str | None  # the state-dict key of sxtquant's network, None if it has none
    value: np.ndarray  # as stored (Keras layout)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_keras_h5(h5_path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """(weight name, array) for every weight of a Keras HDF5 weights file, in file order."""
    import h5py

    path = Path(h5_path)
    if not path.is_file():
        raise InputError(path, "no such weights file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(path, f"not a readable HDF5 file ({exc})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f  # a whole-model .h5 file
        if "layer_names" not in root.attrs:
            hint = (
                " (this is the Keras 3 '.weights.h5' layout; save with a name ending in '.h5')"
                if "layers" in root and "vars" in root
                else ""
            )
            raise InputError(path, f"not a Keras save_weights HDF5 file: no 'layer_names'{hint}")
        weights = []
        for layer in _names(root.attrs["layer_names"]):
            group = root[layer]
            names = _names(group.attrs.get("weight_names", []))
            for name in names:
                try:
                    value = np.asarray(group[name], dtype=np.float32)
                except (KeyError, OSError, TypeError, ValueError) as exc:
                    raise InputError(path, f"weight {name!r} cannot be read ({exc})") from None
                weights.append((_strip_prefix(name, layer), value))
    if not weights:
        raise InputError(path, "the Keras weights file holds no weights")
    return weights


def _names(attr) -> list[str]:
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in attr]


def _strip_prefix(name: str, layer: str) -> str:
    """Drop a model-name prefix some Keras versions put before the layer's own name."""
    parts = name.split("/")
    if layer in parts:
        parts = parts[parts.index(layer) :]
    return "/".join(parts)


def _canonical_paths(names: list[str]) -> dict[str, tuple[str, str]]:
    """Map each weight name to (canonical layer path, leaf): auto-numbered layers get ranks.

    ``encoder/encoder_resnet_block_0_0/my_bottleneck_layer_1/conv2d_7/kernel:0`` becomes
    ``("encoder/encoder_resnet_block_0_0/my_bottleneck_layer#1/conv2d#1", "kernel")``:
    the second bottleneck of that block, the second convolution of that bottleneck.
    """
    split = {}
    siblings: dict[tuple[tuple[str, ...], str], set[int]] = defaultdict(set)
    for name in names:
        parts = name.split(":")[0].split("/")
        split[name] = parts
        for depth, part in enumerate(parts[:-1]):
            m = _AUTO_NAMED.match(part)
            if m:
                siblings[(tuple(parts[:depth]), m["kind"])].add(int(m["n"] or 0))
    ranks = {key: {n: r for r, n in enumerate(sorted(ns))} for key, ns in siblings.items()}
    out = {}
    for name, parts in split.items():
        canon = []
        for depth, part in enumerate(parts[:-1]):
            m = _AUTO_NAMED.match(part)
            if m:
                rank = ranks[(tuple(parts[:depth]), m["kind"])][int(m["n"] or 0)]
                part = f"{m['kind']}#{rank}"
            canon.append(part)
        out[name] = ("/".join(canon), parts[-1])
    return out


def _target(layer_path: str, leaf: str) -> str | None:
    """The state-dict key of sxtquant's network for a canonical Keras path, or None."""
    if leaf not in _LEAF:
        return None
    for pattern, template in _RULES:
        m = pattern.match(layer_path)
        if m:
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            if "c" in groups:
                groups["c1"] = int(groups["c"]) + 1
            if "{d}" in template and "d" not in groups:
                return None  # a bottleneck/activation outside its block: not a reference layout
            return template.format(**groups) + "." + _LEAF[leaf]
    return None


def keras_weight_map(h5_path: str | os.PathLike) -> list[KerasWeight]:
    """Every weight of a reference Keras weights file and the sxtquant key it maps to.

    Parameters
    ----------
    h5_path : path
        A Keras ``save_weights`` HDF5 file of the reference network.

    Returns
    -------
    list of KerasWeight
        In file order; ``target`` is None for a weight our network has no place for.
    """
    weights = _read_keras_h5(h5_path)
    canon = _canonical_paths([name for name, _ in weights])
    return [KerasWeight(name, _target(*canon[name]), value) for name, value in weights]


def _to_torch_layout(value: np.ndarray) -> np.ndarray:
    """Keras layout -> PyTorch layout (kernels); vectors pass through."""
    if value.ndim == 4:
        # Conv2D (h, w, in, out) -> (out, in, h, w);
        # Conv2DTranspose (h, w, out, in) -> ConvTranspose2d (in, out, h, w): the same permutation
        return np.ascontiguousarray(value.transpose(3, 2, 0, 1))
    return value


def infer_config(h5_path: str | os.PathLike):
    """The :class:`~sxtquant.nn.config.ModelConfig` of the network stored in a Keras weights file.

    Reads the structure (stages, blocks, neck paths) from the layer names and the widths
    and kernel sizes from the kernel shapes, so files of any width convert without
    naming a preset.
    """
    return _config_of(keras_weight_map(h5_path), h5_path)


def _config_of(weights: list[KerasWeight], h5_path):
    from sxtquant.nn.config import ModelConfig

    keys = {w.target: w.value for w in weights if w.target is not None}

    def shape(key: str) -> tuple[int, ...]:
        if key not in keys:
            raise InputError(h5_path, f"not the reference network: no weight for {key}")
        return keys[key].shape

    def count(pattern: str) -> int:
        found = {m[1] for k in keys if (m := re.match(pattern, k))}
        return len(found)

    width = shape("encoder.initial_conv.conv_3.weight")[-1]
    neck_paths = count(r"neck\.paths\.(\d+)\.")
    neck_out = shape("neck.paths.0.conv.0.conv_3.weight")[-1]
    return ModelConfig(
        width=width,
        n_stages=count(r"encoder\.resnet_blocks\.(\d+)\."),
        kernel_size=shape("encoder.initial_conv.conv_2.weight")[0],
        neck_kernel_sizes=tuple(
            shape(f"neck.paths.{k}.conv.0.conv_2.weight")[0] for k in range(neck_paths)
        ),
        neck_depth=count(r"neck\.paths\.0\.conv\.(\d+)\."),
        neck_width_factor=max(1, neck_out // width),
        encoder_blocks=count(r"encoder\.resnet_blocks\.0\.(\d+)\."),
        image_decoder_blocks=count(r"image_decoder\.resnet_blocks\.0\.(\d+)\."),
        label_decoder_blocks=count(r"label_decoder\.resnet_blocks\.0\.(\d+)\."),
        block_depth=count(r"encoder\.resnet_blocks\.0\.0\.conv\.(\d+)\."),
        bn_eps=KERAS_BN_EPS,
    )


def _resolve_config(h5_path, preset_or_config, weights: list[KerasWeight]):
    from sxtquant.nn.config import PRESETS, ModelConfig

    if isinstance(preset_or_config, str) and preset_or_config == "auto":
        config = _config_of(weights, h5_path)
    elif isinstance(preset_or_config, ModelConfig):
        config = preset_or_config
    elif isinstance(preset_or_config, Mapping):
        # our ModelConfig dict, or a config in the reference's JSON layout ("m_f", "encoder"...)
        if "m_f" in preset_or_config:
            config = ModelConfig.from_reference_dict(preset_or_config)
        else:
            config = ModelConfig.from_dict(preset_or_config)
    elif isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise InputError(
                preset_or_config,
                f"unknown model preset; choose one of {', '.join(PRESETS)} or 'auto'",
            )
        config = PRESETS[preset_or_config]
    else:
        raise TypeError(f"expected a preset name or a ModelConfig, got {type(preset_or_config)!r}")
    # The file does not store epsilon; every batch norm of the reference uses Keras' default.
    return dataclasses.replace(config, bn_eps=KERAS_BN_EPS)


def load_keras_weights(
    h5_path: str | os.PathLike, preset_or_config: Any = "paper"
) -> torch.nn.Module:
    """The network of a reference Keras weights file, in eval mode.

    Parameters
    ----------
    h5_path : path
        The reference implementation's Keras ``save_weights`` HDF5 file, e.g. the
        published ``weights_semisupervised_2021_05.h5``.
    preset_or_config : str or ModelConfig or dict
        The architecture the file was saved from: a preset name (``paper``, m = 64, the
        published network), ``"auto"`` (read from the file itself), a
        :class:`~sxtquant.nn.config.ModelConfig` or its dict, or a config dict in the
        reference's JSON layout (``network_params/model_config_*.json``).

    Returns
    -------
    SXTNet
        In eval mode. ``model(x)`` on standardised slices ``x`` (N, 1, H, W), H and W
        multiples of 16, gives ``(image, label)`` equal to the reference's
        ``model(x, training=False)`` (channels last there) to 1e-4.

    Raises
    ------
    InputError
        The file is missing, not a Keras HDF5 weights file, or a weight does not fit
        the architecture: the message names the first such weight (missing, unexpected
        or of the wrong shape).

    Examples
    --------
    >>> model = load_keras_weights("weights_semisupervised_2021_05.h5")  # doctest: +SKIP
    >>> x = torch.from_numpy(standardize_slices(slices))[:, None]  # doctest: +SKIP
    >>> image, label = model(x)  # doctest: +SKIP
    """
    import torch

    from sxtquant.nn.network import SXTNet

    weights = keras_weight_map(h5_path)
    config = _resolve_config(h5_path, preset_or_config, weights)
    model = SXTNet(config)
    state = model.state_dict()
    expected = {k for k in state if not k.endswith("num_batches_tracked")}
    loaded: dict[str, torch.Tensor] = {}
    hint = _HINT
    for weight in weights:
        if weight.target is None or weight.target not in expected:
            raise InputError(
                h5_path,
                f"weight {weight.path!r} {weight.value.shape} has no place in the "
                f"{_describe(config)} network{hint}",
            )
        if weight.target in loaded:
            raise InputError(h5_path, f"weight {weight.path!r} appears twice in the file")
        value = _to_torch_layout(weight.value)
        want = tuple(state[weight.target].shape)
        if value.shape != want:
            raise InputError(
                h5_path,
                f"weight {weight.path!r} has shape {weight.value.shape} but the "
                f"{_describe(config)} network needs {want} (PyTorch layout) for "
                f"{weight.target}{hint}",
            )
        loaded[weight.target] = torch.from_numpy(value)
    missing = [k for k in state if k in expected and k not in loaded]
    if missing:
        raise InputError(
            h5_path,
            f"weight {_keras_location(missing[0])!r} is missing ({len(missing)} missing in "
            f"all), needed for {missing[0]} of the {_describe(config)} network{hint}",
        )
    with torch.no_grad():
        for key, value in loaded.items():
            state[key].copy_(value)
    return model.eval()


def _describe(config) -> str:
    return f"width-{config.width} (m = {config.width})"


_HINT = "; is it the right preset? ('auto' reads the architecture from the file)"
