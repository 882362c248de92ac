"""One tomogram from voxels to numbers: segment -> objects -> filopodia -> meshes.

The engine of ``sxtquant demo``, callable on your own tomogram::

    from sxtquant import io, pipeline

    volume = io.read_volume("cell.mrc")
    result = pipeline.analyze(volume.data, volume.require_voxel_size(), model="default")
    result.table          # one row per object (sxtquant.quantify.morphology columns)
    result.filopodia      # one row per filopodium (Fig. 3B of Dyhr et al. 2023)
    pipeline.write_analysis(result, "out", stem="cell")

:func:`analyze` runs the network (:func:`sxtquant.nn.predict.predict_volume`), makes
the objects with the one recipe of :mod:`sxtquant.quantify.recipe`, finds and measures
the filopodia (:func:`sxtquant.quantify.filopodia.find_filopodia`) and meshes the
objects. A region-aware network (heads ``cell`` and ``organelles``) gives the objects
from its region probabilities instead
(:func:`sxtquant.quantify.regions.objects_from_regions`: no closed contours needed).
:func:`compare_with_truth` scores a result against a simulation's truth (pixel
metrics, filopodia matched to the simulated ones, and the same steps run on the true
membranes: what a perfect network would give). :func:`write_analysis` writes the files
the demo writes. Arrays are (z, y, x), lengths in nm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sxtquant.core.defaults import THRESHOLD
from sxtquant.core.progress import StageTimer
from sxtquant.core.voxels import VoxelSize
from sxtquant.quantify.recipe import SEGMENTATION, ObjectRecipe, objects_from_membranes

if TYPE_CHECKING:
    import pandas as pd

    from sxtquant.simulate.tomogram import Simulation

__all__ = [
    "TOLERANCE_VOXELS",
    "Analysis",
    "Comparison",
    "analyze",
    "compare_with_truth",
    "filopodia_of",
    "meshes_of",
    "write_analysis",
]

#: The tolerance of the tolerant pixel scores (voxels).
TOLERANCE_VOXELS = 2.0


@dataclass
class Analysis:
    """What :func:`analyze` makes of one tomogram.

    Attributes
    ----------
    voxel_size : VoxelSize
    probability : (Z, Y, X) ndarray of float32
        The network's membrane probability in [0, 1].
    mask : (Z, Y, X) ndarray of bool
        Membranes: probability > ``threshold``.
    objects : (Z, Y, X) ndarray of uint16 or uint32
        The solid objects, numbered 1..n.
    table : pandas.DataFrame
        One row per object (:func:`sxtquant.quantify.morphology.measure_objects`).
    filopodia : pandas.DataFrame
        One row per filopodium; ``filopodia_summary`` their mean and SD per quantity.
    filopodia_labels : (Z, Y, X) ndarray
        The filopodia, numbered as in ``filopodia``.
    meshes : list of trimesh.Trimesh
        One mesh per object and per filopodium (apart from its cell body), in nm.
    mesh_labels : (Z, Y, X) ndarray of uint32
        The labels the meshes were made from (objects, then filopodia after them).
    threshold : float
    seconds : dict
        Seconds per stage.
    cell_probability, organelle_probability : (Z, Y, X) ndarray of float32 or None
        A region-aware network's region probabilities (None for a membrane-only one);
        the objects then come from them.
    """

    voxel_size: VoxelSize
    probability: np.ndarray
    mask: np.ndarray
    objects: np.ndarray
    table: pd.DataFrame
    filopodia: pd.DataFrame
    filopodia_summary: pd.DataFrame
    filopodia_labels: np.ndarray
    meshes: list = field(default_factory=list)
    mesh_labels: np.ndarray | None = None
    threshold: float = THRESHOLD
    seconds: dict = field(default_factory=dict)
    cell_probability: np.ndarray | None = None
    organelle_probability: np.ndarray | None = None

    @property
    def from_regions(self) -> bool:
        """Whether the objects come from region probabilities."""
        return self.cell_probability is not None

    @property
    def membrane_fraction(self) -> float:
        """Fraction of the voxels that are membrane."""
        return float(self.mask.mean())

    def filopodia_numbers(self) -> dict:
        """How many filopodia, their mean length and diameter (nm)."""

        def mean(values):
            values = values.dropna()
            return float(values.mean()) if len(values) else math.nan

        per = self.filopodia
        return {
            "found": len(per),
            "mean_length_nm": mean(per["length_nm"]),
            "mean_diameter_nm": mean(2 * per["radius_nm"]),
        }


def filopodia_of(
    cell_mask: np.ndarray, voxel_size_nm: float | Sequence[float]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The filopodia of a filled cell mask: their table and labels (the kept ones only),
    found with :data:`sxtquant.quantify.filopodia.FILLED_MASK`."""
    from sxtquant.quantify.filopodia import FILLED_MASK, find_filopodia, kept_candidates
    from sxtquant.quantify.objects import label_dtype

    per, candidates = find_filopodia(
        cell_mask, VoxelSize.of(voxel_size_nm), kind="mask", **FILLED_MASK
    )
    largest = int(candidates.max()) + 1 if candidates.size else 1
    return per, kept_candidates(candidates, per).astype(label_dtype(largest))


