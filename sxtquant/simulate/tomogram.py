"""A cryo-soft X-ray tomography (cryo-SXT) simulator with exact ground truth.

Arrays in, arrays out; files are written by :mod:`sxtquant.cli.simulate`.

The simulation has three stages, each a public function:

1. :func:`make_phantom` builds a cell in vitreous ice on a (z, y, x) voxel grid: the
   linear absorption coefficient (LAC, µm⁻¹, water window ≈ 517 eV) of every voxel,
   the membrane ground truth (2–3 voxel shells on every membranous boundary), filled
   instance labels and a table of every object's analytic geometry.
2. :func:`acquire` forward-projects the LAC volume as a parallel-beam tilt series about
   the y axis (missing wedge), blurs it with the zone-plate point-spread function
   (optionally depth dependent), adds Poisson noise at a dose and optional
   misalignment jitter, and returns the measured line integrals ``-ln(I / I0)``.
3. :func:`reconstruct` inverts the tilt series slice-wise in x–z planes with SIRT
   (30 iterations by default, like the IMOD workflow of the reference paper) or
   filtered back-projection.

:func:`simulate_tomogram` runs all three and also derives the artifact mask: the
regions where the gold fiducials' limited-angle streaks lie.

Coordinates are physical (z, y, x) in nm; the centre of voxel ``(i, j, k)`` lies at
``(i, j, k) * voxel_size_nm`` (the convention of :mod:`sxtquant.simulate.shapes`). A voxel
belongs to an object when its centre lies inside the object's analytic surface.

Projection operator
-------------------
The tilt geometry is the same for every y row, so the x–z projector is built once per
geometry as a sparse matrix ``A`` (Joseph's ray-driven linear-interpolation model,
checked against :func:`skimage.transform.radon` in the tests) and applied to all y
rows of a block at once: ``A @ V`` with ``V`` the (z·x, y) matrix of a block. The
product is a weighted gather-sum, run by :func:`torch.nn.functional.embedding_bag`
(multi-threaded). SIRT is then two such products per iteration. The reconstruction
grid extends beyond the detector's field of view in x (the specimen is a slab: at
65° the detector sees 2.4× its width of ice), so no mass is missing from any ray and
the crop back to the field of view has no truncation artifacts.

LAC values
----------
See :data:`LAC_PER_UM` and ``docs/simulator.md`` for the values and their sources.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sxtquant.simulate.cell import LAC_PER_UM, CellContent, Phantom
from sxtquant.simulate.phantom import make_phantom
from sxtquant.simulate.tomography import (
    Acquisition,
    TiltSeries,
    _gaussian2d,
    _project,
    acquire,
    reconstruct,
    tilt_angles,
)

__all__ = [
    "Simulation",
    "artifact_mask",
    "simulate_tomogram",
]


@dataclass(frozen=True)
class Simulation:
    """Everything :func:`simulate_tomogram` makes.

    ``tomogram`` (Z, Y, X) float32 is the reconstruction in µm⁻¹; ``artifacts`` (Z, Y, X)
    bool the regions of the gold fiducials' streaks; the rest as in :class:`Phantom`.
    """

    tomogram: np.ndarray
    phantom: Phantom
    artifacts: np.ndarray
    tilt_series: TiltSeries
    acquisition: Acquisition
    content: CellContent

    @property
    def membranes(self) -> np.ndarray:
        return self.phantom.membranes

    @property
    def objects(self) -> np.ndarray:
        return self.phantom.objects

    @property
    def table(self):
        return self.phantom.table

    @property
    def voxel_size_nm(self) -> float:
        return self.phantom.voxel_size_nm


def artifact_mask(
    phantom: Phantom,
    acquisition: Acquisition,
    *,
    threshold: float = 0.05,
    grow_voxels: int = 2,
) -> np.ndarray:
    """Regions where the gold fiducials' reconstruction artifacts (streaks) lie.

    The reconstruction is linear in the data (SIRT from zero, or FBP), so the streaks
    of the beads are the reconstruction of the beads' own noise-free projections minus
    the beads. Voxels where that difference exceeds ``threshold`` µm⁻¹ (about a third
    of the membrane contrast), and the beads grown by ``grow_voxels``, are artifacts.
    Only the y rows holding beads are reconstructed.
    """
    from scipy import ndimage

    table = phantom.table
    gold_labels = table.loc[table["class"] == "fiducial", "label"].to_numpy() if len(table) else []
    shape = phantom.lac.shape
    mask = np.zeros(shape, dtype=bool)
    if len(gold_labels) == 0:
        return mask
    gold = np.isin(phantom.objects, gold_labels)
    rows = np.flatnonzero(gold.any(axis=(0, 2)))
    v = phantom.voxel_size_nm
    sigma = acquisition.blur_fwhm_nm / (2 * math.sqrt(2 * math.log(2))) / v
    margin = math.ceil(3 * sigma) + grow_voxels
    keep = np.zeros(shape[1], dtype=bool)
    for r in rows:
        keep[max(0, r - margin) : r + margin + 1] = True
    ys = np.flatnonzero(keep)
    delta = np.where(gold[:, ys, :], LAC_PER_UM["gold"] - LAC_PER_UM["ice"], 0).astype(np.float32)
    angles = tilt_angles(
        acquisition.tilt_max_deg, acquisition.tilt_step_deg, acquisition.tilt_offset_deg
    )
    line = _project(delta, angles, 0.0, v / 1000)
    line = _gaussian2d(line, sigma)
    rec = reconstruct(
        line,
        angles,
        shape[0],
        v,
        method=acquisition.reconstruction,
        iterations=acquisition.sirt_iterations,
    )
    truth = ndimage.gaussian_filter(delta, sigma) if sigma > 0 else delta
    streaks = np.abs(rec - truth) > threshold
    beads = ndimage.binary_dilation(gold[:, ys, :], iterations=grow_voxels)
    mask[:, ys, :] = streaks | beads
    return mask


def simulate_tomogram(
    shape: Sequence[int] = (64, 256, 256),
    voxel_size_nm: float = 9.8,
    *,
    seed: int = 0,
    content: CellContent | None = None,
    acquisition: Acquisition | None = None,
) -> Simulation:
    """Simulate a cryo-SXT tomogram of a cell with its ground truth.

    Parameters
    ----------
    shape : (Z, Y, X) ints
    voxel_size_nm : float
    seed : int
        The same seed gives the same phantom, noise and reconstruction.
    content : CellContent, optional
        What the cell contains; ``CellContent(field_of_view=True)`` simulates a cell
        larger than the volume, cut by its borders (field-of-view mode).
    acquisition : Acquisition, optional

    Returns
    -------
    Simulation

    Examples
    --------
    >>> sim = simulate_tomogram((32, 64, 64), 9.8, seed=3,
    ...                         acquisition=Acquisition(sirt_iterations=5))
    >>> sim.tomogram.shape, sim.tomogram.dtype
    ((32, 64, 64), dtype('float32'))
    """
    content = content or CellContent()
    acq = acquisition or Acquisition()
    root = np.random.SeedSequence(int(seed))
    phantom_seed, noise_seed = (np.random.default_rng(s) for s in root.spawn(2))
    phantom = make_phantom(shape, voxel_size_nm, seed=phantom_seed, content=content)
    series = acquire(phantom.lac, voxel_size_nm, acq, seed=noise_seed)
    tomogram = reconstruct(
        series.data,
        series.angles_deg,
        phantom.lac.shape[0],
        voxel_size_nm,
        method=acq.reconstruction,
        iterations=acq.sirt_iterations,
    )
    artifacts = artifact_mask(phantom, acq)
    return Simulation(
        tomogram=tomogram,
        phantom=phantom,
        artifacts=artifacts,
        tilt_series=series,
        acquisition=acq,
        content=content,
    )
