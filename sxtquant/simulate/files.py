"""Simulations on disk: one tomogram's files (the contract of ``sxtquant simulate``),
previews, and the semi-supervised training-set layout that ``sxtquant train`` reads.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["write_dataset", "write_previews", "write_simulation"]


def write_simulation(
    sim, out, *, seed: int, preview: bool = False, tilt_series: bool = False
) -> None:
    """Write one simulation's files (the contract of `sxtquant simulate`) into ``out``."""
    from pathlib import Path

    from sxtquant.io.files import write_json, write_table
    from sxtquant.io.volumes import write_mask, write_volume
    from sxtquant.simulate.conditions import conditions_dict

    out = Path(out)
    v = sim.voxel_size_nm
    write_volume(out / "tomogram.mrc", sim.tomogram, v)
    write_mask(out / "membranes.tif", sim.membranes, v)
    write_volume(out / "objects.tif", sim.objects, v)
    write_mask(out / "artifacts.tif", sim.artifacts, v)
    write_table(sim.table, out / "objects.csv")
    if tilt_series:
        write_volume(out / "tilt_series.mrc", sim.tilt_series.data, v)
    info = {
        "seed": seed,
        "voxel_size_nm": v,
        "shape_zyx": list(sim.tomogram.shape),
        "tilt_angles_deg": [float(a) for a in sim.tilt_series.angles_deg],
        "units": {"tomogram": "linear absorption coefficient, 1/um", "lengths": "nm"},
        **conditions_dict(sim.acquisition, sim.content),
    }
    write_json(info, out / "simulation.json")
    if preview:
        write_previews(sim, out)


