"""Training data: labelled and unlabelled slices, augmentation, crop streams."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sxtquant import io
from sxtquant.core.errors import InputError
from sxtquant.nn.network import standardize_slices
from sxtquant.nn.tiling import reflect_index


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
    regions : tuple of (H, W) ndarray of uint8
        Optional region labels of the labelled slices (0 outside the cell, 1 cell
        interior, 2 organelle interior; the simulator's ``regions/``), or empty.
    positions : tuple of (str, int)
        Optional: which tomogram and z each slice (labelled, then unlabelled) comes
        from; 2.5D training takes a slice's neighbours from them (:func:`context_indices`).
        Empty: every slice stands alone.
    """

    images: tuple[np.ndarray, ...]
    labels: tuple[np.ndarray, ...]
    unlabeled: tuple[np.ndarray, ...] = ()
    names: tuple[str, ...] = ()
    regions: tuple[np.ndarray, ...] = ()
    positions: tuple[tuple[str, int], ...] = ()

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
        if self.regions:
            if len(self.regions) != len(self.images):
                raise ValueError(
                    f"{len(self.images)} labelled slices but {len(self.regions)} regions"
                )
            for name, image, region in zip(self.names, self.images, self.regions, strict=True):
                if region.shape != image.shape:
                    raise InputError(
                        name, f"image shape {image.shape} and regions shape {region.shape} differ"
                    )
        n_slices = len(self.images) + len(self.unlabeled)
        if self.positions and len(self.positions) != n_slices:
            raise ValueError(f"{n_slices} slices but {len(self.positions)} positions")

    def context(self, in_slices: int) -> list[tuple[int, ...]] | None:
        """The neighbours of every slice (labelled, then unlabelled) for ``in_slices``
        input slices (:func:`context_indices`); ``None`` for one slice."""
        if in_slices == 1:
            return None
        if not self.positions:
            raise InputError(
                self.names[0] if self.names else "training data",
                f"{in_slices} input slices need each slice's neighbours: give 3D stacks "
                "(or 2D slices named <tomogram>_z<NNNN>)",
            )
        names = self.names + tuple(f"unlabelled slice {i}" for i in range(len(self.unlabeled)))
        return context_indices(self.positions, in_slices, names=names)

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


def context_indices(
    positions: Sequence[tuple[str, int]], in_slices: int, *, names: Sequence[str] = ()
) -> list[tuple[int, ...]]:
    """For every slice, the indices of the ``in_slices`` slices centred on it.

    Slices are grouped by tomogram (``positions[i] = (tomogram, z)``); the neighbours
    of slice z are z - k//2 ... z + k//2 of its tomogram, reflected at the tomogram's
    first and last slice, as inference does.

    Raises
    ------
    InputError
        A tomogram whose slices are not consecutive in z (a neighbour is missing), or
        a lone slice (``in_slices > 1``).
    """
    if in_slices < 1 or in_slices % 2 == 0:
        raise ValueError(f"in_slices must be odd and >= 1, got {in_slices}")
    groups: dict[str, dict[int, int]] = {}
    for i, (group, z) in enumerate(positions):
        groups.setdefault(group, {})[int(z)] = i
    r = in_slices // 2
    out = []
    for i, (group, z) in enumerate(positions):
        members = groups[group]
        z0, n = min(members), len(members)
        if n == 1 and in_slices > 1:
            raise InputError(
                names[i] if i < len(names) else group,
                f"a lone slice has no neighbours for {in_slices} input slices; "
                "give the tomogram as a 3D stack",
            )
        if max(members) - z0 + 1 != n:
            raise InputError(
                names[i] if i < len(names) else group,
                f"the slices of {group} are not consecutive in z; "
                f"{in_slices} input slices need every neighbour",
            )
        out.append(tuple(members[z0 + reflect_index(z - z0 + d, n)] for d in range(-r, r + 1)))
    return out


