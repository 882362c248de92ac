"""Measuring mask files: one mask (or one of a batch) into its objects and tables.

:func:`measure_file` is what ``sxtquant quantify`` runs for each mask: read it, make
its objects (membranes filled with an :class:`~sxtquant.quantify.recipe.ObjectRecipe`
when asked), measure them, and find the filopodia. An OME-Zarr mask whose options
allow it is measured block by block (:func:`sxtquant.scale.block_objects.quantify_blocks`).
:func:`measure_region_file` takes the cell and organelles from a region-aware network's
probability files instead. :func:`quantify_job` is one mask of a batch as a Dask task.
:class:`QuantifySpec` carries the options (picklable); its field defaults are the command
line's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sxtquant.core.voxels import VoxelSize
from sxtquant.quantify.recipe import ObjectRecipe, objects_from_membranes
from sxtquant.quantify.regions import REGION_THRESHOLD
from sxtquant.scale.blocks import DEFAULT_BLOCK_SLICES


def filopodia_labels_path(table_path):
    """The filopodia's label volume written beside ``table_path`` (``--labels-out``)."""
    table_path = Path(table_path)
    stem = table_path.with_suffix("") if table_path.suffix else table_path
    return stem.with_name(stem.name + ".filopodia.tif")


def filopodia_paths(table_path):
    """The per-filopodium and summary tables written beside ``table_path``."""
    table_path = Path(table_path)
    stem = table_path.with_suffix("") if table_path.suffix else table_path
    return (
        stem.with_name(stem.name + ".filopodia.csv"),
        stem.with_name(stem.name + ".filopodia_summary.csv"),
    )


@dataclass(frozen=True)
class QuantifySpec:
    """The options of one measurement (picklable, for Dask workers)."""

    voxel_size: tuple[float, ...] | None = None
    kind: str = "auto"
    fill: bool = False
    z_vote_radius: int = ObjectRecipe.z_vote_radius
    closing_radius: int = ObjectRecipe.closing_radius
    erosion: int = ObjectRecipe.erosion
    separate: bool = ObjectRecipe.separate
    min_voxels: int = ObjectRecipe.min_voxels
    min_volume_nm3: float = ObjectRecipe.min_volume_nm3
    exclude_border: bool = ObjectRecipe.exclude_border
    filopodia: bool = False
    dataset: str | None = None
    block_slices: int = DEFAULT_BLOCK_SLICES

    @property
    def recipe(self) -> ObjectRecipe:
        """How the membranes of ``fill`` become objects."""
        return ObjectRecipe(
            z_vote_radius=self.z_vote_radius,
            closing_radius=self.closing_radius,
            erosion=self.erosion,
            separate=self.separate,
            min_volume_nm3=self.min_volume_nm3,
            min_voxels=self.min_voxels,
            exclude_border=self.exclude_border,
        )

    @property
    def blockwise(self) -> bool:
        """Whether an OME-Zarr mask can be processed block by block (these options
        need the whole volume)."""
        return not (self.fill or self.separate or self.filopodia)

    def identity(self) -> dict:
        options = asdict(self)
        del options["block_slices"]  # does not change the result
        return {"command": "quantify", "options": options}


@dataclass(frozen=True)
class Measured:
    """The objects of one mask: ``table``, ``labels`` (in memory, or None when they
    were written block by block or not kept), ``filopodia`` tables, ``voxel`` size and
    ``filopodia_labels`` (each filopodium of the table under its ``label``, 0 elsewhere;
    None without ``filopodia``)."""

    table: Any
    labels: Any
    filopodia: Any
    voxel: tuple[float, float, float]
    filopodia_labels: Any = None


def _require_3d(path, shape) -> None:
    from sxtquant.core.errors import InputError

    if shape[0] < 2:
        raise InputError(
            path, f"3D measurements require 3D input; got a single slice of shape {shape[1:]}"
        )


