"""Benchmark of the cryo-SXT simulator: where the time of one tomogram goes.

Run from the repository root::

    .venv/bin/python evaluation/bench_simulate.py                    # 64 x 256 x 256
    .venv/bin/python evaluation/bench_simulate.py --shape 100 512 512 --threads 2

Prints a table of stages (phantom, projector build, acquisition, reconstruction,
artifact mask) with wall-clock and CPU seconds, the projector's size and the peak
memory, and writes them to ``evaluation/results/bench_simulate.json``. CPU seconds
are reported beside wall seconds because a shared machine's load inflates wall time.
The target is a 64 x 256 x 256 tomogram in at most 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(64, 256, 256), metavar=("Z", "Y", "X")
    )
    parser.add_argument("--voxel-size", type=float, default=9.8)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--reconstruction", choices=("sirt", "fbp"), default="sirt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "-o", "--output", default=str(ROOT / "evaluation/results/bench_simulate.json")
    )
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from sxtquant import simulate as sim
    from sxtquant.core.progress import set_quiet
    from sxtquant.io.files import write_json

    set_quiet(True)
    shape = tuple(args.shape)
    v = args.voxel_size
    acq = sim.Acquisition(reconstruction=args.reconstruction)
    stages: dict[str, dict[str, float]] = {}

    def timed(name, fn, *a, **k):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn(*a, **k)
        stages[name] = {
            "wall_s": round(time.perf_counter() - w0, 3),
            "cpu_s": round(time.process_time() - c0, 3),
        }
        wall, cpu = stages[name]["wall_s"], stages[name]["cpu_s"]
        print(f"{name:<28s} wall {wall:7.2f} s   cpu {cpu:7.2f} s", flush=True)
        return result

    root = np.random.SeedSequence(args.seed)
    rng_phantom, rng_noise = (np.random.default_rng(s) for s in root.spawn(2))
    phantom = timed("phantom", sim.make_phantom, shape, v, seed=rng_phantom)
    angles = sim.tilt_angles(acq.tilt_max_deg, acq.tilt_step_deg)
    W = sim._grid_width(shape[0], shape[2], angles)
    op = timed(
        "projector build", sim._projector, shape[0], W, shape[2], tuple(float(a) for a in angles)
    )
    series = timed("acquisition", sim.acquire, phantom.lac, v, acq, seed=rng_noise)
    timed(
        f"reconstruction ({acq.reconstruction})",
        sim.reconstruct,
        series.data,
        series.angles_deg,
        shape[0],
        v,
        method=acq.reconstruction,
        iterations=acq.sirt_iterations,
    )
    artifacts = timed("artifact mask", sim.artifact_mask, phantom, acq)
    total_wall = sum(s["wall_s"] for s in stages.values())
    total_cpu = sum(s["cpu_s"] for s in stages.values())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows_with_gold = int(
        np.isin(phantom.objects, phantom.table.loc[phantom.table["class"] == "fiducial", "label"])
        .any(axis=(0, 2))
        .sum()
    )
    result = {
        "shape_zyx": list(shape),
        "voxel_size_nm": v,
        "n_angles": len(angles),
        "sirt_iterations": acq.sirt_iterations,
        "reconstruction": acq.reconstruction,
        "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "platform": platform.platform(),
        "grid_width_x": W,
        "projector_nnz": int(op.matrix.nnz),
        "projector_mib": round(op.matrix.nnz * 2 * 8 / 2**20, 1),
        "objects": len(phantom.table),
        "gold_rows": rows_with_gold,
        "artifact_fraction": float(artifacts.mean()),
        "stages": stages,
        "total_wall_s": round(total_wall, 2),
        "total_cpu_s": round(total_cpu, 2),
        "peak_rss_mib": round(peak_mib, 1),
        "target_s": 60.0,
    }
    print(
        f"{'total':<28s} wall {total_wall:7.2f} s   cpu {total_cpu:7.2f} s   "
        f"peak RSS {peak_mib:.0f} MiB   (load average {result['load_average_1min']:.1f})"
    )
    write_json(result, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
