"""Region ground truth from the simulator's instance labels: cell interior and organelles."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CELL_CLASSES", "ORGANELLE_CLASSES", "region_labels", "region_masks"]

#: Classes that make the cell itself: the body (inside the plasma membrane) and its
#: filopodia. Every object whose parent chain reaches one of them is inside the cell.
CELL_CLASSES = ("plasma_membrane", "filopodium")

#: Classes whose interiors are organelles. The nucleolus, heterochromatin and cristae
#: have no labels of their own (they are density inside the nucleus and mitochondria).
ORGANELLE_CLASSES = ("nucleus", "mitochondrion", "er", "vesicle", "lipid_droplet")


def region_masks(objects: np.ndarray, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The cell and organelle regions of a simulated specimen.

    Parameters
    ----------
    objects : (Z, Y, X) ndarray of int
        Filled instance labels, a voxel holding the label of the innermost object
        containing it (:attr:`Phantom.objects`, ``objects.tif``); 0 = ice.
    table : pandas.DataFrame
        One row per label with ``label``, ``class`` and ``parent`` (the label of the
        enclosing object, 0 for none): :attr:`Phantom.table`, ``objects.csv``.

    Returns
    -------
    cell : (Z, Y, X) ndarray of bool
        The cytoplasm side of the plasma membrane, filopodia included, with everything
        inside the cell: every label of class ``plasma_membrane`` or ``filopodium`` and
        every label whose chain of parents reaches one. Ice (label 0) and gold fiducials
        are not cell.
    organelles : (Z, Y, X) ndarray of bool
        The voxels whose label is of a class in :data:`ORGANELLE_CLASSES` (nucleus,
        mitochondrion, er, vesicle, lipid_droplet). In the simulator's output every
        organelle lies inside the cell, so ``organelles`` ⊆ ``cell``.

    Raises
    ------
    ValueError
        ``objects`` not an integer array, ``table`` without the three columns, or a label
        of ``objects`` missing from the table.

    Examples
    --------
    >>> from sxtquant.simulate import make_phantom
    >>> ph = make_phantom((32, 96, 96), 9.8, seed=1)
    >>> cell, organelles = region_masks(ph.objects, ph.table)
    >>> bool(cell.any()), bool((organelles & ~cell).any())
    (True, False)
    """
    objects = np.asarray(objects)
    in_cell, is_organelle = _label_tables(objects, table)
    return _lookup(in_cell, objects), _lookup(is_organelle, objects)


def region_labels(objects: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """The regions as one label volume: 0 = outside the cell, 1 = cell, 2 = organelle.

    Parameters
    ----------
    objects, table
        As for :func:`region_masks`.

    Returns
    -------
    (Z, Y, X) ndarray of uint8
        0 outside the cell (ice, gold fiducials), 1 cell interior not in an organelle
        (cytoplasm, filopodia), 2 organelle interior (see :func:`region_masks`).
    """
    objects = np.asarray(objects)
    in_cell, is_organelle = _label_tables(objects, table)
    lut = np.where(is_organelle, np.uint8(2), np.where(in_cell, np.uint8(1), np.uint8(0)))
    return _lookup(lut, objects)


def _blocks(objects: np.ndarray):
    """Slices along the first axis of about 16 M voxels each (bounds the index copies)."""
    per = max(1, (1 << 24) // max(1, int(np.prod(objects.shape[1:]))))
    for start in range(0, len(objects), per):
        yield slice(start, start + per)


def _lookup(lut: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """``lut[objects]``, block by block."""
    out = np.empty(objects.shape, dtype=lut.dtype)
    for block in _blocks(objects):
        out[block] = lut[objects[block]]
    return out


def _label_tables(objects: np.ndarray, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per-label lookups (index = label): inside the cell, is an organelle."""
    objects = np.asarray(objects)
    if objects.ndim != 3:
        raise ValueError(f"objects must be a (z, y, x) volume, got shape {objects.shape}")
    if not np.issubdtype(objects.dtype, np.integer):
        raise ValueError(f"objects must be integer instance labels, got dtype {objects.dtype}")
    missing = {"label", "class", "parent"} - set(table.columns)
    if missing:
        raise ValueError(f"the object table lacks the column(s) {', '.join(sorted(missing))}")
    if objects.size and objects.min() < 0:
        raise ValueError("objects has negative labels")
    labels = table["label"].to_numpy(dtype=np.int64)
    parents = table["parent"].to_numpy(dtype=np.int64)
    classes = table["class"].astype(str).to_numpy()
    top = int(max(objects.max() if objects.size else 0, labels.max() if len(labels) else 0))
    known = np.zeros(top + 1, dtype=bool)
    known[labels] = True
    known[0] = True
    present = np.zeros(top + 1, dtype=bool)
    for block in _blocks(objects):
        present[np.unique(objects[block])] = True
    absent = np.flatnonzero(present & ~known)
    if len(absent):
        shown = ", ".join(str(int(a)) for a in absent[:5])
        raise ValueError(f"label(s) {shown} of objects are not in the object table")
    in_cell = np.zeros(top + 1, dtype=bool)
    in_cell[labels[np.isin(classes, CELL_CLASSES)]] = True
    # follow the parent chains: a label is in the cell when its parent is
    has_parent = (parents > 0) & (parents <= top)
    parents = np.where(has_parent, parents, 0)
    for _ in range(len(labels)):
        grown = in_cell.copy()
        grown[labels] |= in_cell[parents] & has_parent
        if np.array_equal(grown, in_cell):
            break
        in_cell = grown
    in_cell[0] = False
    is_organelle = np.zeros(top + 1, dtype=bool)
    is_organelle[labels[np.isin(classes, ORGANELLE_CLASSES)]] = True
    is_organelle[0] = False
    return in_cell, is_organelle
