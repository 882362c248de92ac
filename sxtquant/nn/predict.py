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

A 2.5D network (``config.in_slices`` = k > 1) sees slice z with its neighbours:
its input is slices z - k//2 ... z + k//2, each standardised on its own, the
indices reflected at the stack's ends (:func:`~sxtquant.nn.tiling.reflect_index`:
-1 -> 1, n -> n - 2); its tiles are (k, tile, tile). Every slice is still read and
standardised once, and memory holds a few slices whatever their number.

Probabilities are ``(label + 1) / 2`` of the network's tanh label, in [0, 1].
:func:`predict_slices`, :func:`predict_volume` and the iterators give the membrane;
:func:`predict_heads` and :func:`iter_head_slices` every head of the network
(``membrane``, then ``config.regions``), and :func:`predict_heads` can average
predictions made along several axes.

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

Why this size: the streaming core (tiles, 2.5D context, batches across slices,
blending) is one generator whose state (the slice cache, the accumulators, the
batch) every public form shares; the forms (membrane, every head, several axes)
are thin and stay beside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from sxtquant.core.device import resolve_device
from sxtquant.core.memory import reuse_freed_memory
from sxtquant.core.progress import is_quiet
from sxtquant.core.progress import progress as progress_bar
from sxtquant.nn.inference import prepare_for_inference
from sxtquant.nn.network import SXTNet, standardize_slices
from sxtquant.nn.tiling import (
    AXES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    _pad_to,
    _Plan,
    check_axes,
    reflect_index,
)

__all__ = [
    "head_names",
    "iter_head_slices",
    "iter_label_slices",
    "iter_probability_slices",
    "predict_heads",
    "predict_slices",
    "predict_volume",
]


# The 8 symmetries of the square: (k rotations by 90 degrees, flip) and their inverses.
_TTA = tuple((k, flip) for flip in (False, True) for k in range(4))


def head_names(model: nn.Module) -> tuple[str, ...]:
    """The names of the network's output channels, in order: ``config.heads``
    (``membrane``, then the regions), or ``("membrane",)`` for a module without them."""
    return tuple(getattr(getattr(model, "config", None), "heads", ("membrane",)))


def _forward_heads(
    model: nn.Module, batch: torch.Tensor, channels: tuple[int, ...] | None
) -> torch.Tensor:
    if isinstance(model, SXTNet):
        out = model.forward_heads(batch)  # the image decoder is not needed
    else:
        out = model(batch)
        if isinstance(out, tuple | list):
            out = out[-1]  # (image, label)
    return out if channels is None else out[:, list(channels)]


def _predict_batch(
    model: nn.Module, batch: torch.Tensor, *, tta: bool, channels: tuple[int, ...] | None
) -> torch.Tensor:
    if not tta:
        return _forward_heads(model, batch, channels)
    acc = None
    for k, flip in _TTA:
        x = torch.rot90(batch, k, dims=(-2, -1))
        if flip:
            x = torch.flip(x, dims=(-1,))
        y = _forward_heads(model, x, channels).float()
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


def _channels_of(model: nn.Module, heads: Sequence[str] | None) -> tuple[int, ...] | None:
    """Indices of ``heads`` among the model's heads (None: all of them)."""
    if heads is None:
        return None
    names = head_names(model)
    heads = tuple(heads)
    unknown = [h for h in heads if h not in names]
    if unknown or not heads:
        raise ValueError(f"heads must be some of {', '.join(names)}, got {', '.join(heads)}")
    return tuple(names.index(h) for h in heads)


