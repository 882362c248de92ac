"""Dask batch throughput and the memory of segmenting a tomogram larger than a worker's limit.

1. Throughput: the same simulated tomograms segmented (shipped model, CLI defaults:
   tile 256, overlap 32, batch 4) one per task by a LocalCluster of 1 and of 2
   worker processes (one thread each), and in this process with 2 torch threads for
   reference: tomograms per minute, megapixels per second, speed-up of 2 workers over
   1. Workers are started and have loaded the model before the clock starts (the
   start-up is timed apart).
2. Memory: an OME-Zarr tomogram several times larger than the memory limit given to
   each worker is segmented block by block on a 2-worker LocalCluster
   (:func:`sxtquant.scale.blocks.segment_ome_zarr`); the peak resident memory
   (``VmHWM``) of every worker process and of this (client) process is read at the
   end. The workers' memory target, spill and pause are off and ``terminate`` is at
   95 % of the limit, so the limit is a hard line: a worker above it would be killed
   and the run would fail.

The machine's 2 cores are shared with other work (model training), so times are
noisy; the load average is recorded before and after. Run once, at a modest size::

    .venv/bin/python evaluation/bench_dask.py
    # -> evaluation/results/bench_dask.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from sxtquant import io, scale
from sxtquant.scale.blocks import _output_chunks
from sxtquant.scale.segmentation import SegmentSpec, segment_file

RESULTS = Path(__file__).resolve().parent / "results" / "bench_dask.json"
MB = 1 << 20


def peak_rss_mb() -> float:
    """Peak resident memory of the calling process (VmHWM), MiB."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def current_rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def _warm_up() -> float:
    """Load the model in a worker (as its first task would); returns its RSS, MiB."""
    scale.cached_model("default")
    return current_rss_mb()


