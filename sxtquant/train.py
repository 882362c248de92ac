"""Semi-supervised training of the two-headed network (the reference paper's protocol).

The network has one encoder and two decoders: an *image* decoder that reconstructs
its (standardised) input and a *label* decoder (U-Net skips) whose tanh output is the
membrane label in [-1, 1]. Training alternates two kinds of step:

(i) **supervised** step on a batch of labelled crops: loss = Huber(δ = 0.1) between the
    tanh label output and the target (+1 membrane, -1 background) plus
    ``image_loss_weight`` × the image loss; every weight is updated.
(ii) **unsupervised** step on a batch of unlabelled crops: the image loss alone, with
    the label decoder frozen: it gets no gradient, Adam never moves it, and its
    batch-norm running statistics are untouched (it is in eval mode, and the step does
    not even evaluate it: only encoder, neck and image decoder run).

Image loss = Huber(δ = 0.1) + (1 − SSIM), SSIM with an 11-pixel Gaussian window,
σ = 1.5 (:func:`ssim`). The image target is the standardised input itself.

``supervised_only=True`` trains the plain U-Net branch (encoder + label decoder) on the
labelled pairs alone, without the image loss and without unsupervised steps: the
ablation of the paper's Fig. 2A. The image decoder is then never evaluated nor changed.

The array-level pieces (losses, augmentation, one training step, validation metrics)
are pure functions; :func:`train` strings them together and writes checkpoints through
:func:`save_training_checkpoint` (which uses :func:`sxtquant.model.save_checkpoint`)
and the CSV log through :func:`sxtquant.io.write_table`.

Examples
--------
>>> from sxtquant.train import TrainConfig, load_training_data, train  # doctest: +SKIP
>>> data = load_training_data("dataset/")  # doctest: +SKIP
>>> result = train(data, "run/", TrainConfig(preset="small", epochs=20))  # doctest: +SKIP
>>> result.best_dir  # doctest: +SKIP
PosixPath('run/best')
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sxtquant import io, utils
from sxtquant.errors import InputError
from sxtquant.metrics import binarize, pixel_metrics
from sxtquant.model import PRESETS as MODEL_PRESETS
from sxtquant.model import build_model, load_model, save_checkpoint, standardize_slices

PRESETS = ("tiny", "small", "base", "paper")  # the presets of sxtquant.model
DEVICES = ("auto", "cpu", "cuda")
HUBER_DELTA = 0.1
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SIZE_MULTIPLE = 16  # the network pools four times

LOG_COLUMNS = (
    "epoch",
    "train_loss",
    "train_label_loss",
    "train_image_loss",
    "train_unsupervised_loss",
    "val_loss",
    "val_image_loss",
    "val_accuracy",
    "val_precision",
    "val_recall",
    "val_f1",
    "seconds",
)
TRAIN_STATE = "train_state.pt"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (saved with every checkpoint).

    Parameters
    ----------
    preset : {"tiny", "small", "base", "paper"}
        Network width (:func:`sxtquant.model.build_model`); ``paper`` is the reference.
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    steps_per_epoch : int
        Supervised steps per epoch.
    batch_size : int
        Crops per step (supervised and unsupervised steps alike).
    crop : int
        Side of the square training crops in pixels; a multiple of 16.
    lr : float
        Adam learning rate (the paper: 1e-4; 1e-3 and above fails to train).
    image_loss_weight : float
        Weight of the image loss in the supervised step's loss. The reference
        implementation gives the image term 0.01 against 0.99 for the label term.
    unsupervised_ratio : float
        Unsupervised steps per supervised step (1.0: strict alternation; 0.5: one
        unsupervised step after every second supervised step).
    patience : int
        Stop when the validation loss has not improved for this many epochs;
        0 never stops early.
    validation_fraction : float
        Fraction of the labelled slices held out for validation (split by slice).
    seed : int
        Seeds the weight initialisation, the split and every crop and flip.
    supervised_only : bool
        Train the U-Net branch (encoder + label decoder) on labelled data alone.
    device : {"auto", "cpu", "cuda"}
        ``auto`` takes CUDA when available.
    num_workers : int or None
        Data-loading processes; ``None``: 0 on CPU, up to 8 on CUDA.
    threshold : float
        Decision threshold on the probability (tanh + 1) / 2 for the validation
        pixel metrics; a pixel is positive when its probability is > threshold.
    membrane_weight : float
        Weight of membrane pixels against background pixels in the label loss (1: the
        paper's plain Huber loss). Thin membranes are a few percent of the pixels; a
        weight of 2-5 makes a short run learn them sooner, at some cost in precision.
    bn_momentum : float or None
        Batch-norm momentum (PyTorch convention) of a new network; ``None`` keeps the
        reference's Keras default (0.01), whose running statistics take thousands of
        steps to settle. Short CPU runs train better with 0.1 (PyTorch's default).
    init : str or None
        Start from the weights of this trained model (a checkpoint folder or a shipped
        model name such as ``default``) instead of a random initialisation: fine-tuning.
        Its architecture must be the ``preset``'s; ``bn_momentum`` is then the model's.
        A resumed run continues from its own checkpoint and ignores ``init``.
    """

    preset: Literal["tiny", "small", "base", "paper"] = "paper"
    epochs: int = 50
    steps_per_epoch: int = 200
    batch_size: int = 8
    crop: int = 256
    lr: float = 1e-4
    image_loss_weight: float = 0.01
    unsupervised_ratio: float = 1.0
    patience: int = 10
    validation_fraction: float = 0.1
    seed: int = 0
    supervised_only: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int | None = None
    threshold: float = 0.9
    bn_momentum: float | None = None
    membrane_weight: float = 1.0
    init: str | None = None

    def __post_init__(self):
        problems = []
        if self.preset not in PRESETS:
            problems.append(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.crop < SIZE_MULTIPLE or self.crop % SIZE_MULTIPLE:
            problems.append(f"crop must be a positive multiple of 16, got {self.crop}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr must be a positive number, got {self.lr}")
        if not (self.image_loss_weight >= 0 and math.isfinite(self.image_loss_weight)):
            problems.append(f"image_loss_weight must be >= 0, got {self.image_loss_weight}")
        if not (self.unsupervised_ratio >= 0 and math.isfinite(self.unsupervised_ratio)):
            problems.append(f"unsupervised_ratio must be >= 0, got {self.unsupervised_ratio}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if self.patience < 0:
            problems.append(f"patience must be >= 0, got {self.patience}")
        if not 0 < self.validation_fraction < 1:
            problems.append(
                f"validation_fraction must be between 0 and 1, got {self.validation_fraction}"
            )
        if self.num_workers is not None and self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        if not 0 <= self.threshold < 1:
            problems.append(f"threshold must be in [0, 1), got {self.threshold}")
        if not (self.membrane_weight > 0 and math.isfinite(self.membrane_weight)):
            problems.append(f"membrane_weight must be > 0, got {self.membrane_weight}")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            problems.append(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        """A JSON-able dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config of :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class TrainingData:
    """Training slices in memory, as read from disk (not standardised).

    Attributes
    ----------
    images : tuple of (H, W) ndarray of float32
        Labelled slices; each may have its own size.
    labels : tuple of (H, W) ndarray of bool
        Their membrane labels, True = membrane, same shapes as ``images``.
    unlabeled : tuple of (H, W) ndarray of float32
        Slices without labels (may be empty).
    names : tuple of str
        Where each labelled slice came from (``file.tif[z]``), for messages.
    """

    images: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    unlabeled: tuple[np.ndarray, ...] = ()
    names: tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} labelled slices but {len(self.labels)} labels")
        names = self.names or tuple(f"slice {i}" for i in range(len(self.images)))
        object.__setattr__(self, "names", tuple(names))
        for name, image, label in zip(self.names, self.images, self.labels, strict=True):
            if image.ndim != 2 or image.shape != label.shape:
                raise InputError(
                    name, f"image shape {image.shape} and label shape {label.shape} differ"
                )
        for i, image in enumerate(self.unlabeled):
            if image.ndim != 2:
                raise ValueError(f"unlabeled slice {i} is not 2D: shape {image.shape}")

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray | Sequence[np.ndarray],
        labels: np.ndarray | Sequence[np.ndarray],
        unlabeled: np.ndarray | Sequence[np.ndarray] = (),
    ) -> TrainingData:
        """Training data from (Z, H, W) stacks or sequences of 2D slices; labels > 0 = membrane."""
        return cls(
            images=tuple(np.asarray(s, dtype=np.float32) for s in images),
            labels=tuple(np.asarray(s) > 0 for s in labels),
            unlabeled=tuple(np.asarray(s, dtype=np.float32) for s in unlabeled),
        )


_VOLUME_SUFFIXES = io.TIFF_SUFFIXES + io.MRC_SUFFIXES + io.HDF5_SUFFIXES


def _volume_files(folder: Path) -> dict[str, Path]:
    """The volume files of a folder by stem; two files with one stem are an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in _VOLUME_SUFFIXES:
            continue
        stem = io.volume_stem(path)
        if stem in found:
            raise InputError(path, f"two files named '{stem}' ({found[stem].name}, {path.name})")
        found[stem] = path
    return found


def _slices(path: Path, dtype) -> list[np.ndarray]:
    data = io.read_volume(path).data
    return [np.asarray(s, dtype=dtype) for s in data]


def load_training_data(path: str | os.PathLike) -> TrainingData:
    """Read a training data set folder.

    Layout::

        DIR/labeled/images/<name>.tif    2D slice or 3D stack, raw intensities
        DIR/labeled/labels/<name>.tif    membrane labels, > 0 = membrane (0/255 uint8)
        DIR/unlabeled/images/<name>.tif  optional: slices without labels

    Images and labels pair by file name; every slice of a stack is a training slice.
    Any format :func:`sxtquant.io.read_volume` reads works (TIFF, MRC, HDF5).

    Raises
    ------
    InputError
        A missing folder, no labelled pair, an image without its label (or the other
        way round), an image and label of different shapes, or an unreadable file.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(root, "no such folder (expected labeled/images and labeled/labels)")
    image_dir, label_dir = root / "labeled" / "images", root / "labeled" / "labels"
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise InputError(folder, "no such folder")
    image_files, label_files = _volume_files(image_dir), _volume_files(label_dir)
    if not image_files:
        raise InputError(image_dir, "no labelled images (.tif, .mrc or .h5 files)")
    for stem, file in image_files.items():
        if stem not in label_files:
            raise InputError(file, f"no label for this image: expected {label_dir / file.name}")
    for stem, file in label_files.items():
        if stem not in image_files:
            raise InputError(file, f"no image for this label: expected {image_dir / file.name}")
    images, labels, names = [], [], []
    for stem, image_file in image_files.items():
        label_file = label_files[stem]
        stack = _slices(image_file, np.float32)
        mask = io.read_volume(label_file).data
        if mask.shape != (len(stack), *stack[0].shape):
            raise InputError(
                label_file,
                f"label shape {mask.shape} differs from image shape "
                f"{(len(stack), *stack[0].shape)} of {image_file.name}",
            )
        images.extend(stack)
        labels.extend(np.asarray(s) > 0 for s in mask)
        names.extend(f"{image_file.name}[{z}]" for z in range(len(stack)))
    unlabeled: list[np.ndarray] = []
    unlabeled_dir = root / "unlabeled" / "images"
    if unlabeled_dir.is_dir():
        for file in _volume_files(unlabeled_dir).values():
            unlabeled.extend(_slices(file, np.float32))
    return TrainingData(
        images=tuple(images), labels=tuple(labels), unlabeled=tuple(unlabeled), names=tuple(names)
    )


def split_slices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded train/validation split of ``n`` slices: (train indices, validation indices).

    At least one slice goes to each side; both index arrays are sorted.

    Raises
    ------
    ValueError
        If ``n < 2``.
    """
    if n < 2:
        raise ValueError(f"need at least 2 labelled slices for a train/validation split, got {n}")
    n_val = min(n - 1, max(1, round(n * fraction)))
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def label_target(mask: np.ndarray | torch.Tensor):
    """The label decoder's target: +1 for membrane (mask > 0), -1 for background."""
    if isinstance(mask, torch.Tensor):
        return torch.where(mask > 0, 1.0, -1.0).to(torch.float32)
    return np.where(np.asarray(mask) > 0, np.float32(1), np.float32(-1))


def _standardize(slices: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(standardize_slices(s), dtype=np.float32) for s in slices]


# --------------------------------------------------------------------------- augmentation


def augment(
    image: np.ndarray,
    label: np.ndarray | None,
    rng: np.random.Generator,
    *,
    crop: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A random ``crop`` × ``crop`` window, a random 90° rotation and random flips.

    The same transform is applied to ``image`` and ``label``. A slice smaller than the
    crop is padded first: the image with 0 (the mean of a standardised slice), the
    label with ``False`` (background).

    Parameters
    ----------
    image : (H, W) ndarray
    label : (H, W) ndarray or None
    rng : numpy.random.Generator
    crop : int

    Returns
    -------
    image, label : (crop, crop) ndarrays (contiguous copies); label None if not given.
    """
    h, w = image.shape
    pad_h, pad_w = max(0, crop - h), max(0, crop - w)
    if pad_h or pad_w:
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        image = np.pad(image, pads)
        if label is not None:
            label = np.pad(label, pads)
        h, w = image.shape
    y = int(rng.integers(0, h - crop + 1))
    x = int(rng.integers(0, w - crop + 1))
    k = int(rng.integers(0, 4))
    flip_y, flip_x = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))

    def transform(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a[y : y + crop, x : x + crop], k)
        if flip_y:
            a = a[::-1]
        if flip_x:
            a = a[:, ::-1]
        return np.ascontiguousarray(a)

    return transform(image), (transform(label) if label is not None else None)


class CropStream(torch.utils.data.Dataset):
    """Augmented training crops, each a pure function of (seed, stream, index).

    Item ``i`` picks a slice from ``pool`` and augments it with a generator seeded by
    ``(seed, stream, i)``, so a run draws the same crops whatever the number of loader
    workers, and a resumed run continues the exact sequence of an uninterrupted one.
    Items are ``(image,)`` or ``(image, target)`` float32 tensors of shape (1, crop, crop),
    the target +1/-1 (:func:`label_target`).
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray] | None,
        pool: Sequence[int],
        *,
        crop: int,
        seed: int,
        stream: int,
    ):
        if not len(pool):
            raise ValueError("empty pool of training slices")
        self.images, self.labels = images, labels
        self.pool = np.asarray(pool)
        self.crop, self.seed, self.stream = crop, seed, stream

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.stream, int(index)])
        i = int(self.pool[rng.integers(len(self.pool))])
        label = self.labels[i] if self.labels is not None else None
        image, label = augment(self.images[i], label, rng, crop=self.crop)
        image_t = torch.from_numpy(image)[None]
        if label is None:
            return (image_t,)
        return image_t, torch.from_numpy(label_target(label))[None]