def _slice_position(stem: str, group: str, z: int, n: int) -> tuple[str, int]:
    """(tomogram, z) of slice ``z`` of a file: a 2D file ``<tomo>_z<NNNN>`` is slice NNNN
    of ``<tomo>``; every slice of a stack is a slice of the file's tomogram."""
    match = re.fullmatch(r"(.+)_z(\d+)", stem)
    if match and n == 1:
        return f"{group}/{match.group(1)}", int(match.group(2))
    return f"{group}/{stem}", z


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


def load_training_data(path: str | os.PathLike, *, regions: bool = False) -> TrainingData:
    """Read a training data set folder.

    Layout::

        DIR/labeled/images/<name>.tif    2D slice or 3D stack, raw intensities
        DIR/labeled/labels/<name>.tif    membrane labels, > 0 = membrane (0/255 uint8)
        DIR/labeled/regions/<name>.tif   with ``regions``: 0 outside the cell, 1 cell
                                         interior, 2 organelle interior
        DIR/unlabeled/images/<name>.tif  optional: slices without labels

    Images and labels pair by file name; every slice of a stack is a training slice.
    Any format :func:`sxtquant.io.read_volume` reads works (TIFF, MRC, HDF5). Each
    slice's tomogram and z are kept (a stack's slices, or 2D files named
    ``<tomogram>_z<NNNN>``) for 2.5D training.

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
    region_dir = root / "labeled" / "regions"
    region_files = {}
    if regions:
        if not region_dir.is_dir():
            raise InputError(region_dir, "no such folder (region training needs region labels)")
        region_files = _volume_files(region_dir)
    images, labels, names, region_slices, positions = [], [], [], [], []
    for stem, image_file in image_files.items():
        stack = _slices(image_file, np.float32)
        shape = (len(stack), *stack[0].shape)
        mask = _matching(label_files[stem], shape, image_file, "label")
        if regions:
            if stem not in region_files:
                raise InputError(
                    image_file,
                    f"no regions for this image: expected {region_dir / image_file.name}",
                )
            region = _matching(region_files[stem], shape, image_file, "regions")
            region_slices.extend(np.asarray(s, dtype=np.uint8) for s in region)
        images.extend(stack)
        labels.extend(np.asarray(s) > 0 for s in mask)
        names.extend(f"{image_file.name}[{z}]" for z in range(len(stack)))
        positions.extend(_slice_position(stem, "labeled", z, len(stack)) for z in range(len(stack)))
    unlabeled: list[np.ndarray] = []
    unlabeled_dir = root / "unlabeled" / "images"
    if unlabeled_dir.is_dir():
        for stem, file in _volume_files(unlabeled_dir).items():
            stack = _slices(file, np.float32)
            unlabeled.extend(stack)
            positions.extend(
                _slice_position(stem, "unlabeled", z, len(stack)) for z in range(len(stack))
            )
    return TrainingData(
        images=tuple(images),
        labels=tuple(labels),
        unlabeled=tuple(unlabeled),
        names=tuple(names),
        regions=tuple(region_slices),
        positions=tuple(positions),
    )


def _matching(path: Path, shape: tuple[int, ...], image_file: Path, what: str) -> np.ndarray:
    """The volume of ``path``, which must have the image's (z, y, x) ``shape``."""
    data = io.read_volume(path).data
    if data.shape != shape:
        raise InputError(
            path, f"{what} shape {data.shape} differs from image shape {shape} of {image_file.name}"
        )
    return data


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
    """The label decoder's target: +1 for membrane (mask > 0), -1 for background
    (per channel for a (C, H, W) stack of masks)."""
    if isinstance(mask, torch.Tensor):
        return torch.where(mask > 0, 1.0, -1.0).to(torch.float32)
    return np.where(np.asarray(mask) > 0, np.float32(1), np.float32(-1))


