"""Benchmark and accuracy report of ``sxtquant.quantify.morphology.measure_objects`` (no simulator).

Run as a plain script (it is not collected by pytest)::

    .venv/bin/python evaluation/bench_morphology.py            # 300x1000x1000, ~1000 objects
    .venv/bin/python evaluation/bench_morphology.py --shape 100 400 400 --objects 150
    .venv/bin/python evaluation/bench_morphology.py --accuracy # errors on analytic shapes

The benchmark fills a (Z, Y, X) uint16 label volume with randomly placed and oriented
spheres, tri-axial ellipsoids, capsules and cylinders (radii 8-25 voxels) and times
one call of ``measure_objects``. Target (issue #5): 300x1000x1000 with ~1000 objects
in <= 60 s on 2 CPU cores.

``--accuracy`` digitises shapes whose smallest radius is 5-7.5 voxels of the coarsest
spacing, on isotropic and anisotropic grids at random orientations, and prints the
mean and maximum relative error of each measured quantity against the analytic value.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from sxtquant.core.progress import set_quiet
from sxtquant.quantify.morphology import measure_objects
from sxtquant.simulate.shapes import (
    Capsule,
    Cylinder,
    Ellipsoid,
    Shape,
    Sphere,
    digitize,
    paint,
    place,
    random_rotation,
)

KINDS = ("sphere", "ellipsoid", "capsule", "cylinder")
SPACINGS = ((1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 1.3, 1.3), (3.0, 1.0, 1.0))


def random_shape(kind: str, rng: np.random.Generator, radius: float, center) -> Shape:
    """A randomly oriented shape of the given kind, smallest radius ``radius`` (nm)."""
    center = np.asarray(center, dtype=float)
    rot = random_rotation(rng)
    if kind == "sphere":
        return Sphere(tuple(center), radius)
    if kind == "ellipsoid":
        semi = (radius * rng.uniform(1.5, 2.5), radius * rng.uniform(1.0, 1.5), radius)
        return Ellipsoid(tuple(center), semi, rot)
    half = rot[:, 0] * radius * rng.uniform(1.0, 2.0)
    cls = Capsule if kind == "capsule" else Cylinder
    return cls(tuple(center - half), tuple(center + half), radius)


def build_volume(shape, n_objects: int, voxel_size_nm: float, seed: int = 0) -> np.ndarray:
    """A uint16 label volume holding ``n_objects`` random shapes (later ones overwrite)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint16)
    extent = np.asarray(shape) * voxel_size_nm
    for label in range(1, n_objects + 1):
        radius = rng.uniform(8, 25) * voxel_size_nm
        center = rng.uniform(0, 1, 3) * extent
        paint(labels, random_shape(KINDS[label % 4], rng, radius, center), label, voxel_size_nm)
    return labels


def benchmark(shape, n_objects: int, voxel_size_nm: float = 10.0) -> dict:
    started = time.perf_counter()
    labels = build_volume(shape, n_objects, voxel_size_nm)
    built = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    table = measure_objects(labels, voxel_size_nm)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "shape": list(shape),
        "objects": len(table),
        "object_voxels": int(table["voxels"].sum()),
        "build_seconds": round(built, 1),
        "measure_seconds": round(seconds, 1),
        "measure_cpu_seconds": round(cpu, 1),  # wall time inflates on a shared machine
    }


def accuracy(n_per_case: int = 8, seed: int = 0) -> dict:
    """Relative errors (measured / analytic - 1) per quantity and shape kind."""
    rng = np.random.default_rng(seed)
    set_quiet(True)  # one progress bar per shape would only clutter
    errors: dict[str, dict[str, list[float]]] = {}
    for spacing in SPACINGS:
        for kind in KINDS:
            for _ in range(n_per_case):
                radius = 5 * max(spacing) * rng.uniform(1.0, 1.5)
                shape, grid = place(
                    random_shape(kind, rng, radius, (0, 0, 0)),
                    spacing,
                    offset_voxels=rng.uniform(0, 1, 3),
                )
                mask = digitize(shape, grid, spacing)
                row = measure_objects(mask.astype(np.uint8), spacing).iloc[0]
                zs = np.flatnonzero(mask.any(axis=(1, 2)))
                sections = [s for s in (shape.section(z * spacing[0]) for z in zs) if s]
                truth = {
                    "volume": (row.volume_nm3, shape.volume_nm3),
                    "surface_area": (row.surface_area_nm2, shape.surface_area_nm2),
                    "axis_major": (row.axis_major_nm, shape.axes_nm[0]),
                    "axis_second": (row.axis_second_nm, shape.axes_nm[1]),
                    "axis_minor": (row.axis_minor_nm, shape.axes_nm[2]),
                    "slice_first_axis": (
                        row.slice_first_axis_nm_mean,
                        np.mean([s.first_axis_nm for s in sections]),
                    ),
                    "slice_second_axis": (
                        row.slice_second_axis_nm_mean,
                        np.mean([s.second_axis_nm for s in sections]),
                    ),
                    "slice_perimeter": (
                        row.slice_perimeter_nm_mean,
                        np.mean([s.perimeter_nm for s in sections]),
                    ),
                }
                for quantity, (measured, true) in truth.items():
                    errors.setdefault(quantity, {}).setdefault(kind, []).append(measured / true - 1)
    return {
        quantity: {
            kind: {
                "mean_percent": round(100 * float(np.mean(v)), 2),
                "max_abs_percent": round(100 * float(np.max(np.abs(v))), 2),
            }
            for kind, v in per_kind.items()
        }
        for quantity, per_kind in errors.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 1000, 1000), metavar="N")
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--accuracy", action="store_true", help="print the accuracy table")
    args = parser.parse_args()
    if args.accuracy:
        print(json.dumps(accuracy(), indent=2))
    else:
        print(json.dumps(benchmark(tuple(args.shape), args.objects), indent=2))


if __name__ == "__main__":
    main()
