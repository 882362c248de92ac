"""The network's building blocks, layer by layer as in the reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sxtquant.nn.config import ModelConfig


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
        self.initial_conv = Bottleneck(config.in_slices, filters[0], k, bias=True)
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
      ``head_conv_2`` (1x1 convolution to one channel per head: the membrane, then
      ``config.regions``) and tanh.
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
            self.head_conv_2 = nn.Conv2d(m, len(config.heads), 1, bias=True)

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
