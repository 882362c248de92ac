"""Tiled slice-wise inference with overlap blending, streaming through a volume.

Each (y, x) slice is standardised (mean 0, SD 1), padded at the bottom/right to
a multiple of 16 (reflection), cut into tiles at explicit positions that always
cover it (the last tile flush with the edge, every start a multiple of 16 so the
network's pooling grid is the same in every tile), run through the network in
batches and blended back with a feathered window normalised by the weight sum.

The window of a tile is 1 except along its sides that face a neighbouring tile:
there it is 0 over the outer quarter of the overlap (where the tile lacks context)
and rises smoothly (raised cosine) across the middle half. Adjacent windows
therefore overlap, sum to a positive weight everywhere, leave no seams, and never
use a tile's context-starved rim. Sides on the image's own border keep weight 1.

Probabilities are ``(label + 1) / 2`` of the network's tanh label, in [0, 1].

Examples
--------
>>> import numpy as np
>>> from sxtquant.nn.network import build_model
>>> from sxtquant.nn.predict import predict_slices
>>> model = build_model("tiny")
>>> prob = predict_slices(model, np.zeros((2, 40, 70), np.float32), device="cpu",
...                       tile=32, overlap=8, progress=False)
>>> prob.shape, prob.dtype
((2, 40, 70), dtype('float32'))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from sxtquant.core.device import resolve_device
from sxtquant.core.memory import reuse_freed_memory
from sxtquant.core.progress import is_quiet
from sxtquant.core.progress import progress as progress_bar
from sxtquant.nn.inference import prepare_for_inference
from sxtquant.nn.network import SXTNet, standardize_slices
from sxtquant.nn.tiling import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, DEFAULT_TILE, _pad_to, _Plan

__all__ = [
    "iter_label_slices",
    "iter_probability_slices",
    "predict_slices",
    "predict_volume",
]


# The 8 symmetries of the square: (k rotations by 90 degrees, flip) and their inverses.
_TTA = tuple((k, flip) for flip in (False, True) for k in range(4))


def _forward_label(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    if isinstance(model, SXTNet):
        return model.forward_label(batch)  # the image decoder is not needed
    out = model(batch)
    if isinstance(out, tuple | list):
        out = out[-1]  # (image, label)
    return out


def _predict_batch(model: nn.Module, batch: torch.Tensor, *, tta: bool) -> torch.Tensor:
    if not tta:
        return _forward_label(model, batch)
    acc = None
    for k, flip in _TTA:
        x = torch.rot90(batch, k, dims=(-2, -1))
        if flip:
            x = torch.flip(x, dims=(-1,))
        y = _forward_label(model, x).float()
        if flip:
            y = torch.flip(y, dims=(-1,))
        y = torch.rot90(y, -k, dims=(-2, -1))
        acc = y if acc is None else acc + y
    return acc / len(_TTA)


def _inference_model(model: nn.Module, device: torch.device) -> tuple[nn.Module, bool]:
    """The network to run: BN folded + channels-last for an SXTNet, else as given."""
    if isinstance(model, SXTNet):
        channels_last = True
        net = prepare_for_inference(model, channels_last=channels_last, device=device)
    else:
        channels_last = False
        net = model.eval().to(device)
    return net, channels_last


def iter_label_slices(
    model: nn.Module,
    slices: np.ndarray | Sequence[np.ndarray],
    *,
    device: str | torch.device = "auto",
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tta: bool = False,
    standardize: bool = True,
    amp: bool | None = None,
    progress: bool = True,
) -> Iterator[np.ndarray]:
    """Yield the network's blended label output (tanh, [-1, 1]) slice by slice.

    The streaming core of :func:`predict_slices`: memory holds the model, one batch
    of tiles and the accumulators of at most two slices, whatever the number of
    slices. ``slices`` may be a memory-mapped (n, h, w) array; slice ``i`` is read
    only when its tiles are needed. Batches of tiles run across slice boundaries.
    On CPU it calls :func:`reuse_freed_memory` first.

    Parameters
    ----------
    model : torch.nn.Module
        An :class:`~sxtquant.nn.network.SXTNet` (its BN is folded for inference, the
        model itself is not changed) or any module mapping (N, 1, H, W) to a tensor
        or to ``(image, label)``.
    standardize : bool
        Per-slice standardisation before the network (the network's convention).
    amp : bool, optional
        bf16 autocast; default: on for CUDA, off on CPU.

    Other parameters as :func:`predict_slices`.

    Yields
    ------
    (h, w) ndarray of float32
    """
    dev = resolve_device(device)
    if amp is None:
        amp = dev.type == "cuda"
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    config = getattr(model, "config", None)
    multiple = getattr(config, "multiple", 16)
    if tile < multiple or tile % multiple:
        raise ValueError(f"tile must be a positive multiple of {multiple}, got {tile}")
    if tile - overlap < multiple:
        raise ValueError(
            f"overlap {overlap} too large for tile {tile}: tile - overlap must be >= {multiple}"
        )
    if getattr(slices, "ndim", 3) != 3:
        raise ValueError(f"expected (n, h, w) slices, got shape {np.shape(slices)}")
    n_slices = len(slices)
    if n_slices == 0:
        return
    if dev.type == "cpu":
        reuse_freed_memory()
    net, channels_last = _inference_model(model, dev)
    plans: dict[tuple[int, int], _Plan] = {}

    def plan_of(shape: tuple[int, int]) -> _Plan:
        if shape not in plans:
            plans[shape] = _Plan.make(shape, tile, overlap, multiple)
        return plans[shape]

    def tasks() -> Iterator[tuple[int, int, np.ndarray, tuple[int, int]]]:
        for i in range(n_slices):
            image = np.asarray(slices[i], dtype=np.float32)
            if image.ndim != 2 or min(image.shape) < 1:
                raise ValueError(f"slice {i} is not a non-empty 2D image: shape {image.shape}")
            if standardize:
                image = standardize_slices(image)
            plan = plan_of(image.shape)
            padded = _pad_to(image, plan.padded)
            th, tw = plan.tile
            for t, (y, x) in enumerate(plan.tiles):
                yield i, t, padded[y : y + th, x : x + tw], image.shape

    acc: dict[int, np.ndarray] = {}
    remaining: dict[int, int] = {}
    shapes: dict[int, tuple[int, int]] = {}
    next_out = 0
    bar = progress_bar(
        total=n_slices, desc="segmenting", unit="slice", disable=not progress or is_quiet()
    )

    def run(batch: list[tuple[int, int, np.ndarray]]) -> None:
        x = torch.from_numpy(np.stack([b[2] for b in batch])[:, None]).to(dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            y = _predict_batch(net, x, tta=tta)
        y = y.float()[:, 0].cpu().numpy()
        for (i, t, _), pred in zip(batch, y, strict=True):
            plan = plan_of(shapes[i])
            ty, tx = plan.tiles[t]
            th, tw = plan.tile
            acc[i][ty : ty + th, tx : tx + tw] += plan.windows[t] * pred
            remaining[i] -= 1

    def finished() -> Iterator[np.ndarray]:
        nonlocal next_out
        while next_out in remaining and remaining[next_out] == 0:
            i = next_out
            plan = plan_of(shapes[i])
            h, w = plan.shape
            out = (acc.pop(i) * plan.norm)[:h, :w]
            del remaining[i], shapes[i]
            next_out += 1
            bar.update(1)
            yield out

    try:
        with torch.inference_mode():
            batch: list[tuple[int, int, np.ndarray]] = []
            for i, t, patch, shape in tasks():
                if i not in acc:
                    shapes[i] = shape
                    plan = plan_of(shape)
                    acc[i] = np.zeros(plan.padded, np.float32)
                    remaining[i] = len(plan.tiles)
                batch.append((i, t, patch))
                if len(batch) == batch_size:
                    run(batch)
                    batch = []
                    yield from finished()
            if batch:
                run(batch)
            yield from finished()
    finally:
        bar.close()


def iter_probability_slices(model: nn.Module, slices, **kwargs) -> Iterator[np.ndarray]:
    """Yield probabilities ``(label + 1) / 2`` in [0, 1], float32 (h, w), slice by slice.

    Keyword arguments as :func:`iter_label_slices`.
    """
    for label in iter_label_slices(model, slices, **kwargs):
        yield _to_probability(label)


def _to_probability(label: np.ndarray) -> np.ndarray:
    prob = (label + 1.0) * 0.5
    return np.clip(prob, 0.0, 1.0, out=prob).astype(np.float32, copy=False)


def predict_slices(
    model: nn.Module,
    slices: np.ndarray,
    *,
    device: str | torch.device = "auto",
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tta: bool = False,
    progress: bool = True,
) -> np.ndarray:
    """Membrane probabilities of every slice, by tiled inference.

    Parameters
    ----------
    model : torch.nn.Module
        The network (:func:`sxtquant.nn.checkpoint.load_model`); not modified.
    slices : (n, h, w) ndarray
        Any h, w (smaller than a tile is fine) and any real dtype; a (h, w) image is
        taken as one slice. Each slice is standardised (mean 0, SD 1) first.
    device : {"auto", "cpu", "cuda"} or torch.device
        ``auto`` picks CUDA when present (then channels-last and bf16 autocast).
    tile : int
        Tile side in pixels, a multiple of 16; slices smaller than a tile are
        processed as one (reflection-padded) tile.
    overlap : int
        Minimum overlap between neighbouring tiles in pixels; its outer quarter is
        discarded and its middle half blended.
    batch_size : int
        Tiles per network call.
    tta : bool
        8-fold test-time augmentation (4 rotations x flip), averaged.
    progress : bool
        Show a progress bar (also silenced by ``--quiet``).

    Returns
    -------
    (n, h, w) ndarray of float32
        Probabilities in [0, 1] (``(tanh + 1) / 2``).

    See Also
    --------
    predict_volume : writes into an output array (e.g. a memmap) slice by slice.
    """
    arr = slices
    if getattr(arr, "ndim", None) == 2:
        arr = np.asarray(arr)[None]
    n = len(arr)
    out = None
    for i, prob in enumerate(
        iter_probability_slices(
            model,
            arr,
            device=device,
            tile=tile,
            overlap=overlap,
            batch_size=batch_size,
            tta=tta,
            progress=progress,
        )
    ):
        if out is None:
            out = np.empty((n, *prob.shape), np.float32)
        out[i] = prob
    if out is None:
        out = np.empty((0, *np.shape(arr)[1:]), np.float32)
    return out


def predict_volume(
    model: nn.Module,
    volume: np.ndarray,
    out: np.ndarray | None = None,
    **kwargs,
) -> np.ndarray:
    """Probabilities of a (z, y, x) volume written slice by slice into ``out``.

    Parameters
    ----------
    volume : (Z, Y, X) array-like
        May be a memory map; read one slice at a time.
    out : (Z, Y, X) float32 array, optional
        Destination (e.g. a ``numpy.memmap`` or a ``tifffile.memmap``); allocated
        when not given. Memory use beyond ``volume`` and ``out`` is bounded by a few
        slices, whatever Z.
    **kwargs
        As :func:`predict_slices` (device, tile, overlap, batch_size, tta, progress).

    Returns
    -------
    out
    """
    shape = tuple(np.shape(volume))
    if len(shape) != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {shape}")
    if out is None:
        out = np.empty(shape, np.float32)
    elif tuple(out.shape) != shape:
        raise ValueError(f"output shape {tuple(out.shape)} differs from the volume's {shape}")
    for z, prob in enumerate(iter_probability_slices(model, volume, **kwargs)):
        out[z] = prob
    return out
