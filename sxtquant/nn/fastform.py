"""The inference form of :class:`~sxtquant.nn.network.SXTNet` for CPUs (oneDNN).

:func:`sxtquant.nn.inference.prepare_for_inference` returns a :class:`FastSXTNet` on CPU. It
computes the same function as the eval-mode network (to float rounding: ~1e-5 on
O(1) outputs) with fewer passes over memory and faster convolution kernels:

* **Batch norm folded** into the preceding convolution wherever one follows a
  convolution, ReLU fused into that convolution (oneDNN post-op). A residual block's
  closing batch norm, which follows a concatenation, is split along it: the new
  channels' part is folded into the block's last convolution, the input channels'
  part is one affine + ReLU pass written straight into the block's output buffer.
* **Transposed convolutions as sub-pixel convolutions.** A stride-``s`` transposed
  convolution with a ``k x k`` kernel gives every output phase ``(a mod s, b mod s)``
  from a few kernel taps only: for k = 3, s = 2 the four phases are a 2x2, a 2x1, a
  1x2 and a 1x1 ordinary convolution of the input -- the same 9 multiply-adds per
  input pixel, but as stride-1 convolutions, which run at matrix-product speed
  (PyTorch's CPU transposed convolution reaches a third of it on the deepest layers).
  Each phase is written straight into its interleaved place of the output, in the
  label decoder into the buffer that concatenates it with the skip tensor.
* **Linear chains collapsed.** The image head (three bottlenecks, nine convolutions
  without a non-linearity between them) and the label head (batch norm, bottleneck,
  1x1 convolution) are re-associated: a 1x1 convolution is multiplied into the
  convolution before it wherever that saves multiply-adds (exact, since a 1x1
  convolution commutes with zero padding). The image head drops from 26.7k to 11.6k
  multiply-adds per pixel (m = 64), the label head from 13.4k to 2.3k.
* **Convolutions with one input or one output channel** (the first and the last
  layers) as an outer product / a matrix-vector product plus shifted sums: oneDNN
  runs them at a few GFLOP/s.
* **Weights pre-packed** into oneDNN's blocked layout once, not reordered per call.

All arithmetic stays float32; the folding is done in float64 first.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sxtquant.core.memory import hold_freed_memory, release_held_memory, trim_memory
from sxtquant.nn.layers import (
    Activation,
    Bottleneck,
    Decoder,
    Encoder,
    Neck,
    ResidualBlock,
    SameConvTranspose2d,
)
from sxtquant.nn.network import SXTNet

__all__ = ["FastSXTNet", "onednn_available"]

CL = torch.channels_last


def onednn_available() -> bool:
    """Whether this PyTorch can run convolutions through oneDNN directly (CPU)."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")
    )


# --------------------------------------------------------------------------- linear algebra


@dataclass(frozen=True)
class _Lin:
    """A stride-1 convolution as float64 ``weight`` (out, in, kh, kw) and ``bias`` (out,),
    with zero padding ``pad`` = (top, bottom, left, right)."""

    weight: torch.Tensor
    bias: torch.Tensor
    pad: tuple[int, int, int, int]

    @property
    def macs(self) -> int:
        """Multiply-adds per output pixel."""
        return int(self.weight[0].numel() * self.weight.shape[0])

    @property
    def is_1x1(self) -> bool:
        return self.weight.shape[-2:] == (1, 1) and not any(self.pad)


def _lin(conv: nn.Conv2d) -> _Lin:
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError(f"not a plain stride-1 convolution: {conv}")
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else w.new_zeros(w.shape[0])
    same_pad = getattr(conv, "same_pad", None)  # F.pad order: left, right, top, bottom
    if same_pad is not None:
        left, right, top, bottom = same_pad
        pad = (top, bottom, left, right)
    else:
        ph, pw = conv.padding
        pad = (ph, ph, pw, pw)
    return _Lin(w, b, pad)