def meshes_of(
    objects: np.ndarray, filopodia_labels: np.ndarray, voxel_size_nm: float | Sequence[float]
) -> tuple[list, np.ndarray]:
    """One mesh per object, the filopodia apart from their cell body.

    Returns the meshes and the labels they were made from (objects, then filopodia).
    """
    from sxtquant.quantify.mesh import labels_to_meshes

    n = int(objects.max()) if objects.size else 0
    labels = objects.astype(np.uint32)
    labels[filopodia_labels > 0] = filopodia_labels[filopodia_labels > 0].astype(np.uint32) + n
    if not n:
        return [], labels
    meshes = labels_to_meshes(labels, VoxelSize.of(voxel_size_nm))
    for mesh in meshes:
        label = int(mesh.metadata.get("label", 0))
        if label > n:
            mesh.metadata["name"] = f"filopodium_{label - n}"
    return meshes, labels


def analyze(
    tomogram: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    model: Any = "default",
    *,
    device: str = "auto",
    threshold: float = THRESHOLD,
    recipe: ObjectRecipe = SEGMENTATION,
    meshes: bool = True,
    timer: StageTimer | None = None,
    progress: bool = True,
    regions: bool = True,
) -> Analysis:
    """Segment a tomogram's membranes, make its objects and filopodia, mesh them.

    With a region-aware network (and ``regions``) the cell is its thresholded
    cell-interior probability, the organelles its organelle interior split by a seeded
    watershed, and the filopodia the cell mask's protrusions; otherwise the membranes
    are closed and filled (``recipe``).

    Parameters
    ----------
    tomogram : (Z, Y, X) array-like
        The reconstruction (any real dtype; a memory map is read slice by slice).
    voxel_size_nm : float or (z, y, x)
    model : str, path or torch.nn.Module
        A shipped model's name, a checkpoint folder, or a loaded network.
    device : {"auto", "cpu", "cuda"}
    threshold : float
        Membrane where the probability is strictly greater.
    recipe : ObjectRecipe
        How membranes become objects (default: the segmentation recipe).
    meshes : bool
        Also mesh the objects (the slowest step on a large cell).
    timer : StageTimer, optional
        Records the stages ``segment``, ``objects``, ``filopodia``, ``meshes``.
    progress : bool
        The network's progress bar.
    regions : bool
        Use a region-aware network's region heads (False: the membrane path alone).

    Returns
    -------
    Analysis
    """
    from sxtquant.nn.checkpoint import load_model
    from sxtquant.nn.predict import predict_heads, predict_volume
    from sxtquant.quantify.filopodia import summarize

    voxel = VoxelSize.of(voxel_size_nm)
    timer = timer or StageTimer(["segment", "objects", "filopodia", "meshes"], show=False)
    network = load_model(model) if isinstance(model, str | Path) else model
    heads = getattr(getattr(network, "config", None), "heads", ("membrane",))
    use_regions = regions and "cell" in heads
    cell_probability = organelle_probability = None
    with timer("segment"):
        if use_regions:
            maps = predict_heads(network, tomogram, device=device, progress=progress)
            probability, cell_probability = maps["membrane"], maps["cell"]
            organelle_probability = maps.get("organelles")
        else:
            probability = predict_volume(network, tomogram, device=device, progress=progress)
        mask = probability > np.float32(threshold)
    with timer("objects"):
        from sxtquant.quantify.morphology import measure_objects

        if use_regions:
            from sxtquant.quantify.regions import (
                NETWORK_MAP,
                measure_cell_objects,
                objects_from_regions,
            )

            parts = objects_from_regions(
                cell_probability,
                voxel,
                organelle_probability=organelle_probability,
                **NETWORK_MAP,
            )
            objects, table = parts.labels, measure_cell_objects(parts, voxel)
        else:
            objects = objects_from_membranes(mask, voxel, recipe)
            table = measure_objects(objects, voxel)
    with timer("filopodia"):
        if use_regions:  # found with the objects: the cell mask's protrusions
            per, filopodia_labels = parts.filopodia, parts.filopodia_labels
        else:
            per, filopodia_labels = filopodia_of(objects > 0, voxel)
        summary = summarize(per)
    mesh_list, mesh_labels = [], None
    if meshes:
        with timer("meshes"):
            mesh_list, mesh_labels = meshes_of(objects, filopodia_labels, voxel)
    return Analysis(
        voxel_size=voxel,
        probability=probability,
        mask=mask,
        objects=objects,
        table=table,
        filopodia=per,
        filopodia_summary=summary,
        filopodia_labels=filopodia_labels,
        meshes=mesh_list,
        mesh_labels=mesh_labels,
        threshold=threshold,
        seconds=dict(timer.seconds),
        cell_probability=cell_probability,
        organelle_probability=organelle_probability,
    )