def measure_file(
    path,
    spec: QuantifySpec,
    *,
    scheduler=None,
    labels_out=None,
    work_dir=None,
    progress: bool = True,
) -> Measured:
    """Objects and their table for one mask file (block by block for OME-Zarr).

    An OME-Zarr mask whose options allow it goes through
    :func:`sxtquant.scale.block_objects.quantify_blocks`: its labels are written to
    ``labels_out`` when that is an OME-Zarr path, else to a temporary OME-Zarr in
    ``work_dir`` (read back into ``Measured.labels`` if ``labels_out`` is given).
    """
    import numpy as np

    from sxtquant import io, scale
    from sxtquant.quantify.morphology import measure_objects
    from sxtquant.quantify.objects import is_label_volume, objects_from_mask

    if spec.blockwise and io.format_of(path) == "zarr":
        return _measure_blocks(path, spec, scheduler, labels_out, work_dir, progress)
    volume = io.read_volume(path, dataset=spec.dataset)
    _require_3d(path, volume.shape)
    voxel = volume.require_voxel_size(spec.voxel_size)
    data = scale.check_mask_values(np.asarray(volume.data), path)
    kind = spec.kind
    if kind == "auto":
        kind = "labels" if is_label_volume(data) else "mask"
    if spec.fill:  # membranes: the one recipe of sxtquant.quantify.recipe
        labels = objects_from_membranes(data > 0, voxel, spec.recipe)
        data, kind = labels > 0, "mask"
    else:
        if kind == "mask":
            data = data > 0
        labels = objects_from_mask(
            data,
            voxel,
            is_labels=kind == "labels",
            separate=spec.separate,
            min_voxels=spec.recipe.smallest_voxels(voxel),
            exclude_border_objects=spec.exclude_border,
        )
    table = measure_objects(labels, voxel)
    filopodia = filopodia_labels = None
    if spec.filopodia:
        from sxtquant.quantify.filopodia import (
            FILLED_MASK,
            find_filopodia,
            kept_candidates,
            summarize,
        )

        options = FILLED_MASK if kind == "mask" else {}
        per, candidates = find_filopodia(data, voxel, kind=kind, **options)
        filopodia = (per, summarize(per))
        filopodia_labels = kept_candidates(candidates, per)
    return Measured(table, labels, filopodia, voxel, filopodia_labels)


def _measure_blocks(path, spec, scheduler, labels_out, work_dir, progress) -> Measured:
    import os
    import shutil

    import numpy as np

    from sxtquant import io, scale

    volume, file_voxel = scale.open_blocks(path, block_slices=spec.block_slices)
    _require_3d(path, volume.shape)
    voxel = io.Volume(np.empty(0), file_voxel, Path(path)).require_voxel_size(spec.voxel_size)
    in_place = labels_out is not None and str(labels_out).lower().endswith(io.ZARR_SUFFIXES)
    if in_place:
        labels_path = Path(labels_out)
    else:
        folder = Path(work_dir) if work_dir is not None else Path.cwd()
        labels_path = folder / f".{io.volume_stem(path)}.labels-{os.getpid()}.ome.zarr"
    try:
        table, _ = scale.quantify_blocks(
            volume,
            voxel,
            labels_path,
            is_labels={"auto": None, "mask": False, "labels": True}[spec.kind],
            min_voxels=spec.recipe.smallest_voxels(voxel),
            exclude_border=spec.exclude_border,
            scheduler=scheduler,
            source=path,
            progress=progress,
        )
        labels = None
        if labels_out is not None and not in_place:  # another format: through memory
            labels = np.asarray(io.open_ome_zarr(labels_path)[0][...])
    finally:
        if not in_place:
            shutil.rmtree(labels_path, ignore_errors=True)
    return Measured(table, labels, None, voxel)


def tomogram_name(path) -> str:
    """The ``tomogram`` of a mask in the tidy table: its name without format suffixes
    and without a trailing ``.mask`` (``cell.mask.tif`` -> ``cell``)."""
    from sxtquant.io.formats import volume_stem

    stem = volume_stem(path)
    return stem[: -len(".mask")] if stem.lower().endswith(".mask") and stem != ".mask" else stem


def tidy(table, tomogram: str, voxel, source) -> Any:
    """``table`` with a first column ``tomogram`` and, last, the voxel size and source."""
    table = table.copy()
    table.insert(0, "tomogram", tomogram)
    for axis, size in zip("zyx", voxel, strict=True):
        table[f"voxel_size_{axis}_nm"] = float(size)
    table["source"] = str(source)
    return table