def _bottleneck(b: Bottleneck) -> list[_Lin]:
    return [_lin(b.conv_1), _lin(b.conv_2), _lin(b.conv_3)]


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``scale * x + shift`` (float64)."""
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    return scale, bn.bias.detach().double() - bn.running_mean.double() * scale


def _affine_after(lin: _Lin, scale: torch.Tensor, shift: torch.Tensor) -> _Lin:
    """``scale * lin(x) + shift`` per output channel."""
    return _Lin(lin.weight * scale.reshape(-1, 1, 1, 1), lin.bias * scale + shift, lin.pad)


def _affine_before(lin: _Lin, scale: torch.Tensor, shift: torch.Tensor) -> _Lin:
    """``lin(scale * x + shift)`` per input channel; exact only without padding."""
    if any(lin.pad):
        raise ValueError("an affine map moves through a convolution only without padding")
    w = lin.weight * scale.reshape(1, -1, 1, 1)
    return _Lin(w, lin.bias + lin.weight.sum(dim=(2, 3)) @ shift, lin.pad)


def _then_1x1(a: _Lin, b: _Lin) -> _Lin:
    """``b(a(x))`` as one convolution, ``b`` 1x1: exact, a 1x1 map commutes with padding."""
    m = b.weight[:, :, 0, 0]
    return _Lin(torch.einsum("oc,cihw->oihw", m, a.weight), m @ a.bias + b.bias, a.pad)


def _collapse(chain: list[_Lin]) -> list[_Lin]:
    """Multiply each 1x1 convolution of a linear chain into the one before it wherever
    that saves multiply-adds per pixel."""
    chain = list(chain)
    changed = True
    while changed:
        changed = False
        for i in range(len(chain) - 1):
            a, b = chain[i], chain[i + 1]
            if b.is_1x1:
                merged = _then_1x1(a, b)
                if merged.macs < a.macs + b.macs:
                    chain[i : i + 2] = [merged]
                    changed = True
                    break
    return chain


# --------------------------------------------------------------------------- convolutions


class _Conv(nn.Module):
    """A stride-1 convolution (zero padding, optional fused ReLU), channels-last.

    With ``onednn`` (CPU) it runs through oneDNN with the weight pre-packed once;
    otherwise through ``F.conv2d``. One input channel and a 1x1 kernel: an outer product.
    """

    def __init__(self, lin: _Lin, *, relu: bool, onednn: bool, crop_ok: bool = False):
        super().__init__()
        self.register_buffer("weight", lin.weight.float().contiguous(memory_format=CL))
        self.register_buffer("bias", lin.bias.float().contiguous())
        self.pad = tuple(int(p) for p in lin.pad)
        self.relu = relu
        self.onednn = onednn
        self.crop_ok = crop_ok  # may return a cropped (strided) view
        self.outer = lin.weight.shape[1] == 1 and lin.is_1x1
        self._packed: torch.Tensor | None = None

    def __getstate__(self):  # oneDNN's opaque tensors do not copy or pickle
        state = super().__getstate__().copy()
        state["_packed"] = None
        return state

    def _padding(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int], tuple | None]:
        """Input, symmetric padding for the kernel, and the crop to apply to its output."""
        top, bottom, left, right = self.pad
        if top == bottom and left == right:
            return x, [top, left], None
        h, w = x.shape[-2:]
        ph, pw = max(top, bottom), max(left, right)
        # Asymmetric: pad symmetrically and crop the result when that wastes little
        # (< 4 % more outputs), else pad the input.
        cheap = (h + ph) * (w + pw) < 1.04 * h * w
        if self.crop_ok and cheap and min(top, bottom, left, right) >= 0:
            kh, kw = self.weight.shape[-2:]
            out_h, out_w = h + top + bottom - kh + 1, w + left + right - kw + 1
            return x, [ph, pw], (ph - top, out_h, pw - left, out_w)
        return F.pad(x, (left, right, top, bottom)), [0, 0], None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outer:  # (N, 1, H, W) -> (N, C, H, W): x * w + b per channel
            y = torch.addcmul(self.bias, x.permute(0, 2, 3, 1), self.weight.reshape(1, -1))
            y = y.permute(0, 3, 1, 2)
            return y.relu_() if self.relu else y
        x, padding, crop = self._padding(x)
        if self.onednn:
            if self._packed is None:
                self._packed = _pack(self.weight, padding, x.shape)
            y = torch.ops.mkldnn._convolution_pointwise(
                x,
                self._packed,
                self.bias,
                padding,
                [1, 1],
                [1, 1],
                1,
                "relu" if self.relu else "none",
                [],
                "",
            )
        else:
            y = F.conv2d(x, self.weight, self.bias, padding=padding)
            if self.relu:
                y = F.relu(y, inplace=True)
        if crop is not None:
            y0, h, x0, w = crop
            y = y[..., y0 : y0 + h, x0 : x0 + w]
        return y


def _pack(weight: torch.Tensor, padding: list[int], shape: torch.Size) -> torch.Tensor:
    """The weight in oneDNN's blocked layout for this input shape (any shape works with it)."""
    try:
        return torch.ops.mkldnn._reorder_convolution_weight(
            weight, padding, [1, 1], [1, 1], 1, list(shape)
        )
    except RuntimeError:
        return weight