@dataclass
class Comparison:
    """An :class:`Analysis` against a simulation's truth.

    Attributes
    ----------
    metrics : dict
        The full :func:`sxtquant.evaluate.scoring.evaluate` result (JSON-ready).
    scores : dict
        Precision, recall, F1 and their tolerant (``TOLERANCE_VOXELS``) versions.
    matches : pandas.DataFrame
        Each detected and each simulated filopodium, matched
        (:func:`sxtquant.evaluate.matching.match_filopodia`).
    on_true_membranes : dict
        The matching summary of the same steps on the true membranes.
    on_true_regions : dict or None
        For an analysis made from region probabilities: the matching summary of the
        region path on the simulation's true cell and organelle interiors.
    """

    metrics: dict
    scores: dict
    matches: pd.DataFrame
    on_true_membranes: dict
    on_true_regions: dict | None = None

    @property
    def matching(self) -> dict:
        """Counts and mean absolute relative errors of :attr:`matches`."""
        from sxtquant.evaluate.matching import matching_summary

        return matching_summary(self.matches)


def compare_with_truth(
    analysis: Analysis,
    simulation: Simulation,
    *,
    recipe: ObjectRecipe = SEGMENTATION,
) -> Comparison:
    """Score ``analysis`` against ``simulation``'s membranes, artifacts and filopodia."""
    from sxtquant.evaluate.matching import match_filopodia, matching_summary
    from sxtquant.evaluate.scoring import evaluate

    metrics = evaluate(
        analysis.mask, simulation.membranes, simulation.artifacts, tolerance=TOLERANCE_VOXELS
    )
    matches = match_filopodia(
        analysis.filopodia_labels, analysis.filopodia, simulation.objects, simulation.table
    )
    tol = metrics["tolerance"]
    scores = {
        "precision": metrics["precision"],
        "recall": metrics["recall"],
        "f1": metrics["f1"],
        "tolerance_voxels": TOLERANCE_VOXELS,
        "tolerance_precision": tol["precision"],
        "tolerance_recall": tol["recall"],
        "tolerance_f1": tol["f1"],
    }
    # what a perfect network would give: the same steps on the true membranes
    objects = objects_from_membranes(simulation.membranes, analysis.voxel_size, recipe)
    per, labels = filopodia_of(objects > 0, analysis.voxel_size)
    reference = matching_summary(match_filopodia(labels, per, simulation.objects, simulation.table))
    regions = None
    if analysis.from_regions:  # the region path on the true regions: its own ceiling
        from sxtquant.quantify.regions import objects_from_regions
        from sxtquant.simulate.regions import region_masks

        cell, organelles = region_masks(simulation.objects, simulation.table)
        parts = objects_from_regions(
            cell.astype(np.float32),
            analysis.voxel_size,
            organelle_probability=organelles.astype(np.float32),
        )
        regions = matching_summary(
            match_filopodia(
                parts.filopodia_labels, parts.filopodia, simulation.objects, simulation.table
            )
        )
    return Comparison(
        metrics=metrics,
        scores=scores,
        matches=matches,
        on_true_membranes=reference,
        on_true_regions=regions,
    )


def write_analysis(analysis: Analysis, out: str | Path, *, stem: str = "tomogram") -> list[Path]:
    """Write an analysis as the demo does; returns the files written.

    ``out/segmentation/<stem>.probability.tif`` and ``<stem>.mask.tif`` (as ``sxtquant
    segment``; with a region-aware network also ``<stem>.cell.probability.tif`` and
    ``<stem>.organelles.probability.tif``), ``out/quantification/`` ``filled.mask.tif``,
    ``objects.tif`` (labels), ``objects.csv``, ``filopodia.tif`` (labels), ``filopodia.csv``,
    ``filopodia_summary.csv``, and ``out/meshes/objects.glb`` and ``objects.stl`` when
    there are meshes. Every file carries the voxel size.
    """
    from sxtquant import io
    from sxtquant.quantify.mesh import write_meshes

    out = Path(out)
    voxel = analysis.voxel_size
    seg, quant = out / "segmentation", out / "quantification"
    written = [
        io.write_probability(seg / f"{stem}.probability.tif", analysis.probability, voxel),
        io.write_mask(seg / f"{stem}.mask.tif", analysis.mask, voxel),
        io.write_mask(quant / "filled.mask.tif", analysis.objects > 0, voxel),
        io.write_volume(quant / "objects.tif", analysis.objects, voxel),
        io.write_table(analysis.table, quant / "objects.csv"),
        io.write_volume(quant / "filopodia.tif", analysis.filopodia_labels, voxel),
        io.write_table(analysis.filopodia, quant / "filopodia.csv"),
        io.write_table(analysis.filopodia_summary, quant / "filopodia_summary.csv"),
    ]
    for name, probability in (
        ("cell", analysis.cell_probability),
        ("organelles", analysis.organelle_probability),
    ):
        if probability is not None:
            path = seg / f"{stem}.{name}.probability.tif"
            written.append(io.write_probability(path, probability, voxel))
    if analysis.meshes:
        written.append(write_meshes(analysis.meshes, out / "meshes" / "objects.glb"))
        written.append(write_meshes(analysis.meshes, out / "meshes" / "objects.stl"))
    return written
