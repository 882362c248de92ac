"""One supervised step, one unsupervised step, and validation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from sxtquant.core.defaults import THRESHOLD
from sxtquant.evaluate.metrics import binarize, pixel_metrics
from sxtquant.train.config import SIZE_MULTIPLE
from sxtquant.train.data import label_target
from sxtquant.train.losses import huber, image_loss


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block ``module`` is in eval mode (batch-norm statistics untouched) and
    has no gradients (Adam skips its parameters); both are restored afterwards."""
    was_training = module.training
    flags = [p.requires_grad for p in module.parameters()]
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        module.train(was_training)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _features(model: nn.Module, x: torch.Tensor):
    """The shared trunk (encoder + neck): (bottom features, encoder skips)."""
    features, skips = model.encoder(x)
    neck = getattr(model, "neck", None)
    return (neck(features) if neck is not None else features), skips


def _forward_image(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The image head alone: the label decoder is not evaluated."""
    return model.image_decoder(_features(model, x)[0])


def _forward_label(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The label head alone: the image decoder is not evaluated."""
    features, skips = _features(model, x)
    return model.label_decoder(features, skips)


def supervised_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    image_loss_weight: float,
    supervised_only: bool = False,
    membrane_weight: float = 1.0,
) -> dict[str, float]:
    """One supervised step on labelled crops; returns the losses as floats.

    loss = Huber(δ = 0.1)(label output, target) + ``image_loss_weight`` × image loss.
    With ``supervised_only`` the image head is neither evaluated nor trained (the
    caller keeps it :func:`frozen` and out of the optimizer).

    Parameters
    ----------
    images : (N, 1, H, W) float32 tensor
        Standardised crops, on the model's device.
    targets : (N, 1, H, W) float32 tensor
        +1 membrane, -1 background.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with _autocast(images.device):
        if supervised_only:
            reconstruction, label = None, _forward_label(model, images)
        else:
            reconstruction, label = model(images)
    label_loss = huber(label.float(), targets, membrane_weight=membrane_weight)
    if reconstruction is None or image_loss_weight == 0:
        img_loss = torch.zeros((), device=images.device)
        loss = label_loss
    else:
        img_loss = image_loss(reconstruction, images)
        loss = label_loss + image_loss_weight * img_loss
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "label_loss": label_loss.item(), "image_loss": img_loss.item()}


def unsupervised_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor
) -> float:
    """One unsupervised step: the image loss alone, with the label decoder frozen.

    The label decoder is in eval mode with ``requires_grad`` off during the step, so
    its parameters get no gradient (Adam skips them: no momentum drift either) and
    its batch-norm running statistics stay bit-identical. Returns the image loss.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with frozen(model.label_decoder):
        with _autocast(images.device):
            reconstruction = _forward_image(model, images)
        loss = image_loss(reconstruction, images)
        loss.backward()
        optimizer.step()
    return loss.item()


def _pad_to_multiple(a: np.ndarray, multiple: int = SIZE_MULTIPLE) -> np.ndarray:
    h, w = a.shape
    ph, pw = -h % multiple, -w % multiple
    return np.pad(a, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")


@torch.no_grad()
def validate(
    model: nn.Module,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    device: torch.device,
    threshold: float = THRESHOLD,
    supervised_only: bool = False,
) -> dict[str, float]:
    """Validation losses and pixel metrics over whole slices, in eval mode.

    ``loss`` is the label Huber loss (the segmentation quality, comparable between
    semi-supervised and supervised-only runs; early stopping watches it);
    ``image_loss`` is the image loss of the reconstruction (NaN for supervised-only).
    Metrics use probability = (tanh + 1) / 2 > ``threshold``, pooled over all pixels.

    Parameters
    ----------
    images : sequence of (H, W) float32 arrays
        Standardised slices of any size (reflect-padded to multiples of 16 here).
    labels : sequence of (H, W) bool arrays
    """
    model.eval()
    predicted: list[np.ndarray] = []
    label_sum = image_sum = 0.0
    pixels = 0
    for image, label in zip(images, labels, strict=True):
        h, w = image.shape
        x = torch.from_numpy(_pad_to_multiple(image))[None, None].to(device)
        with _autocast(device):
            if supervised_only:
                reconstruction, out = None, _forward_label(model, x)
            else:
                reconstruction, out = model(x)
        out = out.float()[..., :h, :w]
        target = torch.from_numpy(label_target(label))[None, None].to(device)
        label_sum += huber(out, target).item() * h * w
        if reconstruction is not None:
            image_sum += (
                image_loss(reconstruction.float()[..., :h, :w], x[..., :h, :w]).item() * h * w
            )
        pixels += h * w
        probability = ((out + 1) / 2).clamp(0, 1).nan_to_num(0.0)[0, 0].cpu().numpy()
        predicted.append(binarize(probability, threshold).ravel())
    # slices differ in size: pool all pixels as one row
    truth = np.concatenate([np.asarray(label).ravel() for label in labels])
    scores = pixel_metrics(np.concatenate(predicted)[None], truth[None])
    return {
        "val_loss": label_sum / pixels,
        "val_image_loss": float("nan") if supervised_only else image_sum / pixels,
        **{f"val_{k}": scores[k] for k in ("accuracy", "precision", "recall", "f1")},
    }
