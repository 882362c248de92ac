"""Where the tiles of a slice go and how they are blended back (numpy only, no torch).

Tile positions are explicit and always cover the slice: the last tile is flush with
the edge and every start is a multiple of 16, so the network's pooling grid is the
same in every tile. Each tile's feathered window is 1 except along its sides that
face a neighbouring tile (see :func:`tile_window`); :class:`_Plan` holds the tiles,
windows and the normalisation of one slice shape. The defaults of tiled inference are
here, so that the command line reads them without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_TILE = 256
DEFAULT_OVERLAP = 32
DEFAULT_BATCH_SIZE = 4


def tile_starts(length: int, tile: int, overlap: int, *, multiple: int = 16) -> list[int]:
    """Start positions of tiles of size ``tile`` covering ``[0, length)``.

    ``length`` and ``tile`` must be multiples of ``multiple`` with ``tile <= length``.
    The first tile starts at 0, the last ends at ``length``; all starts are
    multiples of ``multiple`` and consecutive tiles overlap by at least ``overlap``.

    Examples
    --------
    >>> tile_starts(512, 256, 32)
    [0, 128, 256]
    >>> tile_starts(256, 256, 32)
    [0]
    """
    if length % multiple or tile % multiple:
        raise ValueError(f"length {length} and tile {tile} must be multiples of {multiple}")
    if tile > length:
        raise ValueError(f"tile {tile} is larger than the length {length}")
    if length == tile:
        return [0]
    step = (tile - overlap) // multiple  # largest allowed stride, in units of `multiple`
    if step < 1:
        raise ValueError(f"tile {tile} minus overlap {overlap} must be at least {multiple} pixels")
    span = (length - tile) // multiple  # last start, in units
    n = math.ceil(span / step) + 1
    return [multiple * (i * span // (n - 1)) for i in range(n)]


def _ramp(n: int, overlap: int) -> np.ndarray:
    """Rising edge of the window over ``n`` pixels: 0 on the outer quarter of the
    overlap, raised cosine over the middle half, then 1."""
    margin = overlap // 4
    rise = max(overlap - 2 * margin, 1)
    d = np.arange(n, dtype=np.float64) - margin + 0.5
    t = np.clip(d / rise, 0.0, 1.0)
    return np.sin(0.5 * np.pi * t) ** 2


def tile_window(
    size: tuple[int, int], overlap: int, *, sides: tuple[bool, bool, bool, bool]
) -> np.ndarray:
    """Blending weights of one tile, float32 (h, w).

    ``sides`` = (top, bottom, left, right): whether a neighbouring tile lies on that
    side; only those sides are feathered.
    """
    h, w = size
    wy = np.ones(h)
    wx = np.ones(w)
    top, bottom, left, right = sides
    if overlap > 0:
        if top:
            wy = wy * _ramp(h, overlap)
        if bottom:
            wy = wy * _ramp(h, overlap)[::-1]
        if left:
            wx = wx * _ramp(w, overlap)
        if right:
            wx = wx * _ramp(w, overlap)[::-1]
    return np.outer(wy, wx).astype(np.float32)


@dataclass(frozen=True)
class _Plan:
    """Tiling of one slice shape: padded size, tile size, tiles with their windows."""

    shape: tuple[int, int]
    padded: tuple[int, int]
    tile: tuple[int, int]
    tiles: tuple[tuple[int, int], ...]
    windows: tuple[np.ndarray, ...]
    norm: np.ndarray  # 1 / sum of windows, (padded)

    @classmethod
    def make(cls, shape: tuple[int, int], tile: int, overlap: int, multiple: int) -> _Plan:
        h, w = shape
        ph, pw = (-(-h // multiple) * multiple, -(-w // multiple) * multiple)
        th, tw = min(tile, ph), min(tile, pw)
        ys = tile_starts(ph, th, overlap, multiple=multiple)
        xs = tile_starts(pw, tw, overlap, multiple=multiple)
        tiles, windows = [], []
        total = np.zeros((ph, pw), np.float64)
        for y in ys:
            for x in xs:
                sides = (y > 0, y + th < ph, x > 0, x + tw < pw)
                win = tile_window((th, tw), overlap, sides=sides)
                tiles.append((y, x))
                windows.append(win)
                total[y : y + th, x : x + tw] += win
        if not np.all(total > 0):  # cannot happen with valid starts; guard the division
            raise AssertionError("tiling leaves pixels without weight")
        return cls(
            shape=(h, w),
            padded=(ph, pw),
            tile=(th, tw),
            tiles=tuple(tiles),
            windows=tuple(windows),
            norm=(1.0 / total).astype(np.float32),
        )


def _pad_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pad (h, w) at the bottom/right to ``shape`` by reflection (edge for 1-pixel sides)."""
    h, w = image.shape
    ph, pw = shape[0] - h, shape[1] - w
    if ph == 0 and pw == 0:
        return image
    out = image
    if ph:
        out = np.pad(out, ((0, ph), (0, 0)), mode="reflect" if h > 1 else "edge")
    if pw:
        out = np.pad(out, ((0, 0), (0, pw)), mode="reflect" if w > 1 else "edge")
    return out


#: The axes :func:`sxtquant.nn.predict.predict_heads` may take slices along.
AXES = "zyx"


def check_axes(axes: str) -> str:
    """``axes`` if it names distinct axes out of ``z``, ``y``, ``x`` (e.g. ``"z"``,
    ``"zyx"``), else ``ValueError``.

    Examples
    --------
    >>> check_axes("zyx")
    'zyx'
    """
    if (
        not isinstance(axes, str)
        or not axes
        or any(a not in AXES for a in axes)
        or len(set(axes)) != len(axes)
    ):
        raise ValueError(
            f"axes must be distinct letters out of z, y, x (e.g. z or zyx), got {axes!r}"
        )
    return axes


def reflect_index(j: int, n: int) -> int:
    """Index ``j`` reflected into ``[0, n)`` about the end slices (-1 -> 1, n -> n - 2),
    as often as it takes (``n`` = 1: always 0).

    The neighbours of slice z for a network that sees k slices are
    ``reflect_index(z + d, n)`` for d in -k//2 ... k//2.

    Examples
    --------
    >>> [reflect_index(j, 4) for j in range(-3, 7)]
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n == 1:
        return 0
    period = 2 * (n - 1)
    j %= period
    return j if j < n else period - j