def _iter_labels(
    model: nn.Module,
    slices: np.ndarray | Sequence[np.ndarray],
    *,
    channels: tuple[int, ...] | None,
    start: int = 0,
    stop: int | None = None,
    device: str | torch.device = "auto",
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tta: bool = False,
    standardize: bool = True,
    amp: bool | None = None,
    progress: bool = True,
) -> Iterator[np.ndarray]:
    """The streaming core: the blended tanh of the heads ``channels`` (None: all),
    (C, h, w) float32, for slices ``start`` ... ``stop - 1``; a 2.5D network's
    neighbours come from all of ``slices``, reflected at its ends."""
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
    stop = n_slices if stop is None else stop
    if not 0 <= start <= stop <= n_slices:
        raise ValueError(f"slices {start} to {stop} are not within the {n_slices} given")
    targets = range(start, stop)
    if not targets:
        return
    radius = int(getattr(config, "in_slices", 1)) // 2
    context = {
        z: tuple(reflect_index(z + d, n_slices) for d in range(-radius, radius + 1))
        for z in targets
    }
    last_use = {j: z for z in targets for j in context[z]}
    if dev.type == "cpu":
        reuse_freed_memory()
    net, channels_last = _inference_model(model, dev)
    plans: dict[tuple[int, int], _Plan] = {}

    def plan_of(shape: tuple[int, int]) -> _Plan:
        if shape not in plans:
            plans[shape] = _Plan.make(shape, tile, overlap, multiple)
        return plans[shape]

    cache: dict[int, tuple[tuple[int, int], np.ndarray]] = {}  # standardised, padded

    def read(j: int) -> tuple[tuple[int, int], np.ndarray]:
        if j not in cache:
            image = np.asarray(slices[j], dtype=np.float32)
            if image.ndim != 2 or min(image.shape) < 1:
                raise ValueError(f"slice {j} is not a non-empty 2D image: shape {image.shape}")
            if standardize:
                image = standardize_slices(image)
            cache[j] = image.shape, _pad_to(image, plan_of(image.shape).padded)
        return cache[j]

    def tasks() -> Iterator[tuple[int, int, np.ndarray, tuple[int, int]]]:
        for z in targets:
            shape = read(z)[0]
            for j in context[z]:
                if read(j)[0] != shape:
                    raise ValueError(
                        f"slice {j} has shape {read(j)[0]}, its neighbour slice {z} {shape}: "
                        "a network that sees several slices needs them all of one shape"
                    )
            stack = np.stack([read(j)[1] for j in context[z]])
            for j in set(context[z]):
                if last_use[j] == z:
                    del cache[j]
            plan = plan_of(shape)
            th, tw = plan.tile
            for t, (y, x) in enumerate(plan.tiles):
                yield z, t, stack[:, y : y + th, x : x + tw], shape

    acc: dict[int, np.ndarray] = {}
    remaining: dict[int, int] = {}
    shapes: dict[int, tuple[int, int]] = {}
    next_out = start
    bar = progress_bar(
        total=len(targets), desc="segmenting", unit="slice", disable=not progress or is_quiet()
    )

    def run(batch: list[tuple[int, int, np.ndarray]]) -> None:
        x = torch.from_numpy(np.stack([b[2] for b in batch])).to(dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            y = _predict_batch(net, x, tta=tta, channels=channels)
        y = y.float().cpu().numpy()
        for (i, t, _), pred in zip(batch, y, strict=True):
            plan = plan_of(shapes[i])
            if i not in acc:
                acc[i] = np.zeros((len(pred), *plan.padded), np.float32)
            ty, tx = plan.tiles[t]
            th, tw = plan.tile
            acc[i][:, ty : ty + th, tx : tx + tw] += plan.windows[t] * pred
            remaining[i] -= 1

    def finished() -> Iterator[np.ndarray]:
        nonlocal next_out
        while next_out in remaining and remaining[next_out] == 0:
            i = next_out
            plan = plan_of(shapes[i])
            h, w = plan.shape
            out = (acc.pop(i) * plan.norm)[:, :h, :w]
            del remaining[i], shapes[i]
            next_out += 1
            bar.update(1)
            yield out

    try:
        with torch.inference_mode():
            batch: list[tuple[int, int, np.ndarray]] = []
            for i, t, patch, shape in tasks():
                if i not in remaining:
                    shapes[i] = shape
                    remaining[i] = len(plan_of(shape).tiles)
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
    """Yield the network's blended membrane label (tanh, [-1, 1]) slice by slice.

    The streaming core of :func:`predict_slices`: memory holds the model, one batch
    of tiles, the accumulators of at most two slices and, for a 2.5D network, the
    k slices around the current one, whatever the number of slices. ``slices`` may
    be a memory-mapped (n, h, w) array; each slice is read once, when its tiles (or
    a neighbour's) are needed. Batches of tiles run across slice boundaries. On CPU
    it calls :func:`reuse_freed_memory` first.

    Parameters
    ----------
    model : torch.nn.Module
        An :class:`~sxtquant.nn.network.SXTNet` (its BN is folded for inference, the
        model itself is not changed) or any module mapping (N, k, H, W) to a tensor
        or to ``(image, label)`` (k = ``model.config.in_slices``, else 1).
    standardize : bool
        Per-slice standardisation before the network (the network's convention).
    amp : bool, optional
        bf16 autocast; default: on for CUDA, off on CPU.

    Other parameters as :func:`predict_slices`.

    Yields
    ------
    (h, w) ndarray of float32
    """
    options = {"device": device, "tile": tile, "overlap": overlap, "batch_size": batch_size}
    options.update(tta=tta, standardize=standardize, amp=amp, progress=progress)
    for label in _iter_labels(model, slices, channels=(0,), **options):
        yield label[0]


def iter_head_slices(
    model: nn.Module,
    slices: np.ndarray | Sequence[np.ndarray],
    *,
    heads: Sequence[str] | None = None,
    start: int = 0,
    stop: int | None = None,
    **kwargs,
) -> Iterator[np.ndarray]:
    """Yield the probabilities of every head (or of ``heads``), (C, h, w), slice by slice.

    Parameters
    ----------
    model : torch.nn.Module
        As :func:`iter_label_slices`.
    slices : (n, h, w) array-like
        As :func:`iter_label_slices` (may be a memory map, read slice by slice).
    heads : sequence of str, optional
        Which heads, in this order, out of :func:`head_names` (default: all of them,
        ``membrane`` first).
    start, stop : int
        Yield slices ``start`` ... ``stop - 1`` only (default: all); a 2.5D network's
        neighbours still come from all of ``slices`` and are reflected only at its
        ends, so a block of slices given with its neighbours (a halo of k//2 slices
        each side) comes out as it would within the whole stack.
    **kwargs
        As :func:`iter_label_slices` (device, tile, overlap, batch_size, tta,
        standardize, amp, progress).

    Yields
    ------
    (C, h, w) ndarray of float32
        ``(tanh + 1) / 2`` in [0, 1]; channel c is head ``heads[c]``.
    """
    channels = _channels_of(model, heads)
    for label in _iter_labels(model, slices, channels=channels, start=start, stop=stop, **kwargs):
        yield _to_probability(label)


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


def predict_heads(
    model: nn.Module,
    volume: np.ndarray,
    *,
    axes: str = "z",
    out: Mapping[str, np.ndarray] | None = None,
    device: str | torch.device = "auto",
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tta: bool = False,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Probabilities of every head of the network for a (z, y, x) volume.

    Parameters
    ----------
    model : torch.nn.Module
        As :func:`predict_slices`; a region-aware network (``config.regions``) gives
        its regions beside the membrane, a 2.5D one (``config.in_slices`` > 1) sees
        each slice with its neighbours.
    volume : (Z, Y, X) array-like
        Any real dtype. With ``axes="z"`` it may be a memory map, read one slice at a
        time (memory beyond ``volume`` and ``out``: a few slices).
    axes : str
        Distinct letters out of ``z``, ``y``, ``x``: predict with the slices taken
        along each named axis (the volume transposed so that axis comes first,
        predicted slice by slice, transposed back) and average the probabilities
        (float32, summed in the order given, divided by their number). ``"z"`` (the
        default) is the network's own way. Any other axis needs the whole volume in
        memory, plus a float32 (heads, Z, Y, X) prediction per axis; it makes sense
        for (near) isotropic voxels.
    out : mapping of str to (Z, Y, X) float32 arrays, optional
        Destinations by head name (e.g. memory maps), one per head of the network;
        allocated when not given.
    device, tile, overlap, batch_size, tta, progress
        As :func:`predict_slices`.

    Returns
    -------
    dict of str to (Z, Y, X) ndarray of float32
        ``(tanh + 1) / 2`` in [0, 1] by head name, in the order of
        :func:`head_names` (``membrane`` first, then the regions, e.g. ``cell``,
        ``organelles``). ``membrane`` equals :func:`predict_volume`.

    Examples
    --------
    >>> import dataclasses
    >>> import numpy as np
    >>> from sxtquant.nn.config import PRESETS
    >>> from sxtquant.nn.network import build_model
    >>> config = dataclasses.replace(PRESETS["tiny"], in_slices=3, regions=("cell",))
    >>> probs = predict_heads(build_model(config), np.zeros((4, 32, 40)), device="cpu",
    ...                       tile=32, overlap=0, progress=False)
    >>> {name: p.shape for name, p in probs.items()}
    {'membrane': (4, 32, 40), 'cell': (4, 32, 40)}
    """
    axes = check_axes(axes)
    shape = tuple(np.shape(volume))
    if len(shape) != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {shape}")
    names = head_names(model)
    if out is None:
        out = {name: np.empty(shape, np.float32) for name in names}
    elif set(out) != set(names):
        raise ValueError(f"out must have one array per head ({', '.join(names)}), got {list(out)}")
    for name, array in out.items():
        if tuple(array.shape) != shape:
            raise ValueError(f"output {name!r} has shape {tuple(array.shape)}, the volume {shape}")
    options = {"device": device, "tile": tile, "overlap": overlap, "batch_size": batch_size}
    options.update(tta=tta, progress=progress)
    if axes == "z":
        for z, probs in enumerate(iter_head_slices(model, volume, **options)):
            _check_heads(probs, names)
            for name, prob in zip(names, probs, strict=True):
                out[name][z] = prob
        return dict(out)
    whole = np.asarray(volume)
    total = None
    for letter in axes:
        axis = AXES.index(letter)
        view = np.moveaxis(whole, axis, 0)
        pred = np.empty((len(names), *view.shape), np.float32)
        for i, probs in enumerate(iter_head_slices(model, view, **options)):
            _check_heads(probs, names)
            pred[:, i] = probs
        pred = np.moveaxis(pred, 1, axis + 1)
        if total is None:
            total = np.ascontiguousarray(pred)
        else:
            total += pred
    total /= np.float32(len(axes))
    for name, mean in zip(names, total, strict=True):
        out[name][...] = mean
    return dict(out)


def _check_heads(probs: np.ndarray, names: tuple[str, ...]) -> None:
    if len(probs) != len(names):
        raise ValueError(
            f"the model gives {len(probs)} output channels, its heads are {', '.join(names)}"
        )
