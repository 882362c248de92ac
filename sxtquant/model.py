"""The two-headed network of the reference paper, in PyTorch.

The architecture is that of the reference TensorFlow/Keras implementation
(github.com/noegroup/deep_sxt, ``MyDoubleDecoderNet``) with its published
configuration (``network_params/model_config_semisupervised_2021_05.json``,
m = 64): a shared encoder, a "neck" of three parallel paths, an image decoder
(reconstructs the input, trained without labels) and a label decoder with U-Net
skip connections (the membrane label, tanh in [-1, 1]).

Building blocks, all mirroring the reference layer by layer so that its Keras
weights map onto these modules by structure (see ``docs/network.md``):

* :class:`Bottleneck` -- every convolution: 1x1 to half the channels, k x k,
  1x1 to the output channels, no non-linearity in between.
* :class:`Activation` -- batch norm, then ReLU.
* :class:`ResidualBlock` -- ``depth`` bottlenecks; the input is concatenated with
  the last bottleneck's output along the channels (channels accumulate), then
  batch norm + ReLU.
* :class:`Encoder`, :class:`NeckPath`, :class:`Decoder`.

Numerics follow Keras: 'same' padding puts the extra row/column of an even
kernel at the bottom/right; a stride-2 transposed convolution keeps the first
``2 n`` rows of its full output; batch norm uses epsilon 1e-3 and momentum 0.99
(PyTorch momentum 0.01).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# On a shared CPU, OpenMP threads that spin while waiting steal the cores from each
# other and from other processes (2-2.5x slower under load on 2 cores); passive
# waiting costs microseconds per layer. Read when torch loads, so it applies when
# sxtquant.model is imported first; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sxtquant.errors import InputError
from sxtquant.io import atomic_output

__all__ = [
    "PRESETS",
    "ModelConfig",
    "SXTNet",
    "build_model",
    "count_parameters",
    "flops_per_pixel",
    "flops_per_tile",
    "load_model",
    "prepare_for_inference",
    "save_checkpoint",
    "standardize_slices",
]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "models"
SHIPPED_MODELS = ("default",)

# Keras BatchNormalization defaults used by the reference (epsilon 1e-3, momentum 0.99).
KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # PyTorch convention: 1 - Keras momentum


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the two-headed network; a preset is one of these.

    Parameters
    ----------
    width : int
        m, the number of filters of the first encoder stage (paper: 64). Encoder
        stages have ``[m, m, 2m, 4m, 8m]`` filters, the neck ``16m``, the decoders
        ``[8m, 4m, 2m, m, m]``.
    n_stages : int
        Pooling stages of the encoder (and up-sampling stages of each decoder);
        input sizes must be multiples of ``2 ** n_stages``.
    kernel_size : int
        k of the k x k convolution inside every encoder/decoder bottleneck.
    neck_kernel_sizes : tuple of int
        One parallel neck path per kernel size (paper: 1, 2, 3).
    neck_depth : int
        Bottleneck + batch norm + ReLU layers per neck path.
    neck_width_factor : int
        Neck filters = ``neck_width_factor * width`` (paper: 16).
    encoder_blocks, image_decoder_blocks, label_decoder_blocks : int
        Residual blocks per stage (paper: 1, 1, 2).
    block_depth : int
        Bottlenecks per residual block (paper: 2).
    bn_eps, bn_momentum : float
        Batch-norm epsilon and (PyTorch-convention) momentum; Keras' defaults.
    """

    width: int = 64
    n_stages: int = 4
    kernel_size: int = 3
    neck_kernel_sizes: tuple[int, ...] = (1, 2, 3)
    neck_depth: int = 4
    neck_width_factor: int = 16
    encoder_blocks: int = 1
    image_decoder_blocks: int = 1
    label_decoder_blocks: int = 2
    block_depth: int = 2
    bn_eps: float = KERAS_BN_EPS
    bn_momentum: float = KERAS_BN_MOMENTUM

    def __post_init__(self):
        object.__setattr__(self, "neck_kernel_sizes", tuple(int(k) for k in self.neck_kernel_sizes))
        positive = {
            "width": self.width,
            "n_stages": self.n_stages,
            "kernel_size": self.kernel_size,
            "neck_depth": self.neck_depth,
            "neck_width_factor": self.neck_width_factor,
            "encoder_blocks": self.encoder_blocks,
            "image_decoder_blocks": self.image_decoder_blocks,
            "label_decoder_blocks": self.label_decoder_blocks,
            "block_depth": self.block_depth,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if not self.neck_kernel_sizes or min(self.neck_kernel_sizes) < 1:
            raise ValueError(
                f"ModelConfig.neck_kernel_sizes must be positive, got {self.neck_kernel_sizes!r}"
            )
        if not (self.bn_eps > 0 and 0 <= self.bn_momentum <= 1):
            raise ValueError("ModelConfig.bn_eps must be > 0 and bn_momentum in [0, 1]")

    # -- derived sizes
    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (``2 ** n_stages``)."""
        return 2**self.n_stages

    @property
    def encoder_filters(self) -> tuple[int, ...]:
        """Filters of the initial block and of each encoder stage: ``[m, m, 2m, 4m, ...]``."""
        m = self.width
        return (m, *(m * 2**i for i in range(self.n_stages)))

    @property
    def decoder_filters(self) -> tuple[int, ...]:
        """Filters of each decoder stage, then of the final bottleneck: ``[8m, 4m, 2m, m, m]``."""
        return (*reversed(self.encoder_filters[1:]), self.width)

    @property
    def neck_filters(self) -> int:
        return self.neck_width_factor * self.width

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        out["neck_kernel_sizes"] = list(self.neck_kernel_sizes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    def to_reference_dict(self) -> dict[str, Any]:
        """The same network as a config dict of the reference implementation.

        The layout of ``network_params/model_config_*.json`` in deep_sxt, so that
        the reference can build this very architecture (for example to generate
        test fixtures for the weight converter).
        """
        k = self.kernel_size
        ks = [k] * (self.n_stages + 1)
        common = {
            "activation": {"type": "relu"},
            "dropout": {"active": False},
            "batch_norm": {"active": True},
        }

        def decoder(blocks: int, skips: bool) -> dict[str, Any]:
            return {
                "kernel_sizes": list(ks),
                "n_stages": self.n_stages,
                "n_blocks": blocks,
                "block_depth": self.block_depth,
                "add_instead_of_concat": False,
                "use_skip_connections": skips,
                "n_filters": list(self.decoder_filters),
                **common,
            }

        return {
            "pooling": None,
            "m_f": self.width,
            "add_instead_of_concat_after_neck": False,
            "encoder": {
                "kernel_sizes": list(ks),
                "n_stages": self.n_stages,
                "n_blocks": self.encoder_blocks,
                "block_depth": self.block_depth,
                "add_instead_of_concat": False,
                "n_filters": list(self.encoder_filters),
                **common,
            },
            "neck": {
                "kernel_sizes": list(self.neck_kernel_sizes),
                "depth": self.neck_depth,
                "n_filters": self.neck_filters,
                **common,
            },
            "decoder_image": decoder(self.image_decoder_blocks, False),
            "decoder_label": decoder(self.label_decoder_blocks, True),
        }

    @classmethod
    def from_reference_dict(cls, ref: Mapping[str, Any]) -> ModelConfig:
        """Read a reference config (deep_sxt JSON layout) into a :class:`ModelConfig`.

        Raises
        ------
        ValueError
            If the reference config uses a feature this re-implementation does not
            have (additive skips, per-stage kernel sizes, other activations, dropout,
            filter counts that do not follow ``m, m, 2m, ...``).
        """
        try:
            m = int(ref["m_f"])
            enc, neck = ref["encoder"], ref["neck"]
            dimg, dlbl = ref["decoder_image"], ref["decoder_label"]
            n_stages = int(enc["n_stages"])
            kernel_sizes = {int(k) for part in (enc, dimg, dlbl) for k in part["kernel_sizes"]}
            config = cls(
                width=m,
                n_stages=n_stages,
                kernel_size=kernel_sizes.pop() if len(kernel_sizes) == 1 else -1,
                neck_kernel_sizes=tuple(int(k) for k in neck["kernel_sizes"]),
                neck_depth=int(neck["depth"]),
                neck_width_factor=int(neck["n_filters"]) // m,
                encoder_blocks=int(enc["n_blocks"]),
                image_decoder_blocks=int(dimg["n_blocks"]),
                label_decoder_blocks=int(dlbl["n_blocks"]),
                block_depth=int(enc["block_depth"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a reference model config: missing or bad {exc}") from exc
        problems = []
        pooling = ref.get("pooling") or {"type": "max_pooling", "factor": 2}
        if pooling != {"type": "max_pooling", "factor": 2}:
            problems.append(f"pooling {pooling}")
        if ref.get("add_instead_of_concat_after_neck"):
            problems.append("add_instead_of_concat_after_neck")
        if list(enc["n_filters"]) != list(config.encoder_filters):
            problems.append(f"encoder n_filters {enc['n_filters']}")
        if int(neck["n_filters"]) != config.neck_filters:
            problems.append(f"neck n_filters {neck['n_filters']}")
        for name, part, skips in (("decoder_image", dimg, False), ("decoder_label", dlbl, True)):
            if list(part["n_filters"]) != list(config.decoder_filters):
                problems.append(f"{name} n_filters {part['n_filters']}")
            if int(part["n_stages"]) != n_stages or int(part["block_depth"]) != config.block_depth:
                problems.append(f"{name} n_stages/block_depth")
            if bool(part.get("use_skip_connections")) != skips:
                problems.append(f"{name} use_skip_connections")
        for name, part in (("encoder", enc), ("neck", neck), ("decoder_image", dimg),
                           ("decoder_label", dlbl)):  # fmt: skip
            if part.get("add_instead_of_concat"):
                problems.append(f"{name} add_instead_of_concat")
            if (part.get("activation") or {}).get("type") != "relu":
                problems.append(f"{name} activation {part.get('activation')}")
            if (part.get("dropout") or {}).get("active"):
                problems.append(f"{name} dropout")
            if not (part.get("batch_norm") or {}).get("active", False):
                problems.append(f"{name} without batch norm")
        if problems:
            raise ValueError("reference config not supported: " + "; ".join(problems))
        return config


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(width=64),
    "base": ModelConfig(width=32),
    "small": ModelConfig(width=16),
    "tiny": ModelConfig(width=8),
}


def _as_config(preset_or_config: str | ModelConfig | Mapping[str, Any]) -> ModelConfig:
    if isinstance(preset_or_config, ModelConfig):
        return preset_or_config
    if isinstance(preset_or_config, str):
        try:
            return PRESETS[preset_or_config]
        except KeyError:
            raise ValueError(
                f"unknown model preset {preset_or_config!r}; choose one of {', '.join(PRESETS)}"
            ) from None
    if isinstance(preset_or_config, Mapping):
        return ModelConfig.from_dict(preset_or_config)
    raise TypeError(f"expected a preset name or a ModelConfig, got {type(preset_or_config)!r}")


# --------------------------------------------------------------------------- layers


class SamePadConv2d(nn.Conv2d):
    """Stride-1 convolution with Keras/TensorFlow 'same' padding.

    Odd kernels pad symmetrically; even kernels pad one more row/column at the
    bottom/right than at the top/left, as TensorFlow does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool):
        total = kernel_size - 1
        before, after = total // 2, total - total // 2
        symmetric = before == after
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            padding=before if symmetric else 0,
            bias=bias,
        )
        # (left, right, top, bottom) for F.pad when the padding is asymmetric
        self.same_pad = None if symmetric else (before, after, before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_pad is not None:
            x = F.pad(x, self.same_pad)
        return super().forward(x)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """Transposed convolution with Keras 'same' padding: output = stride x input.

    TensorFlow keeps rows ``[p, p + stride * n)`` of the full transposed output
    (``(n - 1) * stride + k`` rows), ``p = max(k - stride, 0) // 2`` -- for k = 3,
    stride 2 the first ``2 n`` rows. PyTorch's symmetric ``padding`` cannot express
    that, so the full output is computed and cropped (or zero-extended, plus bias,
    when k < stride).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=True)
        self.crop_before = max(kernel_size - stride, 0) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.stride[0]
        k = self.kernel_size[0]
        if k >= s:
            y = super().forward(x)
            p = self.crop_before
            return y[..., p : p + s * h, p : p + s * w]
        extra = s - k  # rows that receive no input contribution: bias only
        return F.conv_transpose2d(
            x,
            self.weight,
            self.bias,
            stride=s,
            output_padding=extra,
        )


class Bottleneck(nn.Module):
    """1x1 (to half the channels) -> k x k -> 1x1 (to ``out_channels``); linear.

    Keras: ``MyBottleneckLayer`` with its ``conv_1``, ``conv_2``, ``conv_3``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool):
        super().__init__()
        reduced = max(1, out_channels // 2)
        self.conv_1 = nn.Conv2d(in_channels, reduced, 1, bias=bias)
        self.conv_2 = SamePadConv2d(reduced, reduced, kernel_size, bias=bias)
        self.conv_3 = nn.Conv2d(reduced, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_3(self.conv_2(self.conv_1(x)))


class Activation(nn.Module):
    """Batch norm then ReLU (Keras: ``MyActivationBlock``)."""

    def __init__(self, channels: int, config: ModelConfig):
        super().__init__()
        self.batch_norm = nn.BatchNorm2d(channels, eps=config.bn_eps, momentum=config.bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.batch_norm(x))


class ResidualBlock(nn.Module):
    """Concatenating residual block (Keras: ``MyResNetBlock``).

    ``depth`` bottlenecks with ``filters`` outputs, batch norm + ReLU between them;
    the block's input is concatenated (first) with the last bottleneck's output,
    then batch norm + ReLU over all ``in_channels + filters`` channels.
    """

    def __init__(
        self, in_channels: int, filters: int, kernel_size: int, depth: int, config: ModelConfig
    ):
        super().__init__()
        self.conv = nn.ModuleList()
        self.activation = nn.ModuleList()
        channels = in_channels
        for i in range(depth):
            self.conv.append(Bottleneck(channels, filters, kernel_size, bias=False))
            last = i == depth - 1
            self.activation.append(Activation(in_channels + filters if last else filters, config))
            channels = filters
        self.out_channels = in_channels + filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv, act in zip(self.conv[:-1], self.activation[:-1], strict=True):
            y = act(conv(y))
        y = self.conv[-1](y)
        return self.activation[-1](torch.cat([x, y], dim=1))


class Encoder(nn.Module):
    """Initial bottleneck + activation, then per stage residual blocks and 2x2 max pooling.

    Keras: ``encoder`` (``MyEncoderBlock``). ``forward`` returns the pooled features
    and the skip tensors, deepest first (as the reference's ``skip_x.reverse()``).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        filters = config.encoder_filters
        k = config.kernel_size
        self.initial_conv = Bottleneck(1, filters[0], k, bias=True)
        self.initial_activation = Activation(filters[0], config)
        self.resnet_blocks = nn.ModuleList()
        channels = filters[0]
        self.skip_channels = []
        for i in range(config.n_stages):
            stage = nn.ModuleList()
            for _ in range(config.encoder_blocks):
                block = ResidualBlock(channels, filters[i + 1], k, config.block_depth, config)
                stage.append(block)
                channels = block.out_channels
            self.resnet_blocks.append(stage)
            self.skip_channels.append(channels)
        self.skip_channels.reverse()
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.initial_activation(self.initial_conv(x))
        skips = []
        for stage in self.resnet_blocks:
            for block in stage:
                x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        skips.reverse()
        return x, skips


class NeckPath(nn.Module):
    """One neck path: ``depth`` x (bottleneck with kernel k, batch norm, ReLU).

    Keras: ``mid_branch_<i>`` (``MyMidBranchBlock``).
    """

    def __init__(self, in_channels: int, kernel_size: int, config: ModelConfig):
        super().__init__()
        self.conv = nn.ModuleList()
        self.activation = nn.ModuleList()
        channels = in_channels
        for _ in range(config.neck_depth):
            self.conv.append(Bottleneck(channels, config.neck_filters, kernel_size, bias=False))
            self.activation.append(Activation(config.neck_filters, config))
            channels = config.neck_filters
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.conv, self.activation, strict=True):
            x = act(conv(x))
        return x


class Neck(nn.Module):
    """Parallel paths with different kernel sizes, concatenated along the channels."""

    def __init__(self, in_channels: int, config: ModelConfig):
        super().__init__()
        self.paths = nn.ModuleList(
            NeckPath(in_channels, k, config) for k in config.neck_kernel_sizes
        )
        self.out_channels = sum(p.out_channels for p in self.paths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([path(x) for path in self.paths], dim=1)


class Decoder(nn.Module):
    """Up-sampling decoder (Keras: ``MyDecoderBlock``) plus the model's head on it.

    Per stage: 2x transposed convolution, (with skips) concatenation
    ``[skip, x]``, residual blocks; then a bottleneck + batch norm + ReLU
    (``final_conv``, ``final_activation``). The head -- in the reference the
    model-level ``final_layers_image`` / ``final_layers_label`` -- belongs to this
    module so that the label decoder holds every label parameter:

    * image: ``head`` = three bottlenecks with bias (m, m, 1 outputs), linear.
    * label: ``head_batch_norm``, ``head_conv_1`` (bottleneck with bias, m outputs),
      ``head_conv_2`` (1x1 convolution to 1 channel) and tanh.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: list[int] | None,
        blocks: int,
        config: ModelConfig,
        *,
        kind: str,
    ):
        super().__init__()
        if kind not in ("image", "label"):
            raise ValueError(f"decoder kind must be 'image' or 'label', got {kind!r}")
        self.kind = kind
        self.use_skip_connections = skip_channels is not None
        filters = config.decoder_filters
        k = config.kernel_size
        m = config.width
        self.conv_t = nn.ModuleList()
        self.resnet_blocks = nn.ModuleList()
        channels = in_channels
        for i in range(config.n_stages):
            self.conv_t.append(SameConvTranspose2d(channels, filters[i], k, stride=2))
            channels = filters[i] + (skip_channels[i] if skip_channels is not None else 0)
            stage = nn.ModuleList()
            for _ in range(blocks):
                block = ResidualBlock(channels, filters[i], k, config.block_depth, config)
                stage.append(block)
                channels = block.out_channels
            self.resnet_blocks.append(stage)
        self.final_conv = Bottleneck(channels, filters[-1], k, bias=False)
        self.final_activation = Activation(filters[-1], config)
        if kind == "image":
            self.head = nn.ModuleList(
                [
                    Bottleneck(filters[-1], m, k, bias=True),
                    Bottleneck(m, m, k, bias=True),
                    Bottleneck(m, 1, k, bias=True),
                ]
            )
        else:
            self.head_batch_norm = nn.BatchNorm2d(
                filters[-1], eps=config.bn_eps, momentum=config.bn_momentum
            )
            self.head_conv_1 = Bottleneck(filters[-1], m, k, bias=True)
            self.head_conv_2 = nn.Conv2d(m, 1, 1, bias=True)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        for i, (conv_t, stage) in enumerate(zip(self.conv_t, self.resnet_blocks, strict=True)):
            x = conv_t(x)
            if self.use_skip_connections:
                assert skips is not None
                x = torch.cat([skips[i], x], dim=1)
            for block in stage:
                x = block(x)
        x = self.final_activation(self.final_conv(x))
        if self.kind == "image":
            for layer in self.head:
                x = layer(x)
            return x
        return torch.tanh(self.head_conv_2(self.head_conv_1(self.head_batch_norm(x))))


class SXTNet(nn.Module):
    """The two-headed network: ``forward(x) -> (image, label)``.

    Parameters
    ----------
    config : ModelConfig

    Notes
    -----
    ``x`` is a float32 tensor (N, 1, H, W) with H and W multiples of
    ``config.multiple`` (16 for every preset), standardised per slice (see
    :func:`standardize_slices`). ``image`` (N, 1, H, W) is the reconstructed
    input; ``label`` (N, 1, H, W) the membrane label, tanh in [-1, 1]
    (probability = (label + 1) / 2).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.neck = Neck(self.encoder.out_channels, config)
        self.image_decoder = Decoder(
            self.neck.out_channels, None, config.image_decoder_blocks, config, kind="image"
        )
        self.label_decoder = Decoder(
            self.neck.out_channels,
            self.encoder.skip_channels,
            config.label_decoder_blocks,
            config,
            kind="label",
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_input(x)
        features, skips = self.encoder(x)
        y = self.neck(features)
        return self.image_decoder(y), self.label_decoder(y, skips)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input of shape (N, 1, H, W), got {tuple(x.shape)}")
        mult = self.config.multiple
        if x.shape[-2] % mult or x.shape[-1] % mult:
            raise ValueError(
                f"input height and width must be multiples of {mult}, got {tuple(x.shape[-2:])}"
            )

    def forward_label(self, x: torch.Tensor) -> torch.Tensor:
        """The label head alone, (N, 1, H, W) tanh in [-1, 1]; the image decoder
        (27 % of the FLOPs, not needed to segment) is skipped."""
        self._check_input(x)
        features, skips = self.encoder(x)
        return self.label_decoder(self.neck(features), skips)


def build_model(preset_or_config: str | ModelConfig | Mapping[str, Any] = "paper") -> SXTNet:
    """Build the (untrained, randomly initialised) network.

    Parameters
    ----------
    preset_or_config : str or ModelConfig or dict
        A preset name (``paper``: m = 64, 76,483,502 trainable parameters;
        ``base``: 32; ``small``: 16; ``tiny``: 8), a :class:`ModelConfig`, or its dict.

    Returns
    -------
    SXTNet
        With ``.config``, ``.encoder``, ``.neck``, ``.image_decoder``, ``.label_decoder``.

    Examples
    --------
    >>> import torch
    >>> model = build_model("tiny").eval()
    >>> image, label = model(torch.zeros(1, 1, 32, 48))
    >>> tuple(label.shape)
    (1, 1, 32, 48)
    """
    config = _as_config(preset_or_config)
    model = SXTNet(config)
    _init_weights(model)
    return model


def _init_weights(model: nn.Module) -> None:
    # The reference uses He-uniform kernels and zero biases.
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            # fan_in as Keras computes it: k*k*in for Conv2D, k*k*filters for Conv2DTranspose
            ks = module.kernel_size[0] * module.kernel_size[1]
            fan_in = ks * (
                module.out_channels
                if isinstance(module, nn.ConvTranspose2d)
                else module.in_channels
            )
            bound = float(np.sqrt(6.0 / fan_in))
            nn.init.uniform_(module.weight, -bound, bound)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; batch-norm running statistics are buffers, not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- FLOPs


def flops_per_tile(
    preset_or_config: str | ModelConfig,
    tile: int | tuple[int, int] = 256,
    *,
    label_only: bool = False,
) -> int:
    """Analytic FLOPs (2 per multiply-add) of one forward pass on a tile.

    Counts convolutions and transposed convolutions (the latter over all their
    input pixels, as :class:`torch.utils.flop_counter.FlopCounterMode` does);
    batch norm, ReLU, pooling and bias additions are left out. ``label_only``:
    without the image decoder (:meth:`SXTNet.forward_label`, used to segment).
    """
    config = _as_config(preset_or_config)
    h, w = (tile, tile) if isinstance(tile, int) else tile
    if h % config.multiple or w % config.multiple:
        raise ValueError(f"tile sides must be multiples of {config.multiple}, got {(h, w)}")
    k = config.kernel_size
    total = 0

    def bottleneck(cin: int, cout: int, kernel: int, pixels: int) -> int:
        r = max(1, cout // 2)
        return 2 * pixels * (cin * r + r * r * kernel * kernel + r * cout)

    def block(cin: int, filters: int, pixels: int) -> int:
        macs, channels = 0, cin
        for _ in range(config.block_depth):
            macs += bottleneck(channels, filters, k, pixels)
            channels = filters
        return macs

    # encoder
    enc = config.encoder_filters
    px = h * w
    total += bottleneck(1, enc[0], k, px)
    channels = enc[0]
    skips = []
    for i in range(config.n_stages):
        for _ in range(config.encoder_blocks):
            total += block(channels, enc[i + 1], px)
            channels += enc[i + 1]
        skips.append(channels)
        px //= 4
    skips.reverse()
    # neck
    for kn in config.neck_kernel_sizes:
        cin = channels
        for _ in range(config.neck_depth):
            total += bottleneck(cin, config.neck_filters, kn, px)
            cin = config.neck_filters
    neck_out = config.neck_filters * len(config.neck_kernel_sizes)
    dec = config.decoder_filters
    decoders = [(config.label_decoder_blocks, True)]
    if not label_only:
        decoders.append((config.image_decoder_blocks, False))
    for blocks, use_skips in decoders:
        c, p = neck_out, px
        for i in range(config.n_stages):
            total += 2 * p * c * dec[i] * k * k  # transposed conv over its input pixels
            p *= 4
            c = dec[i] + (skips[i] if use_skips else 0)
            for _ in range(blocks):
                total += block(c, dec[i], p)
                c += dec[i]
        total += bottleneck(c, dec[-1], k, p)
        m = config.width
        if use_skips:
            total += bottleneck(dec[-1], m, k, p) + 2 * p * m
        else:
            total += bottleneck(dec[-1], m, k, p) + bottleneck(m, m, k, p) + bottleneck(m, 1, k, p)
    return total


def flops_per_pixel(
    preset_or_config: str | ModelConfig, tile: int = 256, *, label_only: bool = False
) -> float:
    """Analytic FLOPs per output pixel on a ``tile`` x ``tile`` tile (paper: ~2.3 MFLOP)."""
    return flops_per_tile(preset_or_config, tile, label_only=label_only) / float(tile * tile)


# --------------------------------------------------------------------------- inference helpers


def standardize_slices(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Per-slice standardisation to mean 0 and SD 1, over the last two axes.

    As the reference's ``image_preprocessing_function``: a slice whose SD is at
    most 1e-3 is only centred (not divided), so constant slices stay finite.

    Parameters
    ----------
    x : (..., H, W) ndarray or tensor
        One slice or a stack of slices.

    Returns
    -------
    Same type and shape, float32 (numpy) or the input's floating dtype (torch).
    """
    if isinstance(x, torch.Tensor):
        x = x.float() if not torch.is_floating_point(x) else x
        mean = x.mean(dim=(-2, -1), keepdim=True, dtype=torch.float64)
        sd = (x.double() - mean).square().mean(dim=(-2, -1), keepdim=True).sqrt()
        sd = torch.where(sd > 1e-3, sd, torch.ones_like(sd))
        return ((x.double() - mean) / sd).to(x.dtype)
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"expected (..., H, W) slices, got shape {arr.shape}")
    mean = arr.mean(axis=(-2, -1), keepdims=True, dtype=np.float64)
    centred = arr.astype(np.float64) - mean
    sd = np.sqrt(np.mean(centred * centred, axis=(-2, -1), keepdims=True))
    sd = np.where(sd > 1e-3, sd, 1.0)
    return (centred / sd).astype(np.float32)


