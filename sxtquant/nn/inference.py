"""The network prepared for inference: batch norm folded, channels last."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sxtquant.nn.layers import Bottleneck, ResidualBlock
from sxtquant.nn.network import SXTNet


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
    :class:`sxtquant.nn.fastform.FastSXTNet` -- batch norm folded into the convolutions
    and ReLU fused in, transposed convolutions as sub-pixel convolutions, the linear
    heads collapsed, concatenations written in place, weights pre-packed for oneDNN
    (see :mod:`sxtquant.nn.fastform`). Elsewhere (GPU, contiguous format): every batch
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
        :class:`sxtquant.nn.fastform.FastSXTNet`.
    """
    import copy

    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if isinstance(model, SXTNet) and channels_last and device.type == "cpu":
        from sxtquant.nn.fastform import FastSXTNet, onednn_available

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
