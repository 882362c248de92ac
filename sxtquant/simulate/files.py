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
) -> int:
    """Write a semi-supervised training set: labelled, unlabelled and test 2D slices.

    Each tomogram has its own random stream spawned from ``seed``, in the order
    labelled, unlabelled, test; its conditions come from
    :func:`sxtquant.simulate.conditions.sample_conditions`. Returns the number of
    tomograms written. Layout: ``dataset.json`` describes it.
    """
    import numpy as np

    from sxtquant.core.progress import progress
    from sxtquant.io.files import write_json
    from sxtquant.io.volumes import write_mask, write_volume
    from sxtquant.simulate.conditions import conditions_dict, sample_conditions
    from sxtquant.simulate.tomogram import simulate_tomogram

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
    tomograms = []
    for (split, i), ss in zip(progress(plan, desc="tomograms", unit="tomo"), seeds, strict=True):
        rng = np.random.default_rng(ss)
        acquisition, content = sample_conditions(rng, split, labeled_conditions=labeled_conditions)
        tomo_seed = int(rng.integers(2**31))
        name = f"{split}{i:03d}"
        sim = simulate_tomogram(
            tuple(shape), v, seed=tomo_seed, content=content, acquisition=acquisition
        )
        zs = list(range(0, sim.tomogram.shape[0], slice_step))
        folder = out / split
        for z in zs:
            stem = f"{name}_z{z:04d}.tif"
            write_volume(folder / "images" / stem, sim.tomogram[z].astype(np.float32), v)
            if split != "unlabeled":
                write_mask(folder / "labels" / stem, sim.membranes[z], v)
        tomograms.append(
            {
                "name": name,
                "split": split,
                "seed": tomo_seed,
                "slices": zs,
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
            "slice_step": slice_step,
            "layout": {
                "images": "<split>/images/<tomo>_z<zzzz>.tif, float32 raw reconstruction "
                "(LAC, 1/um), not standardised",
                "labels": "<split>/labels/<tomo>_z<zzzz>.tif, uint8 0/255 membranes",
            },
            "tomograms": tomograms,
        },
        out / "dataset.json",
    )
    return len(plan)
