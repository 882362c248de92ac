"""Training data: labelled and unlabelled slices, augmentation, crop streams."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sxtquant import io
from sxtquant.core.errors import InputError
from sxtquant.nn.network import standardize_slices


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