class RssSampler:
    """The largest resident memory of this process seen every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.interval = interval
        self.peak = current_rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss_mb())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def simulated_volume(shape, seed: int = 0) -> np.ndarray:
    """A cryo-SXT-like volume of ``shape``: one small simulation tiled over it."""
    from sxtquant.simulate.tomogram import simulate_tomogram
    from sxtquant.simulate.tomography import Acquisition

    sim = simulate_tomogram((16, 256, 256), 9.8, seed=seed, acquisition=Acquisition())
    reps = [int(np.ceil(n / m)) for n, m in zip(shape, sim.tomogram.shape, strict=True)]
    tiled = np.tile(sim.tomogram, reps)
    return np.ascontiguousarray(tiled[: shape[0], : shape[1], : shape[2]])


def throughput(work: Path, n_tomograms: int, shape, workers: tuple[int, ...]) -> dict:
    folder = work / "tomograms"
    base = simulated_volume(shape)
    for i in range(n_tomograms):  # different data per tomogram: rolled in y
        io.write_volume(folder / f"t{i}.mrc", np.roll(base, 37 * i, axis=1), 9.8)
    paths = sorted(folder.glob("*.mrc"))
    voxels = n_tomograms * int(np.prod(shape))
    spec = SegmentSpec(model="default", model_identity=scale.model_identity("default"))

    def run(client, name: str) -> dict:
        out = work / name
        jobs = [scale.Job(str(p), segment_file, (p, out, spec), {"progress": False}) for p in paths]
        start = time.perf_counter()
        outcomes = scale.run_jobs(jobs, client, echo=False)
        seconds = time.perf_counter() - start
        assert all(o.status == "ok" for o in outcomes), outcomes
        return {
            "seconds": round(seconds, 2),
            "tomograms_per_min": round(60 * n_tomograms / seconds, 2),
            "megapixels_per_s": round(voxels / seconds / 1e6, 3),
        }

    results: dict = {
        "tomograms": n_tomograms,
        "shape_zyx": list(shape),
        "megapixels_total": round(voxels / 1e6, 2),
    }
    import torch

    torch.set_num_threads(2)
    scale.cached_model("default")
    results["in_process_2_threads"] = run(None, "in_process")
    for n in workers:
        start = time.perf_counter()
        with scale.connect(scale.SchedulerSpec("local", workers=n)) as client:
            client.run(_warm_up)
            startup = time.perf_counter() - start
            entry = run(client, f"workers_{n}")
            entry["startup_s"] = round(startup, 2)
            entry["worker_peak_rss_mb"] = [round(v, 1) for v in client.run(peak_rss_mb).values()]
        results[f"local_{n}_workers"] = entry
    if {1, 2} <= set(workers):
        one, two = results["local_1_workers"], results["local_2_workers"]
        results["speedup_2_over_1"] = round(one["seconds"] / two["seconds"], 2)
    return results


def large_volume(work: Path, shape, limit_mb: int, block_slices: int, options: dict) -> dict:
    import dask

    source = work / "large.ome.zarr"
    chunk = _output_chunks(shape, block_slices)
    array = io.create_ome_zarr(source, shape, np.float32, (9.8,) * 3, chunks=chunk)
    base = simulated_volume((32, shape[1], shape[2]), seed=1)
    for z in range(0, shape[0], 32):  # written 32 slices at a time
        n = min(32, shape[0] - z)
        array[z : z + n] = np.roll(base, z, axis=2)[:n]
    nbytes = int(np.prod(shape)) * 4
    del base
    settings = {
        "distributed.worker.memory.target": False,
        "distributed.worker.memory.spill": False,
        "distributed.worker.memory.pause": False,
        "distributed.worker.memory.terminate": 0.95,
    }
    with dask.config.set(settings):
        spec = scale.SchedulerSpec("local", workers=2)
        with scale.connect(spec, memory_limit=limit_mb * MB) as client:
            client.run(_warm_up)
            addresses = sorted(client.scheduler_info()["workers"])
            warm = client.run(current_rss_mb)
            client_start = current_rss_mb()
            start = time.perf_counter()
            with RssSampler() as client_rss:
                stats = scale.segment_ome_zarr(
                    source,
                    work / "large.probability.ome.zarr",
                    work / "large.mask.ome.zarr",
                    "default",
                    block_slices=block_slices,
                    scheduler=client,
                    **options,
                )
            seconds = time.perf_counter() - start
            peaks = client.run(peak_rss_mb)
            same_workers = sorted(client.scheduler_info()["workers"]) == addresses
    return {
        "shape_zyx": list(shape),
        "tomogram_mb": round(nbytes / MB, 1),
        "worker_memory_limit_mb": limit_mb,
        "tomogram_over_limit": round(nbytes / (limit_mb * MB), 2),
        "block_slices": block_slices,
        "block_mb": round(block_slices * shape[1] * shape[2] * 4 / MB, 1),
        "infer_options": options,
        "seconds": round(seconds, 1),
        "megapixels_per_s": round(np.prod(shape) / seconds / 1e6, 3),
        "membrane_fraction": round(stats.fraction, 4),
        "worker_rss_mb_model_loaded": [round(v, 1) for v in warm.values()],
        "worker_peak_rss_mb": [round(v, 1) for v in peaks.values()],
        "no_worker_restarted": same_workers,
        "client_rss_mb_at_start": round(client_start, 1),
        "client_rss_mb_max_during_run": round(client_rss.peak, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tomograms", type=int, default=4)
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(16, 512, 512), metavar=("Z", "Y", "X")
    )
    parser.add_argument(
        "--large-shape", type=int, nargs=3, default=(1792, 512, 512), metavar=("Z", "Y", "X")
    )
    parser.add_argument("--worker-memory-mb", type=int, default=600)
    parser.add_argument("--block-slices", type=int, default=16)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_dask_", dir=args.work_dir))
    load_before = os.getloadavg()
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "note": (
            "2 CPU cores shared with other work (model training): timings are noisy, "
            "see the load averages; one run"
        ),
        "load_average_before": [round(v, 2) for v in load_before],
    }
    try:
        results["throughput"] = throughput(work, args.tomograms, tuple(args.shape), (1, 2))
        print(json.dumps(results["throughput"], indent=2), flush=True)
        if not args.skip_large:
            # a worker holds the model and one block; batch 1 and no tile overlap keep the
            # network's own memory (and the run's time) small
            options = {"batch_size": 1, "overlap": 0}
            try:
                results["large_volume"] = large_volume(
                    work, tuple(args.large_shape), args.worker_memory_mb, args.block_slices, options
                )
            except Exception as exc:  # e.g. KilledWorker: the limit was too small
                results["large_volume"] = {"failed": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(results["large_volume"], indent=2), flush=True)
    finally:
        results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
        shutil.rmtree(work, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
