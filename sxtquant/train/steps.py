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
from sxtquant.train.losses import huber, image_loss, soft_dice_loss


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


def centre_slice(images: torch.Tensor) -> torch.Tensor:
    """The middle input slice of (N, k, H, W) crops, (N, 1, H, W): what the image head
    reconstructs."""
    k = images.shape[1]
    return images[:, k // 2 : k // 2 + 1]


def label_loss(
    heads: torch.Tensor,
    targets: torch.Tensor,
    *,
    membrane_weight: float = 1.0,
    dice_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(membrane loss, region loss): the Huber loss of the membrane head (membrane pixels
    weighted by ``membrane_weight``) and the plain Huber loss of the region heads, each a
    tanh output on its own nested target (0 without region heads); with
    ``dice_weight`` each part adds that times its soft Dice loss (:func:`soft_dice_loss`)."""
    membrane = huber(heads[:, :1], targets[:, :1], membrane_weight=membrane_weight)
    if dice_weight:
        membrane = membrane + dice_weight * soft_dice_loss(heads[:, :1], targets[:, :1])
    if heads.shape[1] == 1:
        return membrane, torch.zeros((), device=heads.device)
    region = huber(heads[:, 1:], targets[:, 1:])
    if dice_weight:
        region = region + dice_weight * soft_dice_loss(heads[:, 1:], targets[:, 1:])
    return membrane, region


def _forward_all(model: nn.Module, x: torch.Tensor):
    """(image, every label head)."""
    if hasattr(model, "forward_all"):
        return model.forward_all(x)
    return model(x)


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
    dice_weight: float = 0.0,
) -> dict[str, float]:
    """One supervised step on labelled crops; returns the losses as floats.

    loss = Huber(δ = 0.1)(membrane output, target) [+ Huber(region outputs, targets)]
    + ``image_loss_weight`` × image loss of the centre slice. With ``supervised_only``
    the image head is neither evaluated nor trained (the caller keeps it :func:`frozen`
    and out of the optimizer). ``label_loss`` is the membrane and region terms together,
    ``region_loss`` the region term alone (0 without region heads).

    Parameters
    ----------
    images : (N, k, H, W) float32 tensor
        Standardised crops (k adjacent slices each), on the model's device.
    targets : (N, heads, H, W) float32 tensor
        +1 inside, -1 outside, per head (membrane first).
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with _autocast(images.device):
        if supervised_only:
            reconstruction, label = None, _forward_label(model, images)
        else:
            reconstruction, label = _forward_all(model, images)
    membrane_loss, region_loss = label_loss(
        label.float(), targets, membrane_weight=membrane_weight, dice_weight=dice_weight
    )
    supervised = membrane_loss + region_loss
    if reconstruction is None or image_loss_weight == 0:
        img_loss = torch.zeros((), device=images.device)
        loss = supervised
    else:
        img_loss = image_loss(reconstruction, centre_slice(images))
        loss = supervised + image_loss_weight * img_loss
    loss.backward()
    optimizer.step()
    return {
        "loss": loss.item(),
        "label_loss": supervised.item(),
        "region_loss": region_loss.item(),
        "image_loss": img_loss.item(),
    }


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
        loss = image_loss(reconstruction, centre_slice(images))
        loss.backward()
        optimizer.step()
    return loss.item()


def _pad_to_multiple(a: np.ndarray, multiple: int = SIZE_MULTIPLE) -> np.ndarray:
    """(..., H, W) padded at the bottom/right to multiples of ``multiple`` (reflection)."""
    h, w = a.shape[-2:]
    pads = ((0, 0),) * (a.ndim - 2) + ((0, -h % multiple), (0, -w % multiple))
    return np.pad(a, pads, mode="reflect" if min(h, w) > 1 else "edge")


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
    semi-supervised and supervised-only runs; early stopping watches it), with region
    heads the membrane and the region Huber losses together (``region_loss`` alone);
    ``image_loss`` is the image loss of the reconstruction (NaN for supervised-only).
    Metrics use probability = (tanh + 1) / 2 > ``threshold``, pooled over all pixels;
    with region heads also the Dice of each region at probability 0.5
    (``val_cell_dice``, ``val_organelles_dice``).

    Parameters
    ----------
    images : sequence of (H, W) or (k, H, W) float32 arrays
        Standardised slices of any size (reflect-padded to multiples of 16 here), with
        their k - 1 neighbours for a 2.5D model.
    labels : sequence of (H, W) or (heads, H, W) bool arrays
        Membrane masks, or the masks of every head (membrane first).
    """
    model.eval()
    predicted: list[np.ndarray] = []
    truths: list[np.ndarray] = []
    label_sum = region_sum = image_sum = 0.0
    pixels = 0
    region_counts = None
    for image, label in zip(images, labels, strict=True):
        h, w = image.shape[-2:]
        padded = _pad_to_multiple(image)
        x = torch.from_numpy(padded if padded.ndim == 3 else padded[None])[None].to(device)
        with _autocast(device):
            if supervised_only:
                reconstruction, out = None, _forward_label(model, x)
            else:
                reconstruction, out = _forward_all(model, x)
        out = out.float()[..., :h, :w]
        masks = np.asarray(label).reshape(-1, h, w)
        target = torch.from_numpy(label_target(masks))[None].to(device)
        membrane_loss, region_loss = label_loss(out, target)
        label_sum += (membrane_loss + region_loss).item() * h * w
        region_sum += region_loss.item() * h * w
        if reconstruction is not None:
            centre = centre_slice(x)[..., :h, :w]
            image_sum += image_loss(reconstruction.float()[..., :h, :w], centre).item() * h * w
        pixels += h * w
        probability = ((out + 1) / 2).clamp(0, 1).nan_to_num(0.0)[0].cpu().numpy()
        predicted.append(binarize(probability[0], threshold).ravel())
        truths.append(masks[0].ravel())
        if len(masks) > 1:
            inside, truth = probability[1:] > 0.5, masks[1:]
            counts = np.stack(
                [(inside & truth).sum((1, 2)), inside.sum((1, 2)) + truth.sum((1, 2))]
            )
            region_counts = counts if region_counts is None else region_counts + counts
    # slices differ in size: pool all pixels as one row
    truth = np.concatenate(truths)
    scores = pixel_metrics(np.concatenate(predicted)[None], truth[None])
    metrics = {
        "val_loss": label_sum / pixels,
        "val_image_loss": float("nan") if supervised_only else image_sum / pixels,
        **{f"val_{k}": scores[k] for k in ("accuracy", "precision", "recall", "f1")},
    }
    if region_counts is not None:
        metrics["val_region_loss"] = region_sum / pixels
        for name, (both, total) in zip(("cell", "organelles"), region_counts.T, strict=False):
            metrics[f"val_{name}_dice"] = float(2 * both / total) if total else 1.0
    return metrics
