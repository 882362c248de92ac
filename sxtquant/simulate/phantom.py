"""The phantom on the voxel grid: absorption, membrane truth and instance labels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sxtquant.simulate.cell import (
    BILAYER_NM,
    CLASSES,
    LAC_PER_UM,
    PERINUCLEAR_SPACE_NM,
    CellContent,
    Phantom,
    _build_cell,
    _Object,
)
from sxtquant.simulate.geometry import _Shape, _Sphere, _Tube, _unit


def _box(shape: _Shape, shape_zyx, v, pad: float):
    """Index slices of the shape's bounding box grown by ``pad`` nm, or None if outside."""
    lo, hi = shape.bounds_nm()
    i0 = np.maximum(np.floor((lo - pad) / v).astype(int), 0)
    i1 = np.minimum(np.ceil((hi + pad) / v).astype(int) + 1, np.asarray(shape_zyx))
    if np.any(i1 <= i0):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(i0, i1, strict=True))


def _coords(box, v):
    z = (np.arange(box[0].start, box[0].stop, dtype=np.float32) * v)[:, None, None]
    y = (np.arange(box[1].start, box[1].stop, dtype=np.float32) * v)[None, :, None]
    x = (np.arange(box[2].start, box[2].stop, dtype=np.float32) * v)[None, None, :]
    return z, y, x


def _tube_sd(tube: _Tube, box, v, pad):
    """Signed distance of a tube over a box, computed segment by segment in sub-boxes."""
    shape = tuple(s.stop - s.start for s in box)
    out = np.full(shape, np.float32(1e9), dtype=np.float32)
    origin = np.array([s.start for s in box])
    for p0, p1 in zip(tube.pts[:-1], tube.pts[1:], strict=True):
        seg = _Tube(pts=np.stack([p0, p1]), r=tube.r)
        sub = _box(seg, np.array(origin) + shape, v, pad)
        if sub is None:
            continue
        sub = tuple(slice(max(s.start, o), s.stop) for s, o in zip(sub, origin, strict=True))
        if any(s.stop <= s.start for s in sub):
            continue
        local = tuple(slice(s.start - o, s.stop - o) for s, o in zip(sub, origin, strict=True))
        np.minimum(out[local], seg.sd(*_coords(sub, v)), out=out[local])
    return out


def _shape_sd(shape: _Shape, box, v, pad):
    if isinstance(shape, _Tube):
        return _tube_sd(shape, box, v, pad)
    return shape.sd(*_coords(box, v)).astype(np.float32, copy=False)


def _occupancy(sd, v):
    """Fraction of a voxel inside the surface (linear partial-volume model)."""
    return np.clip(0.5 - sd / v, 0.0, 1.0)


def _shell(sd, v, thickness):
    """Fraction of a voxel covered by a layer of ``thickness`` centred on the surface."""
    lo = np.maximum(sd - v / 2, -thickness / 2)
    hi = np.minimum(sd + v / 2, thickness / 2)
    return np.clip(hi - lo, 0.0, None) / v


