"""CPU throughput of ``sxtquant segment`` as a user runs it: whole slices, every output.

Writes a (Z, 1284, 1324) float32 TIFF (the slice size of a BESSY II tomogram) of
simulated-looking noise, then times the ``segment`` command on it with the given
model: reading, 2.5D context, tiled inference of every head, writing the membrane
probability and mask (and, for a region-aware model, the two region probabilities).
Megapixels per second = Z x 1284 x 1324 / wall seconds. The target is >= 1 Mpx/s on
two CPU cores. Run on a calm machine::

    .venv/bin/python evaluation/bench_segment.py --threads 2 --model default
    # -> evaluation/results/bench_segment.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--slices", type=int, default=8, help="Z of the test volume (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs; the best counts")
    parser.add_argument(
        "-o", "--output", type=Path, default=ROOT / "evaluation/results/bench_segment.json"
    )
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from sxtquant import io
    from sxtquant.cli import main as cli_main
    from sxtquant.nn.checkpoint import load_model

    config = load_model(args.model).config
    shape = (args.slices, 1284, 1324)
    rng = np.random.default_rng(0)
    volume = (0.3 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tomogram.tif"
        io.write_volume(path, volume, 9.8)
        for i in range(args.repeats):
            out = Path(tmp) / f"seg{i}"
            start = time.perf_counter()
            command = ["segment", str(path), "-o", str(out), "--model", args.model]
            code = cli_main([*command, "--device", "cpu", "--quiet"])
            times.append(time.perf_counter() - start)
            if code != 0:
                raise SystemExit(f"segment failed with exit code {code}")
            outputs = sorted(p.name for p in out.iterdir())
    pixels = int(np.prod(shape))
    best = min(times)
    result = {
        "model": args.model,
        "in_slices": config.in_slices,
        "heads": list(config.heads),
        "shape_zyx": list(shape),
        "threads": args.threads,
        "seconds": times,
        "megapixels_per_second": pixels / best / 1e6,
        "outputs": outputs,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__,
    }
    io.write_json(result, args.output)
    print(
        f"segment {args.model} ({config.in_slices} slices, heads {', '.join(config.heads)}): "
        f"{result['megapixels_per_second']:.2f} Mpx/s on {args.threads} threads "
        f"({shape[0]} slices of {shape[1]} x {shape[2]}, best of {len(times)}: {best:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
