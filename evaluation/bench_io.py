"""Benchmark: memory and time of reading a full-size tomogram.

Writes a 500 x 1324 x 1284 float32 MRC (3.4 GB, the size of the reference paper's
tomograms with 500 slices), then reads it with :func:`sxtquant.io.read_volume`
(including the NaN/inf scan) and reports the peak of memory allocated by Python and
numpy during the read (tracemalloc) against the size of the data. The target
(issue #2) is at most one copy; a memory map makes it zero.

Usage::

    .venv/bin/python evaluation/bench_io.py [--shape 500 1324 1284] [--keep]

Writes evaluation/results/bench_io.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import mrcfile
import numpy as np

from sxtquant.io.volumes import read_volume


def _write_big_mrc(path: Path, shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        for z in range(shape[0]):
            mrc.data[z] = rng.standard_normal(shape[1:], dtype=np.float32)
        mrc.voxel_size = 98.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(500, 1324, 1284))
    parser.add_argument("--dir", type=Path, default=None, help="folder for the test file")
    parser.add_argument("--out", type=Path, default=Path("evaluation/results/bench_io.json"))
    args = parser.parse_args()
    shape = tuple(args.shape)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "big.mrc"
        t0 = time.perf_counter()
        _write_big_mrc(path, shape)
        write_s = time.perf_counter() - t0
        tracemalloc.start()
        t0 = time.perf_counter()
        volume = read_volume(path)  # memory map + a full NaN/inf scan
        read_s = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        data_bytes = volume.data.nbytes
        result = {
            "shape": list(shape),
            "dtype": str(volume.data.dtype),
            "data_gb": data_bytes / 1e9,
            "write_s": round(write_s, 2),
            "read_and_check_s": round(read_s, 2),
            "peak_allocated_gb": peak / 1e9,
            "copies_of_the_data": round(peak / data_bytes, 3),
            "memory_mapped": isinstance(volume.data, np.memmap),
            "voxel_size_nm": volume.voxel_size_nm,
        }
        del volume
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
