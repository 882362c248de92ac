"""Segmenting tomogram files: the task one tomogram is, in this process or on a Dask worker.

:func:`segment_file` is what ``sxtquant segment`` runs for each input: a plain file is
streamed slice by slice into two TIFFs, an OME-Zarr tomogram goes block by block into
two OME-Zarr images, and a sidecar record lets a rerun skip what is up to date. A
network with region heads (``config.regions``) also gives one probability image per
region, ``<stem>.<region>.probability.*``, from the same pass.
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
    axes: str = "z"

    def identity(self) -> dict:
        """What decides the outputs (recorded in the sidecar; a change redoes them).
        The device, batch size and block size do not change the result. ``axes`` is
        recorded when it is not ``z``, so records written before it existed still match."""
        options = {
            "threshold": self.threshold,
            "mask_rule": self.mask_rule,
            "tile": self.tile,
            "overlap": self.overlap,
            "tta": self.tta,
            "z_smooth": self.z_smooth,
            "dataset": self.dataset,
        }
        if self.axes != "z":
            options["axes"] = self.axes
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
    from sxtquant.scale.batch import RECORD_SUFFIX

    stem, suffix = _stem_and_suffix(path)
    out_dir = Path(out_dir)
    return (
        out_dir / f"{stem}.probability{suffix}",
        out_dir / f"{stem}.mask{suffix}",
        out_dir / f"{stem}{RECORD_SUFFIX}",
    )


def region_paths(path, out_dir, regions) -> dict[str, Path]:
    """The region probabilities that ``segment`` writes for ``path`` in ``out_dir`` with a
    network whose region heads are ``regions``: ``<stem>.<region>.probability.tif``
    (``.ome.zarr`` for an OME-Zarr input), by region name."""
    stem, suffix = _stem_and_suffix(path)
    return {region: Path(out_dir) / f"{stem}.{region}.probability{suffix}" for region in regions}


def _stem_and_suffix(path) -> tuple[str, str]:
    from sxtquant import io

    return io.volume_stem(path), ".ome.zarr" if io.format_of(path) == "zarr" else ".tif"


def segment_file(path, out_dir, spec: SegmentSpec, *, scheduler=None, progress: bool = True):
    """Segment one tomogram into ``out_dir`` unless its record says it is up to date.

    A plain file is streamed slice by slice into two TIFFs; an OME-Zarr tomogram goes
    block by block (on ``scheduler``'s workers when given) into two OME-Zarr images.
    A network with region heads adds one probability per region (:func:`region_paths`),
    listed in the record with the others. ``spec.axes`` other than ``z`` predicts the
    whole volume in memory (not for OME-Zarr). The record is written last, so an
    interrupted run leaves no matching record.

    Returns
    -------
    sxtquant.scale.batch.JobResult
    """
    import time

    import numpy as np

    from sxtquant import scale
    from sxtquant.core.errors import InputError

    path = Path(path)
    prob_path, mask_path, record_path = output_paths(path, out_dir)
    regions = region_paths(path, out_dir, scale.cached_model(spec.model).config.regions)
    outputs = [prob_path, mask_path, *regions.values()]
    listed = ", ".join(map(str, outputs))
    identity = spec.identity()
    if not spec.force and scale.record_matches(
        record_path, inputs=[path], outputs=outputs, identity=identity
    ):
        return scale.JobResult("skipped", f"{path}: up to date ({listed})")
    start = time.perf_counter()
    if prob_path.name.endswith(".zarr"):
        if spec.axes != "z":
            raise InputError(
                path,
                f"an OME-Zarr volume is segmented block by block along z; axes {spec.axes} "
                "would need it whole in memory",
            )
        stats = scale.segment_ome_zarr(
            path,
            prob_path,
            mask_path,
            spec.model,
            threshold=spec.threshold,
            z_radius=spec.z_smooth,
            block_slices=spec.block_slices,
            region_paths=regions,
            scheduler=scheduler,
            progress=progress,
            **spec.infer_options(),
        )
        shape, foreground = stats.shape, stats.foreground
    else:
        shape, foreground = _segment_to_tiff(path, prob_path, mask_path, regions, spec, progress)
    seconds = time.perf_counter() - start
    scale.write_record(
        record_path, inputs=[path], outputs=outputs, identity=identity, seconds=seconds
    )
    fraction = foreground / max(1, shape[0] * shape[1] * shape[2])
    message = f"{path}: {listed} ({shape[0]} slices, {100 * fraction:.2f} % membrane)"
    return scale.JobResult("ok", message, {"seconds": seconds, "voxels": int(np.prod(shape))})


def _segment_to_tiff(path, prob_path, mask_path, regions, spec: SegmentSpec, progress: bool):
    """Probability TIFFs streamed from the network (along z; else predicted whole), then
    the mask streamed from the membrane's."""
    import contextlib

    import numpy as np

    from sxtquant import io, scale
    from sxtquant.nn.predict import iter_head_slices, iter_probability_slices, predict_heads
    from sxtquant.scale.blocks import tiff_memmap

    volume = io.read_volume(path, dataset=spec.dataset)
    model = scale.cached_model(spec.model)
    voxel = volume.voxel_size_nm
    options = {"progress": progress, **spec.infer_options()}
    if spec.axes != "z":
        probs = predict_heads(model, volume.data, axes=spec.axes, **options)
        for name, out in {"membrane": prob_path, **regions}.items():
            scale.write_tiff_slices(out, probs.pop(name), volume.shape, np.float32, voxel)
    elif not regions:
        slices = iter_probability_slices(model, volume.data, **options)
        scale.write_tiff_slices(prob_path, slices, volume.shape, np.float32, voxel)
    else:
        with contextlib.ExitStack() as stack:
            images = [
                stack.enter_context(tiff_memmap(out, volume.shape, np.float32, voxel))
                for out in regions.values()
            ]
            heads = ("membrane", *regions)

            def membrane():
                for z, probs in enumerate(
                    iter_head_slices(model, volume.data, heads=heads, **options)
                ):
                    for image, prob in zip(images, probs[1:], strict=True):
                        image[z] = prob
                    yield probs[0]

            scale.write_tiff_slices(prob_path, membrane(), volume.shape, np.float32, voxel)
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