# --------------------------------------------------------------------------- losses


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """A normalised 1D Gaussian window of ``size`` taps (float64)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float | torch.Tensor,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> torch.Tensor:
    """Mean structural similarity of each image pair, Gaussian-weighted (Wang et al. 2004).

    Local statistics use a separable Gaussian window (``window`` px, σ = ``sigma``),
    population (not sample) covariances, and only window positions fully inside the
    image ("valid"), as TensorFlow's ``tf.image.ssim`` and scikit-image's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)`` do.

    Parameters
    ----------
    x, y : (N, 1, H, W) tensors
        H and W at least ``window``.
    data_range : float or (N,) tensor
        Dynamic range of the images (max − min possible value).

    Returns
    -------
    (N,) tensor
        SSIM per image, 1 for identical images; differentiable.
    """
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(
            f"expected two (N, 1, H, W) tensors of one shape, got {x.shape}, {y.shape}"
        )
    g = gaussian_window(window, sigma).to(device=x.device, dtype=x.dtype)
    gy, gx = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(a, gy), gx)

    stats = blur(torch.cat([x, y, x * x, y * y, x * y], dim=0))
    mx, my, mxx, myy, mxy = stats.chunk(5, dim=0)
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    data_range = torch.as_tensor(data_range, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def huber(
    prediction: torch.Tensor,
    target: torch.Tensor,
    delta: float = HUBER_DELTA,
    *,
    membrane_weight: float = 1.0,
):
    """Mean Huber loss (quadratic below ``delta``, linear above), as Keras' ``Huber``.

    With ``membrane_weight`` != 1, membrane pixels (target > 0) weigh that much more
    than background pixels and the loss is the weighted mean.
    """
    if membrane_weight == 1.0:
        return F.huber_loss(prediction, target, delta=delta)
    weight = torch.where(target > 0, float(membrane_weight), 1.0)
    loss = F.huber_loss(prediction, target, delta=delta, reduction="none")
    return (weight * loss).sum() / weight.sum()


def image_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Huber(δ = 0.1) + (1 − SSIM) between the reconstruction and its target image.

    SSIM's data range is each target's own max − min (a standardised crop spans a few
    units; using its own range keeps the SSIM constants in proportion).
    """
    reconstruction, target = reconstruction.float(), target.float()
    data_range = (target.amax(dim=(1, 2, 3)) - target.amin(dim=(1, 2, 3))).clamp_min(1e-3)
    similarity = ssim(reconstruction, target, data_range=data_range.detach())
    return huber(reconstruction, target) + (1 - similarity).mean()


