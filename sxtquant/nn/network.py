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

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from sxtquant.nn.config import ModelConfig, _as_config
from sxtquant.nn.layers import Decoder, Encoder, Neck

__all__ = [
    "SXTNet",
    "build_model",
    "count_parameters",
    "flops_per_pixel",
    "flops_per_tile",
    "standardize_slices",
]


class SXTNet(nn.Module):
    """The two-headed network: ``forward(x) -> (image, label)``.

    Parameters
    ----------
    config : ModelConfig

    Notes
    -----
    ``x`` is a float32 tensor (N, k, H, W), k = ``config.in_slices`` adjacent slices
    (1 for every preset), with H and W multiples of ``config.multiple`` (16 for every
    preset), each slice standardised (see :func:`standardize_slices`). ``image``
    (N, 1, H, W) is the reconstructed (centre) input slice; ``label`` (N, 1, H, W) the
    membrane label, tanh in [-1, 1] (probability = (label + 1) / 2).
    :meth:`forward_heads` gives every head of the label decoder: the membrane, then
    ``config.regions``, each tanh in [-1, 1].
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
        image, heads = self.forward_all(x)
        return image, heads[:, :1]

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, heads)``: the reconstruction and every label head (N, heads, H, W)."""
        self._check_input(x)
        features, skips = self.encoder(x)
        y = self.neck(features)
        return self.image_decoder(y), self.label_decoder(y, skips)

    def _check_input(self, x: torch.Tensor) -> None:
        k = self.config.in_slices
        if x.ndim != 4 or x.shape[1] != k:
            raise ValueError(f"expected input of shape (N, {k}, H, W), got {tuple(x.shape)}")
        mult = self.config.multiple
        if x.shape[-2] % mult or x.shape[-1] % mult:
            raise ValueError(
                f"input height and width must be multiples of {mult}, got {tuple(x.shape[-2:])}"
            )

    def forward_label(self, x: torch.Tensor) -> torch.Tensor:
        """The membrane head alone, (N, 1, H, W) tanh in [-1, 1]; the image decoder
        (27 % of the FLOPs, not needed to segment) is skipped."""
        return self.forward_heads(x)[:, :1]

    def forward_heads(self, x: torch.Tensor) -> torch.Tensor:
        """Every label head, (N, len(config.heads), H, W) tanh in [-1, 1], without the
        image decoder."""
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
    total += bottleneck(config.in_slices, enc[0], k, px)
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
            total += bottleneck(dec[-1], m, k, p) + 2 * p * m * len(config.heads)
        else:
            total += bottleneck(dec[-1], m, k, p) + bottleneck(m, m, k, p) + bottleneck(m, 1, k, p)
    return total


def flops_per_pixel(
    preset_or_config: str | ModelConfig, tile: int = 256, *, label_only: bool = False
) -> float:
    """Analytic FLOPs per output pixel on a ``tile`` x ``tile`` tile (paper: ~2.3 MFLOP)."""
    return flops_per_tile(preset_or_config, tile, label_only=label_only) / float(tile * tile)


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