def _fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode batch norm into the preceding convolution, in place."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() - bn.running_mean * scale
    _fold_affine(conv, scale, shift)


def _fold_affine(conv: nn.Conv2d, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make ``conv`` output ``scale * conv(x) + shift`` per channel, in place."""
    w = conv.weight.detach()
    conv.weight = nn.Parameter(w * scale.reshape(-1, 1, 1, 1), requires_grad=False)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(shift)
    conv.bias = nn.Parameter(bias * scale + shift, requires_grad=False)


class _FusedActivation(nn.Module):
    """What is left of an activation block once its batch norm is folded: ReLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x, inplace=True)  # x is a fresh conv output


class _InferenceResidualBlock(nn.Module):
    """A residual block with its closing batch norm split along the concatenation.

    ``BN(cat[x, y]) = cat[BN_x(x), BN_y(y)]``: the y part is folded into the last
    bottleneck's final 1x1 convolution, the x part is one affine + ReLU pass over the
    block's input, and ReLU distributes over the concatenation -- fewer full-size
    passes and allocations than cat, BN, ReLU.
    """

    def __init__(self, block: ResidualBlock):
        super().__init__()
        bn = block.activation[-1].batch_norm
        scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
        shift = (bn.bias - bn.running_mean * scale).detach()
        n_x = block.out_channels - block.conv[-1].conv_3.out_channels
        self.conv = block.conv
        self.activation = block.activation[:-1]
        _fold_affine(block.conv[-1].conv_3, scale[n_x:], shift[n_x:])
        self.register_buffer("scale_x", scale[:n_x].reshape(1, -1, 1, 1).clone())
        self.register_buffer("shift_x", shift[:n_x].reshape(1, -1, 1, 1).clone())
        self.out_channels = block.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv, act in zip(self.conv[:-1], self.activation, strict=True):
            y = act(conv(y))
        y = F.relu(self.conv[-1](y), inplace=True)
        x = torch.addcmul(self.shift_x, x, self.scale_x).relu_()
        return torch.cat([x, y], dim=1)