# --------------------------------------------------------------------------- steps


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


# --------------------------------------------------------------------------- validation


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
    threshold: float = 0.9,
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


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` leaves behind.

    Attributes
    ----------
    best_dir : Path
        Checkpoint folder of the epoch with the lowest validation loss (loadable by
        :func:`sxtquant.model.load_model`).
    last_dir : Path
        Checkpoint of the last finished epoch, with ``train_state.pt`` for ``resume``.
    log_path : Path
        The CSV log, one row per epoch (columns :data:`LOG_COLUMNS`).
    best_epoch : int
    best_val_loss : float
    epochs_run : int
        Epochs finished in total (including those before a resume).
    stopped_early : bool
    """

    best_dir: Path
    last_dir: Path
    log_path: Path
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    log: list[dict] = field(default_factory=list, repr=False)


def save_training_checkpoint(
    folder: str | os.PathLike,
    model: nn.Module,
    *,
    metadata: dict,
    state: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically: the model (``save_checkpoint``) and,
    when given, the training state (optimizer, epoch, RNG states...) as ``train_state.pt``."""
    folder = Path(folder)
    with io.atomic_output(folder) as tmp:
        save_checkpoint(model, tmp, metadata=metadata)
        if state is not None:
            torch.save(state, Path(tmp) / TRAIN_STATE)
    return folder


def load_training_state(folder: str | os.PathLike) -> dict:
    """The ``train_state.pt`` of a checkpoint folder.

    Raises
    ------
    InputError
        When the folder holds no training state.
    """
    path = Path(folder) / TRAIN_STATE
    if not path.exists():
        raise InputError(path.parent, "no training checkpoint to resume from (train_state.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or not ours
        raise InputError(path, f"cannot read the training state: {exc}") from None


def write_log(rows: list[dict], path: str | os.PathLike) -> Path:
    """The per-epoch CSV log (:data:`LOG_COLUMNS`), written atomically."""
    import pandas as pd

    return io.write_table(pd.DataFrame(rows, columns=list(LOG_COLUMNS)), path)


# --------------------------------------------------------------------------- the loop


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "CUDA was requested but no CUDA device is available")
    return torch.device(device)


def unsupervised_schedule(steps: int, ratio: float) -> list[int]:
    """How many unsupervised steps follow each of ``steps`` supervised steps.

    ``floor((k + 1) r) − floor(k r)`` after step k: spread evenly, ``floor(steps r)``
    in total.
    """
    return [math.floor((k + 1) * ratio) - math.floor(k * ratio) for k in range(steps)]


def _loader(
    dataset: CropStream, start: int, stop: int, batch_size: int, device: torch.device, workers: int
) -> Iterator:
    """Batches of ``dataset`` items start..stop-1 in order, prefetched by workers."""
    if stop <= start:
        return iter(())
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=range(start, stop),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    return iter(loader)


def _rng_states() -> dict:
    # Crops and flips come from generators seeded per item (CropStream): only torch's
    # global generators carry state from one epoch to the next.
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class _Progress:
    """Where a run stands after its last finished epoch (saved in ``train_state.pt``)."""

    epoch: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    stale_epochs: int = 0
    stopped_early: bool = False
    log: list[dict] = field(default_factory=list)

    def record(self, row: dict, patience: int) -> bool:
        """Add an epoch's log row; returns whether its validation loss is the best so far."""
        self.log.append(row)
        self.epoch = row["epoch"]
        improved = row["val_loss"] < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch, self.stale_epochs = row["val_loss"], self.epoch, 0
        else:
            self.stale_epochs += 1
        self.stopped_early = patience > 0 and self.stale_epochs >= patience
        return improved


def _initial_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The trained model ``config.init`` to fine-tune; it must be a ``config.preset`` network."""
    model = load_model(config.init, device=device)

    def is_preset(preset) -> bool:  # the batch-norm momentum is a training setting
        return dataclasses.replace(model.config, bn_momentum=preset.bn_momentum) == preset

    if not is_preset(MODEL_PRESETS[config.preset]):
        named = [name for name, preset in MODEL_PRESETS.items() if is_preset(preset)]
        raise InputError(
            config.init,
            f"is not a {config.preset} network"
            + (f"; fine-tune it with --preset {named[0]}" if named else ""),
        )
    return model


def _run_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    supervised: Iterator,
    unsupervised: Iterator,
    schedule: Sequence[int],
    config: TrainConfig,
    device: torch.device,
    bar,
) -> dict[str, float]:
    """The training steps of one epoch; returns the mean losses (NaN where none ran)."""
    sums = np.zeros(4)
    for n_unsup in schedule:
        x, t = (b.to(device, non_blocking=True) for b in next(supervised))
        losses = supervised_step(
            model,
            optimizer,
            x,
            t,
            image_loss_weight=config.image_loss_weight,
            supervised_only=config.supervised_only,
            membrane_weight=config.membrane_weight,
        )
        sums[:3] += (losses["loss"], losses["label_loss"], losses["image_loss"])
        for _ in range(n_unsup):
            (u,) = next(unsupervised)
            sums[3] += unsupervised_step(model, optimizer, u.to(device, non_blocking=True))
        bar.update(1 + n_unsup)
        bar.set_postfix(loss=f"{losses['loss']:.4f}", refresh=False)
    steps, unsup_steps = len(schedule), sum(schedule)
    return {
        "train_loss": float(sums[0] / steps),
        "train_label_loss": float(sums[1] / steps),
        "train_image_loss": math.nan if config.supervised_only else float(sums[2] / steps),
        "train_unsupervised_loss": float(sums[3] / unsup_steps) if unsup_steps else math.nan,
    }


def train(
    dataset: TrainingData,
    out_dir: str | os.PathLike,
    config: TrainConfig = TrainConfig(),
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the two-headed network on ``dataset``; checkpoints and log go to ``out_dir``.

    Each epoch runs ``steps_per_epoch`` supervised steps, each followed by its share of
    ``unsupervised_ratio`` unsupervised steps (none for ``supervised_only``), then
    validates on the held-out labelled slices. After every epoch ``out_dir/best/`` is
    rewritten when the validation loss improved, then ``out_dir/last/`` (model +
    ``train_state.pt``) and ``out_dir/log.csv``. Unsupervised crops come from the
    unlabelled slices and the training (not validation) labelled slices.

    Parameters
    ----------
    dataset : TrainingData
        Raw slices (standardised here, per slice).
    out_dir : path-like
    config : TrainConfig
    resume : bool
        Continue from ``out_dir/last/`` exactly where that run stopped (same data,
        preset and mode; ``config.epochs`` may be raised to train longer).
    progress : bool
        Show a progress bar per epoch (``--quiet`` silences it too).

    Returns
    -------
    TrainResult

    Raises
    ------
    InputError
        Fewer than two labelled slices, slices smaller than 16 px, ``cuda`` without a
        GPU, ``out_dir`` already holding a run (without ``resume``), or ``resume``
        without a checkpoint or with different data.
    """
    out_dir = Path(out_dir)
    device = resolve_device(config.device)
    if len(dataset.images) < 2:
        raise InputError(
            dataset.names[0] if dataset.names else "training data",
            f"need at least 2 labelled slices (train + validation), got {len(dataset.images)}",
        )
    for name, image in zip(dataset.names, dataset.images, strict=True):
        if min(image.shape) < SIZE_MULTIPLE:
            raise InputError(name, f"slice of shape {image.shape} is smaller than 16 pixels")

    train_idx, val_idx = split_slices(len(dataset.images), config.validation_fraction, config.seed)
    images = _standardize(dataset.images)
    all_images = images + _standardize(dataset.unlabeled)  # labelled first, then unlabelled
    unsup_pool = np.concatenate([train_idx, np.arange(len(images), len(all_images))])
    data_signature = {
        "shapes": [tuple(s.shape) for s in all_images],
        "n_labeled": len(images),
        "validation": val_idx.tolist(),
    }

    last_dir, best_dir, log_path = out_dir / "last", out_dir / "best", out_dir / "log.csv"
    run = _Progress()
    if not resume and (last_dir / TRAIN_STATE).exists():
        raise InputError(
            out_dir, "already holds a training run; continue it with --resume or use a new folder"
        )
    if resume:
        state = load_training_state(last_dir)
        if state["data"] != data_signature:
            raise InputError(last_dir, "the checkpoint was trained on different data")
        saved = TrainConfig.from_dict(state["config"])
        if (saved.preset, saved.supervised_only) != (config.preset, config.supervised_only):
            raise InputError(
                last_dir,
                f"the checkpoint is a {saved.preset} run"
                f"{' (supervised only)' if saved.supervised_only else ''}; "
                "resume it with the same --preset and --supervised-only",
            )
        model = load_model(last_dir, device=device)
        run = _Progress(**state["progress"])
    else:
        torch.manual_seed(config.seed)
        if config.init is not None:
            model = _initial_model(config, device)
        else:
            model_config = MODEL_PRESETS[config.preset]
            if config.bn_momentum is not None:
                model_config = dataclasses.replace(model_config, bn_momentum=config.bn_momentum)
            model = build_model(model_config).to(device)
    model.train()
    # supervised-only: the image decoder is outside the optimizer and never evaluated
    trainable = [
        p
        for name, p in model.named_parameters()
        if not (config.supervised_only and name.startswith("image_decoder."))
    ]
    optimizer = torch.optim.Adam(trainable, lr=config.lr)
    if resume:
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = config.lr
        _set_rng_states(state["rng"])

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    workers = config.num_workers
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    batch, steps = config.batch_size, config.steps_per_epoch
    schedule = unsupervised_schedule(
        steps, 0 if config.supervised_only else config.unsupervised_ratio
    )
    per_epoch = {"sup": steps * batch, "unsup": sum(schedule) * batch}
    start, end = run.epoch, (run.epoch if run.stopped_early else config.epochs)
    streams = {
        "sup": CropStream(
            images, dataset.labels, train_idx, crop=config.crop, seed=config.seed, stream=1
        ),
        "unsup": CropStream(
            all_images, None, unsup_pool, crop=config.crop, seed=config.seed, stream=2
        ),
    }
    batches = {
        k: _loader(streams[k], start * n, end * n, batch, device, workers)
        for k, n in per_epoch.items()
    }
    val_images = [images[i] for i in val_idx]
    val_labels = [dataset.labels[i] for i in val_idx]
    image_decoder = (
        frozen(model.image_decoder) if config.supervised_only else contextlib.nullcontext()
    )

    with image_decoder:
        for epoch in range(start, end):
            started = time.perf_counter()
            with utils.progress(
                total=steps + sum(schedule),
                desc=f"epoch {epoch + 1}/{config.epochs}",
                unit="step",
                **({} if progress else {"disable": True}),
            ) as bar:
                losses = _run_epoch(
                    model,
                    optimizer,
                    batches["sup"],
                    batches["unsup"],
                    schedule,
                    config,
                    device,
                    bar,
                )
            metrics = validate(
                model,
                val_images,
                val_labels,
                device=device,
                threshold=config.threshold,
                supervised_only=config.supervised_only,
            )
            row = {
                "epoch": epoch + 1,
                **losses,
                **metrics,
                "seconds": time.perf_counter() - started,
            }
            improved = run.record(row, config.patience)
            metadata = {**row, "train_config": config.to_dict()}
            if improved:
                save_training_checkpoint(best_dir, model, metadata=metadata)
            state = {
                "progress": dataclasses.asdict(run),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_states(),
                "config": config.to_dict(),
                "data": data_signature,
            }
            save_training_checkpoint(last_dir, model, metadata=metadata, state=state)
            write_log(run.log, log_path)
            if run.stopped_early:
                break
    return TrainResult(
        best_dir=best_dir,
        last_dir=last_dir,
        log_path=log_path,
        best_epoch=run.best_epoch,
        best_val_loss=run.best_val_loss,
        epochs_run=run.epoch,
        stopped_early=run.stopped_early,
        log=run.log,
    )