class _ConvToOne(nn.Module):
    """A stride-1 convolution with a single output channel: one matrix product over the
    channels (``(pixels, C) @ (C, kh * kw)``) and a shifted sum of the ``kh * kw`` planes.
    oneDNN computes such a layer at a few GFLOP/s; this is one pass over the input."""

    def __init__(self, lin: _Lin):
        super().__init__()
        if lin.weight.shape[0] != 1:
            raise ValueError("_ConvToOne needs one output channel")
        _, c, kh, kw = lin.weight.shape
        self.register_buffer("weight", lin.weight[0].reshape(c, kh * kw).float().contiguous())
        self.bias_value = float(lin.bias[0])
        self.kernel = (kh, kw)
        self.pad = tuple(int(p) for p in lin.pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        kh, kw = self.kernel
        top, bottom, left, right = self.pad
        taps = (x.permute(0, 2, 3, 1).reshape(-1, c) @ self.weight).view(n, h, w, kh * kw)
        out_h, out_w = h + top + bottom - kh + 1, w + left + right - kw + 1
        out = x.new_full((n, out_h, out_w), self.bias_value)
        for dy in range(kh):
            # output row oy reads input row oy + dy - top; keep rows inside the input
            y0, y1 = max(0, top - dy), min(out_h, h + top - dy)
            for dx in range(kw):
                x0, x1 = max(0, left - dx), min(out_w, w + left - dx)
                if y0 < y1 and x0 < x1:
                    src = taps[:, y0 + dy - top : y1 + dy - top, x0 + dx - left : x1 + dx - left]
                    out[:, y0:y1, x0:x1] += src[..., dy * kw + dx]
        return out.unsqueeze(1)


def _chain_modules(chain: list[_Lin], *, relu_last: bool, onednn: bool) -> nn.Sequential:
    mods = []
    for i, lin in enumerate(chain):
        relu = relu_last and i == len(chain) - 1
        if lin.weight.shape[0] == 1 and not relu:
            mods.append(_ConvToOne(lin))
        else:
            mods.append(_Conv(lin, relu=relu, onednn=onednn))
    return nn.Sequential(*mods)


def _activated(lins: list[_Lin], act: Activation, *, onednn: bool) -> nn.Sequential:
    """Bottleneck + batch norm + ReLU: the batch norm folded into the last convolution."""
    chain = _collapse(lins)
    chain[-1] = _affine_after(chain[-1], *_bn_affine(act.batch_norm))
    return _chain_modules(chain, relu_last=True, onednn=onednn)


class _SubPixelConvTranspose(nn.Module):
    """:class:`~sxtquant.nn.layers.SameConvTranspose2d` as ``s * s`` stride-1 convolutions.

    Output pixel ``o = s * a + phi`` (after the 'same' crop ``p``) receives input pixel
    ``i`` through kernel tap ``kk`` when ``s * i + kk = o + p``: for phase ``phi`` the
    taps ``kk = phi + p - s * d`` read input ``a + d``. Per axis that is a short
    convolution over the offsets ``d``; per 2D phase, their product.
    """

    def __init__(self, conv_t: SameConvTranspose2d, *, onednn: bool):
        super().__init__()
        w = conv_t.weight.detach().double()  # (in, out, k, k)
        b = conv_t.bias.detach().double()
        s = conv_t.stride[0]
        k = conv_t.kernel_size[0]
        p = conv_t.crop_before
        self.stride = s
        self.out_channels = w.shape[1]
        axis = []
        for phi in range(s):
            offsets = [
                d for d in range((phi + p - k) // s, (phi + p) // s + 2) if 0 <= phi + p - s * d < k
            ]
            taps = [phi + p - s * d for d in offsets]
            pad = (-offsets[0], offsets[-1]) if offsets else (0, 0)
            axis.append((taps, pad))
        self.phases = nn.ModuleList()
        self.phase_index = []
        self.register_buffer("bias", b.float())
        for fy, (ty, py) in enumerate(axis):
            for fx, (tx, px) in enumerate(axis):
                if not ty or not tx:
                    continue  # no input reaches this phase: bias only
                wk = w[:, :, ty][:, :, :, tx].permute(1, 0, 2, 3)
                lin = _Lin(wk.contiguous(), b, (*py, *px))
                self.phases.append(_Conv(lin, relu=False, onednn=onednn, crop_ok=True))
                self.phase_index.append((fy, fx))
        self.complete = len(self.phases) == s * s

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``out``: where to write the (N, out, s H, s W) result, e.g. a channel slice of a
        channels-last concatenation buffer."""
        n, _, h, w = x.shape
        s, c = self.stride, self.out_channels
        if out is None:
            out = torch.empty(
                (n, c, s * h, s * w), dtype=x.dtype, device=x.device, memory_format=CL
            )
        if not self.complete:
            out.copy_(self.bias.reshape(1, -1, 1, 1).expand_as(out))
        grid = out.permute(0, 2, 3, 1).view(n, h, s, w, s, c)
        for (fy, fx), conv in zip(self.phase_index, self.phases, strict=True):
            grid[:, :, fy, :, fx, :] = conv(x).permute(0, 2, 3, 1)
        return out


# --------------------------------------------------------------------------- blocks


class _ResidualBlock(nn.Module):
    """``relu(BN(cat[x, bottlenecks(x)]))`` with the batch norm split along the
    concatenation; both halves written into one output buffer."""

    def __init__(self, block: ResidualBlock, *, onednn: bool):
        super().__init__()
        self.convs = nn.Sequential()
        for conv, act in zip(block.conv[:-1], block.activation[:-1], strict=True):
            self.convs.append(_activated(_bottleneck(conv), act, onednn=onednn))
        scale, shift = _bn_affine(block.activation[-1].batch_norm)
        n_y = block.conv[-1].conv_3.out_channels
        n_x = block.out_channels - n_y
        chain = _collapse(_bottleneck(block.conv[-1]))
        chain[-1] = _affine_after(chain[-1], scale[n_x:], shift[n_x:])
        self.convs.append(_chain_modules(chain, relu_last=True, onednn=onednn))
        self.register_buffer("scale_x", scale[:n_x].float().reshape(1, -1, 1, 1))
        self.register_buffer("shift_x", shift[:n_x].float().reshape(1, -1, 1, 1))
        self.n_x, self.n_y = n_x, n_y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x)
        n, _, h, w = x.shape
        out = torch.empty(
            (n, self.n_x + self.n_y, h, w), dtype=x.dtype, device=x.device, memory_format=CL
        )
        head = out[:, : self.n_x]
        torch.addcmul(self.shift_x, x, self.scale_x, out=head)
        head.relu_()
        out[:, self.n_x :] = y
        return out


class _Encoder(nn.Module):
    def __init__(self, enc: Encoder, *, onednn: bool):
        super().__init__()
        self.initial_conv = _activated(
            _bottleneck(enc.initial_conv), enc.initial_activation, onednn=onednn
        )
        self.initial_activation = nn.Identity()  # folded into initial_conv
        self.resnet_blocks = nn.ModuleList(
            nn.ModuleList(_ResidualBlock(b, onednn=onednn) for b in stage)
            for stage in enc.resnet_blocks
        )

    forward = Encoder.forward


class _Neck(nn.Module):
    def __init__(self, neck: Neck, *, onednn: bool):
        super().__init__()
        self.paths = nn.ModuleList(
            nn.Sequential(
                *(
                    _activated(_bottleneck(conv), act, onednn=onednn)
                    for conv, act in zip(path.conv, path.activation, strict=True)
                )
            )
            for path in neck.paths
        )

    forward = Neck.forward


class _Decoder(nn.Module):
    def __init__(self, dec: Decoder, *, onednn: bool):
        super().__init__()
        self.kind = dec.kind
        self.use_skip_connections = dec.use_skip_connections
        self.conv_t = nn.ModuleList(_SubPixelConvTranspose(c, onednn=onednn) for c in dec.conv_t)
        self.stages = nn.ModuleList(
            nn.ModuleList(_ResidualBlock(b, onednn=onednn) for b in stage)
            for stage in dec.resnet_blocks
        )
        self.final = _activated(_bottleneck(dec.final_conv), dec.final_activation, onednn=onednn)
        if dec.kind == "image":  # three bottlenecks, no non-linearity: one linear chain
            chain = [lin for b in dec.head for lin in _bottleneck(b)]
        else:  # batch norm, bottleneck, 1x1 convolution (then tanh)
            chain = [*_bottleneck(dec.head_conv_1), _lin(dec.head_conv_2)]
            chain[0] = _affine_before(chain[0], *_bn_affine(dec.head_batch_norm))
        self.head = _chain_modules(_collapse(chain), relu_last=False, onednn=onednn)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor] | None = None) -> torch.Tensor:
        for i, (conv_t, stage) in enumerate(zip(self.conv_t, self.stages, strict=True)):
            if self.use_skip_connections:
                assert skips is not None
                skip = skips[i]
                n, c, h, w = skip.shape
                buf = torch.empty(
                    (n, c + conv_t.out_channels, h, w),
                    dtype=x.dtype,
                    device=x.device,
                    memory_format=CL,
                )
                buf[:, :c] = skip
                x = conv_t(x, out=buf[:, c:])
                x = buf
            else:
                x = conv_t(x)
            for block in stage:
                x = block(x)
        x = self.head(self.final(x))
        return torch.tanh(x) if self.kind == "label" else x


class FastSXTNet(SXTNet):
    """The inference form of an :class:`~sxtquant.nn.network.SXTNet` (see the module docstring).

    Same ``forward(x) -> (image, label)``, ``forward_all``, ``forward_label`` and
    ``forward_heads``; feed ``x`` in ``torch.channels_last`` memory format. Holds its own
    float32 copies of the folded weights (the source network is not changed) and has no
    trainable parameters.

    Parameters
    ----------
    model : SXTNet
        The network, in eval mode (its batch-norm statistics are used).
    onednn : bool, optional
        Run convolutions through oneDNN directly (CPU); else through ``F.conv2d``
        (any device). Default: where available.
    keep_memory : bool
        From the first forward pass until this network is deleted, let glibc's malloc
        keep freed memory for reuse instead of returning it to the system (process-wide;
        see :mod:`sxtquant.core.memory`): saves the page faults of ~700 MB of fresh
        memory per 256 x 256 tile, at the cost of holding the peak memory of a pass.
    """

    def __init__(self, model: SXTNet, *, onednn: bool | None = None, keep_memory: bool = True):
        nn.Module.__init__(self)
        if onednn is None:
            onednn = onednn_available()
        self.config = model.config
        self.onednn = onednn
        self.keep_memory = keep_memory
        self._holding = False
        self._last_shape: torch.Size | None = None
        with torch.no_grad():
            self.encoder = _Encoder(model.encoder, onednn=onednn)
            self.neck = _Neck(model.neck, onednn=onednn)
            self.image_decoder = _Decoder(model.image_decoder, onednn=onednn)
            self.label_decoder = _Decoder(model.label_decoder, onednn=onednn)
        self.eval()

    def __getstate__(self):  # a copy holds no memory until its own first pass
        state = super().__getstate__().copy()
        state["_holding"] = False
        return state

    def _before_pass(self, x: torch.Tensor) -> None:
        if not self.keep_memory or x.device.type != "cpu":
            return
        if not self._holding:
            if hold_freed_memory():
                self._holding = True
                weakref.finalize(self, release_held_memory)
        elif x.shape != self._last_shape:
            trim_memory()  # blocks sized for other tiles would only fragment the heap
        self._last_shape = x.shape

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._before_pass(x)
        return super().forward_all(x)

    def forward_heads(self, x: torch.Tensor) -> torch.Tensor:
        self._before_pass(x)
        return super().forward_heads(x)