def prepare_for_inference(
    model: nn.Module,
    *,
    channels_last: bool = True,
    device: str | torch.device | None = None,
    keep_memory: bool = True,
) -> nn.Module:
    """A copy of ``model`` tuned for inference, with the same outputs (to ~1e-5).

    On CPU, in channels-last format, with oneDNN (every standard PyTorch build): a
    :class:`sxtquant.fastinfer.FastSXTNet` -- batch norm folded into the convolutions
    and ReLU fused in, transposed convolutions as sub-pixel convolutions, the linear
    heads collapsed, concatenations written in place, weights pre-packed for oneDNN
    (see :mod:`sxtquant.fastinfer`). Elsewhere (GPU, contiguous format): every batch
    norm that directly follows a (linear) bottleneck is folded into that bottleneck's
    last 1x1 convolution (bias added), each residual block's closing batch norm is
    split along its concatenation, and the copy is converted to ``channels_last``
    when asked. Either way the copy is in eval mode and without gradients, and
    ``forward_label`` runs the label head alone.

    Parameters
    ----------
    model : SXTNet
        Trained network; it is not modified.
    channels_last : bool
        Channels-last memory format (faster on CPU with oneDNN and on GPU tensor cores);
        feed inputs in that format too.
    device : str or torch.device, optional
        Where the copy will run (default: where ``model`` is).
    keep_memory : bool
        CPU fast form only: while the copy exists, let glibc's malloc keep freed memory
        for reuse (process-wide) instead of returning it to the system after every
        tensor, which saves ~17 % of the CPU time of a pass (page faults); see
        :class:`sxtquant.fastinfer.FastSXTNet`.
    """
    import copy

    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if isinstance(model, SXTNet) and channels_last and device.type == "cpu":
        from sxtquant.fastinfer import FastSXTNet, onednn_available

        if isinstance(model, FastSXTNet):
            return copy.deepcopy(model).to(device)
        if onednn_available():
            return FastSXTNet(model, onednn=True, keep_memory=keep_memory).to(device)
    fused = copy.deepcopy(model).eval().to(device)
    for p in fused.parameters():
        p.requires_grad_(False)
    if not isinstance(fused, SXTNet):
        return fused.to(memory_format=torch.channels_last) if channels_last else fused
    pairs: list[tuple[nn.Module, str, Bottleneck]] = []
    enc = fused.encoder
    pairs.append((enc, "initial_activation", enc.initial_conv))
    for path in fused.neck.paths:
        for i, conv in enumerate(path.conv):
            pairs.append((path.activation, str(i), conv))
    for module in fused.modules():
        if isinstance(module, ResidualBlock):
            for i, conv in enumerate(module.conv[:-1]):
                pairs.append((module.activation, str(i), conv))
    for dec in (fused.image_decoder, fused.label_decoder):
        pairs.append((dec, "final_activation", dec.final_conv))
    for parent, name, bottleneck in pairs:
        act = parent[int(name)] if isinstance(parent, nn.ModuleList) else getattr(parent, name)
        _fuse_conv_bn(bottleneck.conv_3, act.batch_norm)
        _set_child(parent, name, _FusedActivation())
    for parent in list(fused.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ResidualBlock):
                _set_child(parent, name, _InferenceResidualBlock(child))
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
    return fused


