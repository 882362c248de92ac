"""Segmenting tomogram files: the task one tomogram is, in this process or on a Dask worker.

:func:`segment_file` is what ``sxtquant segment`` runs for each input: a plain file is
streamed slice by slice into two TIFFs, an OME-Zarr tomogram goes block by block into
two OME-Zarr images, and a sidecar record lets a rerun skip what is up to date.
:class:`SegmentSpec` carries the options (picklable); its field defaults are the
command line's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sxtquant.core.defaults import THRESHOLD
from sxtquant.nn.tiling import DEFAULT_BATCH_SIZE, DEFAULT_OVERLAP, DEFAULT_TILE
from sxtquant.scale.blocks import DEFAULT_BLOCK_SLICES

#: How the mask is made: probability > threshold, or the reference's tanh label > 0.
MASK_RULES = ("probability", "tanh-positive")


@dataclass(frozen=True)
class SegmentSpec:
    """Everything a worker needs to segment one tomogram (picklable)."""

    model: str
    model_identity: dict = field(default_factory=dict)
    device: str = "auto"
    threshold: float = THRESHOLD
    mask_rule: str = "probability"
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = DEFAULT_BATCH_SIZE
    tta: bool = False
    z_smooth: int = 0
    dataset: str | None = None
    block_slices: int = DEFAULT_BLOCK_SLICES
    force: bool = False

    def identity(self) -> dict:
        """What decides the outputs (recorded in the sidecar; a change redoes them).
        The device, batch size and block size do not change the result."""
        options = {
            "threshold": self.threshold,
            "mask_rule": self.mask_rule,
            "tile": self.tile,
            "overlap": self.overlap,
            "tta": self.tta,
            "z_smooth": self.z_smooth,
            "dataset": self.dataset,
        }
        return {"command": "segment", "model": self.model_identity, "options": options}

    def infer_options(self) -> dict:
        return {
            "device": self.device,
            "tile": self.tile,
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "tta": self.tta,
        }


def output_paths(path, out_dir) -> tuple[Path, Path, Path]:
    """The probability, mask and record that ``segment`` writes for ``path`` in ``out_dir``."""
    from sxtquant import io
    from sxtquant.scale.batch import RECORD_SUFFIX

    stem = io.volume_stem(path)
    suffix = ".ome.zarr" if io.format_of(path) == "zarr" else ".tif"
    out_dir = Path(out_dir)
    return (
        out_dir / f"{stem}.probability{suffix}",
        out_dir / f"{stem}.mask{suffix}",
        out_dir / f"{stem}{RECORD_SUFFIX}",
    )


def segment_file(path, out_dir, spec: SegmentSpec, *, scheduler=None, progress: bool = True):
    """Segment one tomogram into ``out_dir`` unless its record says it is up to date.

    A plain file is streamed slice by slice into two TIFFs; an OME-Zarr tomogram goes
    block by block (on ``scheduler``'s workers when given) into two OME-Zarr images.
    The record is written last, so an interrupted run leaves no matching record.

    Returns
    -------
    sxtquant.scale.batch.JobResult
    """
    import time

    import numpy as np

    from sxtquant import scale

    path = Path(path)
    prob_path, mask_path, record_path = output_paths(path, out_dir)
    outputs = [prob_path, mask_path]
    identity = spec.identity()
    if not spec.force and scale.record_matches(
        record_path, inputs=[path], outputs=outputs, identity=identity
    ):
        return scale.JobResult("skipped", f"{path}: up to date ({prob_path}, {mask_path})")
    start = time.perf_counter()
    if prob_path.name.endswith(".zarr"):
        stats = scale.segment_ome_zarr(
            path,
            prob_path,
            mask_path,
            spec.model,
            threshold=spec.threshold,
            z_radius=spec.z_smooth,
            block_slices=spec.block_slices,
            scheduler=scheduler,
            progress=progress,
            **spec.infer_options(),
        )
        shape, foreground = stats.shape, stats.foreground
    else:
        shape, foreground = _segment_to_tiff(path, prob_path, mask_path, spec, progress)
    seconds = time.perf_counter() - start
    scale.write_record(
        record_path, inputs=[path], outputs=outputs, identity=identity, seconds=seconds
    )
    fraction = foreground / max(1, shape[0] * shape[1] * shape[2])
    message = (
        f"{path}: {prob_path}, {mask_path} ({shape[0]} slices, {100 * fraction:.2f} % membrane)"
    )
    return scale.JobResult("ok", message, {"seconds": seconds, "voxels": int(np.prod(shape))})


def _segment_to_tiff(path, prob_path, mask_path, spec: SegmentSpec, progress: bool):
    """Probability TIFF streamed from the network, then the mask streamed from it."""
    import numpy as np

    from sxtquant import io, scale
    from sxtquant.nn.predict import iter_probability_slices

    volume = io.read_volume(path, dataset=spec.dataset)
    model = scale.cached_model(spec.model)
    slices = iter_probability_slices(model, volume.data, progress=progress, **spec.infer_options())
    voxel = volume.voxel_size_nm
    scale.write_tiff_slices(prob_path, slices, volume.shape, np.float32, voxel)
    probability = io.read_volume(prob_path, check=False).data  # memory-mapped
    foreground = 0

    def masks():
        nonlocal foreground
        for mask in scale.iter_mask_slices(probability, spec.threshold, z_radius=spec.z_smooth):
            foreground += int(np.count_nonzero(mask))
            yield io.mask_to_uint8(mask)

    scale.write_tiff_slices(mask_path, masks(), volume.shape, np.uint8, voxel)
    return volume.shape, foreground


def model_reference(name_or_path) -> str:
    """A shipped model's name as it is; a checkpoint folder as an absolute path (workers
    elsewhere resolve relative paths against their own folder)."""
    path = Path(name_or_path)
    return str(path.resolve()) if path.exists() else str(name_or_path)
