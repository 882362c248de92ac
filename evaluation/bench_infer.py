"""Inference speed of each preset on this machine's CPU, next to its matmul peak.

For each preset: analytic FLOPs per pixel (whole network; label head only, which
is what segmentation runs), seconds per 256x256 tile for the plain eager network
and for the inference form (batch norm folded, channels-last, label head only,
``torch.inference_mode``), megapixels per second, achieved GFLOP/s and its
fraction of the measured fp32 matrix-multiply rate (``torch.mm`` on 4096x4096),
and the end-to-end rate of :func:`sxtquant.nn.predict.predict_slices` on a slice
(tiling overlap included). The weights are random with calibrated batch-norm
statistics; speed does not depend on their values.

Run on a calm machine (it is shared)::

    .venv/bin/python evaluation/bench_infer.py --threads 2
    # -> evaluation/results/bench_infer.json

The ``paper`` preset is slow on a CPU (~150 GFLOP per tile); it is timed on a
few tiles only (``--paper-repeats``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from sxtquant.core.memory import reuse_freed_memory
from sxtquant.nn.config import PRESETS
from sxtquant.nn.inference import prepare_for_inference
from sxtquant.nn.network import build_model, count_parameters, flops_per_tile
from sxtquant.nn.predict import predict_slices

RESULTS = Path(__file__).resolve().parent / "results" / "bench_infer.json"


def best_time(fn, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    with torch.inference_mode():
        t = best_time(lambda: torch.mm(a, b), repeats)
    return 2.0 * n**3 / t / 1e9


def calibrated_model(preset: str, seed: int = 0) -> torch.nn.Module:
    """Random weights, batch-norm statistics fitted to its activations (finite, O(1))."""
    torch.manual_seed(seed)
    model = build_model(preset)
    torch.optim.swa_utils.update_bn([torch.randn(2, 1, 64, 64)], model)
    return model.eval()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_preset(preset: str, *, tile: int, repeats: int, slice_side: int, peak: float) -> dict:
    model = calibrated_model(preset)
    flops = flops_per_tile(preset, tile)
    flops_label = flops_per_tile(preset, tile, label_only=True)
    x = torch.randn(1, 1, tile, tile)
    pixels = tile * tile
    out: dict = {
        "preset": preset,
        "parameters": count_parameters(model),
        "flops_per_pixel": flops / pixels,
        "flops_per_pixel_label_only": flops_label / pixels,
        "gflop_per_tile": flops / 1e9,
        "gflop_per_tile_label_only": flops_label / 1e9,
    }
    with torch.inference_mode():
        t_eager = best_time(lambda: model(x), repeats)
        fast = prepare_for_inference(model)
        xc = x.contiguous(memory_format=torch.channels_last)
        t_full = best_time(lambda: fast(xc), repeats)
        t_label = best_time(lambda: fast.forward_label(xc), repeats)
    for name, t, fl in (
        ("eager_full", t_eager, flops),
        ("inference_full", t_full, flops),
        ("inference_label", t_label, flops_label),
    ):
        gflops = fl / t / 1e9
        out[name] = {
            "seconds_per_tile": t,
            "megapixels_per_s": pixels / t / 1e6,
            "gflop_per_s": gflops,
            "fraction_of_matmul_peak": gflops / peak,
        }
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, slice_side, slice_side)).astype(np.float32)
    t_slice = best_time(
        lambda: predict_slices(model, image, device="cpu", tile=tile, overlap=32, progress=False),
        max(1, repeats // 2),
    )
    out["predict_slices"] = {
        "slice": [slice_side, slice_side],
        "tile": tile,
        "overlap": 32,
        "seconds_per_slice": t_slice,
        "megapixels_per_s": slice_side**2 / t_slice / 1e6,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement")
    parser.add_argument("--paper-repeats", type=int, default=2)
    parser.add_argument("--slice", type=int, default=1024, help="side of the predict_slices test")
    parser.add_argument("--paper-slice", type=int, default=480)
    parser.add_argument("-o", "--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    reuse_freed_memory()  # as predict_slices does on CPU; timings of the bare network too
    load_before = os.getloadavg()[0]
    peak = matmul_gflops()
    print(f"torch.mm fp32: {peak:.1f} GFLOP/s on {args.threads} threads", flush=True)
    results = []
    for preset in args.presets:
        paper = preset == "paper"
        res = bench_preset(
            preset,
            tile=args.tile,
            repeats=args.paper_repeats if paper else args.repeats,
            slice_side=args.paper_slice if paper else args.slice,
            peak=peak,
        )
        results.append(res)
        e, lab = res["eager_full"], res["inference_label"]
        print(
            f"{preset:6s} {res['flops_per_pixel'] / 1e6:7.3f} MFLOP/px | eager "
            f"{e['seconds_per_tile']:.3f} s/tile | inference {lab['seconds_per_tile']:.3f} s/tile "
            f"{lab['megapixels_per_s']:.3f} MP/s {lab['gflop_per_s']:.0f} GFLOP/s "
            f"({100 * lab['fraction_of_matmul_peak']:.0f} % of mm) | predict_slices "
            f"{res['predict_slices']['megapixels_per_s']:.3f} MP/s",
            flush=True,
        )
    report = {
        "machine": {
            "cpu": cpu_name(),
            "logical_cpus": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg()[0],
        },
        "matmul_fp32_gflop_per_s": peak,
        "tile": args.tile,
        "presets": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