def measure_region_file(path, regions, spec: QuantifySpec, threshold: float = REGION_THRESHOLD):
    """:func:`measure_file` with the cell (and organelles) from region probability files
    ``regions`` = (cell, organelles) paths, either None; also returns the
    :class:`~sxtquant.quantify.regions.CellObjects`. ``threshold``: of both maps."""
    import numpy as np

    from sxtquant import io, scale
    from sxtquant.core.errors import InputError
    from sxtquant.quantify import regions as rq
    from sxtquant.quantify.filopodia import summarize

    volume = io.read_volume(path, dataset=spec.dataset)
    _require_3d(path, volume.shape)
    voxel = volume.require_voxel_size(spec.voxel_size)
    reference = volume.voxel_size_nm or voxel
    maps = []
    for region_path in regions:
        if region_path is None:
            maps.append(None)
            continue
        region = io.read_volume(region_path)
        if region.shape != volume.shape:
            raise InputError(
                region_path, f"shape {region.shape} differs from {Path(path).name}'s {volume.shape}"
            )
        if region.voxel_size_nm is not None and not np.allclose(
            region.voxel_size_nm, reference, rtol=1e-3
        ):
            raise InputError(
                region_path,
                f"voxel size {VoxelSize.of(region.voxel_size_nm)} differs from "
                f"{Path(path).name}'s {VoxelSize.of(reference)}",
            )
        data = np.asarray(region.data, dtype=np.float32)
        if data.min() < 0 or data.max() > 1:
            raise InputError(region_path, "holds values outside [0, 1]; expected a probability map")
        maps.append(data)
    cell_mask = None
    if maps[0] is None:  # organelles only: the cell is MASK's, filled as without regions
        cell_mask = scale.check_mask_values(np.asarray(volume.data), path) > 0
        if spec.fill:
            cell_mask = objects_from_membranes(cell_mask, voxel, spec.recipe) > 0
    parts = rq.objects_from_regions(
        maps[0],
        voxel,
        organelle_probability=maps[1],
        cell_mask=cell_mask,
        threshold=threshold,
        separate=spec.separate,
        min_voxels=spec.recipe.smallest_voxels(voxel),
        exclude_border=spec.exclude_border,
        **rq.NETWORK_MAP,
    )
    table = rq.measure_cell_objects(parts, voxel)
    filopodia = filopodia_labels = None
    if spec.filopodia:
        filopodia = (parts.filopodia, summarize(parts.filopodia))
        filopodia_labels = parts.filopodia_labels
    return Measured(table, parts.labels, filopodia, voxel, filopodia_labels), parts


def _labels_file(labels_dir, path, spec: QuantifySpec) -> Path | None:
    from sxtquant import io

    if labels_dir is None:
        return None
    suffix = ".ome.zarr" if spec.blockwise and io.format_of(path) == "zarr" else ".tif"
    return Path(labels_dir) / f"{tomogram_name(path)}.labels{suffix}"


def quantify_job(
    path,
    spec: QuantifySpec,
    labels_dir=None,
    work_dir=None,
    *,
    scheduler=None,
    regions=(None, None),
    region_threshold: float = REGION_THRESHOLD,
):
    """One mask of a batch (a Dask task): its tidy table, filopodia tables and labels file;
    with ``regions`` (its cell and organelle probability files, either None) the objects
    come from them (:func:`measure_region_file`).

    Returns
    -------
    sxtquant.scale.batch.JobResult
        ``value``: ``{"table": ..., "filopodia": (per, summary) or None}``.
    """
    from sxtquant.io.volumes import write_volume
    from sxtquant.scale.batch import JobResult

    name = tomogram_name(path)
    labels_path = _labels_file(labels_dir, path, spec)
    what = ""
    if any(regions):
        measured, parts = measure_region_file(path, regions, spec, region_threshold)
        what = f" ({parts.summary()})"
    else:
        measured = measure_file(
            path,
            spec,
            scheduler=scheduler,
            labels_out=labels_path,
            work_dir=work_dir,
            progress=scheduler is not None,
        )
    if labels_path is not None and measured.labels is not None:
        write_volume(labels_path, measured.labels, measured.voxel)
    filopodia = None
    if measured.filopodia is not None:
        filopodia = tuple(t.copy() for t in measured.filopodia)
        for table in filopodia:
            table.insert(0, "tomogram", name)
    value = {"table": tidy(measured.table, name, measured.voxel, path), "filopodia": filopodia}
    voxel = VoxelSize.of(measured.voxel)
    message = f"{path}: {len(measured.table)} objects{what}, voxel size {voxel}"
    return JobResult("ok", message, value)