def write_previews(sim, out) -> None:
    """preview_xy.png and preview_xz.png: the central slices beside the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from sxtquant.io.files import save_figure

    Z, Y, _X = sim.tomogram.shape
    cuts = {
        "xy": (np.s_[Z // 2, :, :], f"x–y slice z = {Z // 2}"),
        "xz": (np.s_[:, Y // 2, :], f"x–z slice y = {Y // 2}"),
    }
    for name, (cut, title) in cuts.items():
        tomo = sim.tomogram[cut]
        lo, hi = np.percentile(tomo, [0.5, 99])
        panels = [
            (tomo, "tomogram (LAC, µm⁻¹)", dict(cmap="gray", vmin=lo, vmax=hi)),
            (sim.phantom.lac[cut], "true LAC", dict(cmap="gray", vmin=lo, vmax=hi)),
            (sim.membranes[cut], "membranes (truth)", dict(cmap="gray_r")),
            (
                np.where(sim.objects[cut] > 0, sim.objects[cut] % 20 + 1, 0),
                "objects (labels)",
                dict(cmap="tab20", interpolation="nearest"),
            ),
            (sim.artifacts[cut], "artifacts", dict(cmap="Reds")),
        ]
        h, w = tomo.shape
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2 * h / w + 0.6))
        for ax, (img, label, kw) in zip(axes, panels, strict=True):
            ax.imshow(img, **kw)
            ax.set_title(label, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{title} ({sim.voxel_size_nm:g} nm voxels)", fontsize=10)
        save_figure(fig, out / f"preview_{name}.png", dpi=110)
        plt.close(fig)


#: What ``dataset.json`` says about each layout's files.
_LAYOUT_FILES = {
    "slices": {
        "images": "<split>/images/<tomo>_z<zzzz>.tif, one z slice, float32 raw reconstruction "
        "(LAC, 1/um), not standardised",
        "labels": "<split>/labels/<tomo>_z<zzzz>.tif, uint8 0/255 membranes (labeled, test)",
        "regions": "<split>/regions/<tomo>_z<zzzz>.tif, uint8 0 = outside the cell, "
        "1 = cell interior not in an organelle, 2 = organelle interior (labeled, test)",
    },
    "stacks": {
        "images": "<split>/images/<tomo>.tif, every z slice, float32 raw reconstruction "
        "(LAC, 1/um), not standardised",
        "labels": "<split>/labels/<tomo>.tif, uint8 0/255 membranes (labeled, test)",
        "regions": "<split>/regions/<tomo>.tif, uint8 0 = outside the cell, "
        "1 = cell interior not in an organelle, 2 = organelle interior (labeled, test)",
    },
}


def write_dataset(
    out,
    *,
    seed: int,
    labeled: int,
    unlabeled: int,
    test: int,
    shape: Sequence[int] = (64, 256, 256),
    voxel_size_nm: float = 9.8,
    slice_step: int = 1,
    labeled_conditions: str = "standard",
    layout: str = "slices",
    field_of_view: float = 0.0,
) -> int:
    """Write a semi-supervised training set: labelled, unlabelled and test tomograms.

    Each tomogram has its own random stream spawned from ``seed``, in the order
    labelled, unlabelled, test; its conditions come from
    :func:`sxtquant.simulate.conditions.sample_conditions`. The labelled and test
    tomograms come with their membrane labels and their regions
    (:func:`sxtquant.simulate.regions.region_labels`). ``dataset.json`` describes the
    files.

    Parameters
    ----------
    out : path
        The folder to write into.
    seed : int
    labeled, unlabeled, test : int
        Number of tomograms of each split.
    shape : (Z, Y, X) ints
    voxel_size_nm : float
    slice_step : int
        ``layout="slices"``: keep every ``slice_step``-th z slice. Stacks hold every
        slice whatever its value.
    labeled_conditions : {"standard", "varied"}
        See :func:`~sxtquant.simulate.conditions.sample_conditions`.
    layout : {"slices", "stacks"}
        ``slices``: one 2D file per kept slice, ``<split>/{images,labels,regions}/
        <tomo>_z<zzzz>.tif``. ``stacks``: one 3D file per tomogram,
        ``<split>/{images,labels,regions}/<tomo>.tif``. Images are float32 (LAC,
        µm⁻¹), labels uint8 0/255, regions uint8 0/1/2; all carry the voxel size.
    field_of_view : float
        Fraction (0–1) of the tomograms simulated in field-of-view mode
        (:attr:`CellContent.field_of_view`), decided per tomogram by one more number
        of its own stream, drawn only when ``field_of_view > 0``: with 0 the data set
        is the same as without the option, and a tomogram drawn not in field-of-view
        mode is the same whatever the fraction.

    Returns
    -------
    int
        The number of tomograms written.
    """
    import dataclasses
    import math
    from pathlib import Path

    import numpy as np

    from sxtquant.core.progress import progress
    from sxtquant.io.files import write_json
    from sxtquant.io.volumes import write_mask, write_volume
    from sxtquant.simulate.conditions import conditions_dict, sample_conditions
    from sxtquant.simulate.regions import region_labels
    from sxtquant.simulate.tomogram import simulate_tomogram

    if layout not in _LAYOUT_FILES:
        raise ValueError(f"layout must be slices or stacks, got {layout!r}")
    if not (math.isfinite(field_of_view) and 0 <= field_of_view <= 1):
        raise ValueError(f"field_of_view must be a fraction from 0 to 1, got {field_of_view}")
    if slice_step < 1:
        raise ValueError(f"slice_step must be >= 1, got {slice_step}")
    out = Path(out)
    root = np.random.SeedSequence(seed)
    plan = (
        [("labeled", i) for i in range(labeled)]
        + [("unlabeled", i) for i in range(unlabeled)]
        + [("test", i) for i in range(test)]
    )
    if not plan:
        raise ValueError("the dataset asks for no tomograms")
    seeds = root.spawn(len(plan))
    v = voxel_size_nm
    step = slice_step if layout == "slices" else 1
    tomograms = []
    for (split, i), ss in zip(progress(plan, desc="tomograms", unit="tomo"), seeds, strict=True):
        rng = np.random.default_rng(ss)
        acquisition, content = sample_conditions(rng, split, labeled_conditions=labeled_conditions)
        tomo_seed = int(rng.integers(2**31))
        fov = bool(field_of_view > 0 and rng.random() < field_of_view)
        if fov:
            content = dataclasses.replace(content, field_of_view=True)
        name = f"{split}{i:03d}"
        sim = simulate_tomogram(
            tuple(shape), v, seed=tomo_seed, content=content, acquisition=acquisition
        )
        with_labels = split != "unlabeled"
        regions = region_labels(sim.objects, sim.table) if with_labels else None
        zs = list(range(0, sim.tomogram.shape[0], step))
        folder = out / split
        if layout == "slices":
            for z in zs:
                stem = f"{name}_z{z:04d}.tif"
                write_volume(folder / "images" / stem, sim.tomogram[z].astype(np.float32), v)
                if with_labels:
                    write_mask(folder / "labels" / stem, sim.membranes[z], v)
                    write_volume(folder / "regions" / stem, regions[z], v)
        else:
            stem = f"{name}.tif"
            write_volume(folder / "images" / stem, sim.tomogram.astype(np.float32), v)
            if with_labels:
                write_mask(folder / "labels" / stem, sim.membranes, v)
                write_volume(folder / "regions" / stem, regions, v)
        tomograms.append(
            {
                "name": name,
                "split": split,
                "seed": tomo_seed,
                "slices": zs,
                "field_of_view": fov,
                "membrane_fraction": float(sim.membranes.mean()),
                "objects": {k: int(n) for k, n in sim.table["class"].value_counts().items()},
                **conditions_dict(acquisition, content),
            }
        )
    write_json(
        {
            "seed": seed,
            "voxel_size_nm": v,
            "shape_zyx": list(shape),
            "slice_step": step,
            "layout": layout,
            "field_of_view": field_of_view,
            "files": _LAYOUT_FILES[layout],
            "tomograms": tomograms,
        },
        out / "dataset.json",
    )
    return len(plan)