def make_phantom(
    shape: Sequence[int] = (64, 256, 256),
    voxel_size_nm: float = 9.8,
    *,
    seed: int | np.random.Generator | None = 0,
    content: CellContent | None = None,
) -> Phantom:
    """Build a cell in vitreous ice with its ground truth.

    Parameters
    ----------
    shape : (Z, Y, X) ints
        Grid size in voxels.
    voxel_size_nm : float
        Isotropic voxel size in nm (9.8 nm, the reference paper's, by default).
    seed : int or numpy Generator
        Randomness; the same seed gives the same phantom.
    content : CellContent, optional
        What the cell contains.

    Returns
    -------
    Phantom

    Examples
    --------
    >>> ph = make_phantom((32, 96, 96), 9.8, seed=1)
    >>> ph.lac.dtype, ph.objects.dtype, bool(ph.membranes.any())
    (dtype('float32'), dtype('uint16'), True)
    """
    import pandas as pd
    from scipy import ndimage

    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"shape must be three sizes >= 8 voxels (z, y, x), got {shape}")
    v = float(voxel_size_nm)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"voxel size must be a positive number of nm, got {voxel_size_nm}")
    content = content or CellContent()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    objects = _build_cell(rng, shape, v, content)
    if len(objects) >= 2**16:
        raise ValueError("too many objects for uint16 labels; lower the organelle density")

    ice = LAC_PER_UM["ice"]
    lac = np.full(shape, ice, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    membranes = np.zeros(shape, dtype=bool)
    h = v  # membrane shell: voxel centres within one voxel of the surface (2-3 voxels)
    pad = 2 * v
    d_membrane = LAC_PER_UM["membrane"] - content.cytoplasm_lac

    by_class = {cls: [o for o in objects if o.cls == cls] for cls in CLASSES}
    cell = by_class["plasma_membrane"][0] if by_class["plasma_membrane"] else None

    # The cell body and its filopodia form one compound surface, drawn in z blocks so
    # that the temporaries stay small for large volumes.
    if cell is not None:
        texture = None
        if content.texture > 0:
            texture = rng.standard_normal(shape, dtype=np.float32)
            ndimage.gaussian_filter(texture, 1.5, output=texture, mode="reflect", truncate=3.0)
            texture *= np.float32(content.texture / max(float(texture.std()), 1e-6))
        filopodia = [(o, _box(o.shape, shape, v, pad)) for o in by_class["filopodium"]]
        for z0 in range(0, shape[0], 16):
            z1 = min(z0 + 16, shape[0])
            blk = (slice(z0, z1), slice(0, shape[1]), slice(0, shape[2]))
            sd_body = cell.shape.sd(*_coords(blk, v)).astype(np.float32)
            sd_union = sd_body.copy()
            for obj, box in filopodia:
                if box is None or box[0].start >= z1 or box[0].stop <= z0:
                    continue
                sub = (slice(max(box[0].start, z0), min(box[0].stop, z1)), box[1], box[2])
                local = (slice(sub[0].start - z0, sub[0].stop - z0), box[1], box[2])
                sd_f = _tube_sd(obj.shape, sub, v, pad)
                labels[sub][(sd_f <= 0) & (sd_body[local] > 0)] = obj.label
                np.minimum(sd_union[local], sd_f, out=sd_union[local])
            labels[blk][sd_body <= 0] = cell.label
            occ = _occupancy(sd_union, v)
            fill = np.float32(content.cytoplasm_lac - ice)
            if texture is not None:
                fill = fill + texture[blk]
            lac[blk] += fill * occ
            membranes[blk] |= np.abs(sd_union) <= h
            lac[blk] += np.float32(d_membrane) * _shell(sd_union, v, BILAYER_NM)
        del texture

    for cls in ("nucleus", "mitochondrion", "er", "vesicle", "lipid_droplet", "fiducial"):
        for obj in by_class[cls]:
            box = _box(obj.shape, shape, v, pad)
            if box is None:
                continue
            sd = _shape_sd(obj.shape, box, v, pad)
            occ = _occupancy(sd, v)
            value = _interior_lac(obj, box, v, sd, rng)
            lac[box] = lac[box] * (1 - occ) + value * occ
            labels[box][sd <= 0] = obj.label
            if obj.membrane is None:
                continue
            membranes[box] |= np.abs(sd) <= h
            thick = BILAYER_NM / 2 if obj.membrane == "monolayer" else BILAYER_NM
            lac[box] += np.float32(d_membrane) * _shell(sd, v, thick)
            if obj.membrane == "double":
                inner = sd + PERINUCLEAR_SPACE_NM
                membranes[box] |= np.abs(inner) <= h
                lac[box] += np.float32(d_membrane) * _shell(inner, v, BILAYER_NM)

    table = pd.DataFrame([o.row for o in objects])
    if len(table):
        first = ["label", "class", "parent", "shape"]
        table = table[first + [c for c in table.columns if c not in first]]
        table["touches_border"] = table["label"].isin(_border_labels(labels))
    else:
        table = pd.DataFrame(columns=["label", "class", "parent", "shape"])
    return Phantom(lac=lac, membranes=membranes, objects=labels, table=table, voxel_size_nm=v)


def _border_labels(labels: np.ndarray) -> np.ndarray:
    """The labels with a voxel on any of the six faces of the volume."""
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    return np.unique(np.concatenate([f.ravel() for f in faces]))


def _interior_lac(obj: _Object, box, v, sd, rng):
    """The LAC field inside an object (with internal structure where it has some)."""
    if obj.cls == "nucleus":
        # heterochromatin along the envelope, a nucleolus inside
        value = LAC_PER_UM["nucleoplasm"] + (
            LAC_PER_UM["heterochromatin"] - LAC_PER_UM["nucleoplasm"]
        ) * np.exp(np.minimum(sd + PERINUCLEAR_SPACE_NM, 0) / 60.0)
        ell = obj.shape
        nuc = _Sphere(
            c=ell.c + ell.rot @ (rng.uniform(-0.3, 0.3, 3) * ell.axes),
            r=0.3 * float(ell.axes.min()),
        )
        sd_n = nuc.sd(*_coords(box, v))
        return (value + (LAC_PER_UM["nucleolus"] - value) * _occupancy(sd_n, v)).astype(np.float32)
    if obj.cls == "mitochondrion":
        # cristae: density bands across the long axis (about 70 nm apart)
        tube = obj.shape
        z, y, x = _coords(box, v)
        axis = _unit(tube.pts[-1] - tube.pts[0])
        s = (
            (z - tube.pts[0][0]) * axis[0]
            + (y - tube.pts[0][1]) * axis[1]
            + (x - tube.pts[0][2]) * axis[2]
        )
        return (obj.lac + 0.05 * np.cos(2 * math.pi * s / 70.0)).astype(np.float32)
    return np.float32(obj.lac)