def _set_child(parent: nn.Module, name: str, child: nn.Module) -> None:
    if isinstance(parent, nn.ModuleList):
        parent[int(name)] = child
    else:
        setattr(parent, name, child)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-describing checkpoint folder.

    ``folder/config.json`` (the :class:`ModelConfig`), ``folder/weights.pt``
    (the state dict, with batch-norm statistics, saved with :func:`torch.save`)
    and, when given, ``folder/metadata.json``. Files are written to temporary
    names and renamed, so a crash leaves no half-written checkpoint file.

    Returns
    -------
    Path
        The folder.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError("save_checkpoint needs a model built by build_model (with a .config)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(folder / CONFIG_FILE) as tmp:
        tmp.write_text(config.to_json() + "\n")
    with atomic_output(folder / WEIGHTS_FILE) as tmp:
        torch.save(state, tmp)
    if metadata is not None:
        with atomic_output(folder / METADATA_FILE) as tmp:
            tmp.write_text(json.dumps(dict(metadata), indent=2, default=str) + "\n")
    return folder


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint folder of a shipped model name or a path.

    Raises
    ------
    InputError
        Unknown name, missing folder, or a folder that is not a checkpoint.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if text in SHIPPED_MODELS and not path.exists():
        folder = SHIPPED_MODELS_DIR / text
        if not (folder / CONFIG_FILE).is_file():
            raise InputError(
                text,
                "the shipped model is not installed in this copy of sxtquant "
                f"(expected {folder}); train one with 'sxtquant train', or convert the "
                "published weights with 'sxtquant convert', and pass its folder with --model",
            )
        return folder
    if text in PRESETS and not path.exists():
        raise InputError(
            text,
            "is an untrained architecture preset, not a trained model; pass a checkpoint "
            "folder (from 'sxtquant train' or 'sxtquant convert') or a shipped model name "
            f"({', '.join(SHIPPED_MODELS)})",
        )
    if not path.exists():
        raise InputError(
            text,
            "no such model: neither a checkpoint folder nor a shipped model name "
            f"({', '.join(SHIPPED_MODELS)})",
        )
    if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent
    if not path.is_dir():
        raise InputError(
            text, f"not a checkpoint folder (expected {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise InputError(text, f"not a checkpoint folder: {name} is missing")
    return path


def load_model(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu") -> SXTNet:
    """Load a trained network, in eval mode.

    Parameters
    ----------
    name_or_path : str or path
        A checkpoint folder written by :func:`save_checkpoint` (``config.json`` +
        ``weights.pt``) or the name of a model shipped inside the package
        (``default``). Architecture presets (``paper``...) are untrained and not loadable.
    device : str or torch.device

    Raises
    ------
    InputError
        Unknown name, missing or malformed checkpoint, weights that do not fit the config.
    """
    folder = resolve_model_path(name_or_path)
    source = os.fspath(name_or_path)
    try:
        config = ModelConfig.from_json((folder / CONFIG_FILE).read_text())
    except (ValueError, TypeError) as exc:
        raise InputError(folder / CONFIG_FILE, f"not a valid model config: {exc}") from None
    model = SXTNet(config)
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or truncated file
        raise InputError(folder / WEIGHTS_FILE, f"cannot read weights: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(
            source, f"weights do not fit its config: {' '.join(first[:3])[:400]}"
        ) from None
    return model.to(device).eval()