def region_masks(regions: np.ndarray) -> np.ndarray:
    """The nested region targets of a region label image: (2, ...) bool, cell interior
    (regions >= 1, organelles included) and organelle interior (regions == 2)."""
    regions = np.asarray(regions)
    return np.stack([regions >= 1, regions == 2])


def label_stack(label: np.ndarray, regions: np.ndarray | None) -> np.ndarray:
    """The masks of every head for one slice: (1, H, W) membrane, or (3, H, W) membrane,
    cell interior and organelle interior when ``regions`` is given."""
    membrane = np.asarray(label, dtype=bool)[None]
    if regions is None:
        return membrane
    return np.concatenate([membrane, region_masks(regions)])


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

    The same transform is applied to ``image`` and ``label``, over their last two
    axes (leading axes, such as context slices or heads, follow along). A slice
    smaller than the crop is padded first: the image with 0 (the mean of a
    standardised slice), the label with ``False`` (background).

    Parameters
    ----------
    image : (..., H, W) ndarray
    label : (..., H, W) ndarray or None
    rng : numpy.random.Generator
    crop : int

    Returns
    -------
    image, label : (..., crop, crop) ndarrays (contiguous copies); label None if not given.
    """
    h, w = image.shape[-2:]
    pad_h, pad_w = max(0, crop - h), max(0, crop - w)
    if pad_h or pad_w:
        pads = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
        image = np.pad(image, ((0, 0),) * (image.ndim - 2) + pads)
        if label is not None:
            label = np.pad(label, ((0, 0),) * (label.ndim - 2) + pads)
        h, w = image.shape[-2:]
    y = int(rng.integers(0, h - crop + 1))
    x = int(rng.integers(0, w - crop + 1))
    k = int(rng.integers(0, 4))
    flip_y, flip_x = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))

    def transform(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a[..., y : y + crop, x : x + crop], k, axes=(-2, -1))
        if flip_y:
            a = a[..., ::-1, :]
        if flip_x:
            a = a[..., ::-1]
        return np.ascontiguousarray(a)

    return transform(image), (transform(label) if label is not None else None)


class CropStream(torch.utils.data.Dataset):
    """Augmented training crops, each a pure function of (seed, stream, index).

    Item ``i`` picks a slice from ``pool`` and augments it with a generator seeded by
    ``(seed, stream, i)``, so a run draws the same crops whatever the number of loader
    workers, and a resumed run continues the exact sequence of an uninterrupted one.
    Items are ``(image,)`` or ``(image, target)`` float32 tensors: the image
    (k, crop, crop), the k slices of ``context[i]`` (k = 1 without ``context``); the
    target +1/-1 (:func:`label_target`) per head, (1, crop, crop) for the membrane or
    (3, crop, crop) with ``regions`` (membrane, cell interior, organelle interior).
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
        regions: Sequence[np.ndarray] | None = None,
        context: Sequence[tuple[int, ...]] | None = None,
    ):
        if not len(pool):
            raise ValueError("empty pool of training slices")
        self.images, self.labels, self.regions = images, labels, regions or None
        self.pool, self.context = np.asarray(pool), context
        self.crop, self.seed, self.stream = crop, seed, stream

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.stream, int(index)])
        i = int(self.pool[rng.integers(len(self.pool))])
        label = None
        if self.labels is not None:
            label = label_stack(self.labels[i], None if self.regions is None else self.regions[i])
        image = (
            self.images[i] if self.context is None else stack_context(self.images, self.context[i])
        )
        image, label = augment(image, label, rng, crop=self.crop)
        image_t = torch.from_numpy(image if image.ndim == 3 else image[None])
        if label is None:
            return (image_t,)
        return image_t, torch.from_numpy(label_target(label))


def stack_context(images: Sequence[np.ndarray], indices: Sequence[int]) -> np.ndarray:
    """The slices ``indices`` of ``images`` as one (k, H, W) array."""
    return np.stack([images[j] for j in indices])
