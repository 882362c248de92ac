#!/usr/bin/env python3
"""Speed and agreement: the published network in sxtquant vs the reference TensorFlow model.

Side by side on this machine, with the same weights (the paper architecture, m = 64,
76,483,502 parameters, seeded random weights written by the reference's own Keras
``save_weights``) and the same standardised input tiles (256x256 and 1024x1024):

* reference: ``MyDoubleDecoderNet`` of github.com/noegroup/deep_sxt, called as its own
  inference does (``model(x, training=False)``, eager), and also compiled with
  ``tf.function`` (the best TensorFlow does with the unchanged model);
* sxtquant: :func:`sxtquant.convert.load_keras_weights` in eval mode, and after
  :func:`sxtquant.model.prepare_for_inference` (batch norm folded into convolutions,
  channels-last).

Reports seconds per tile (best of ``--repeat`` after a warm-up), the speed-up and the
largest absolute difference of each head from the reference's output. TensorFlow runs
in its own environment (see tools/make_keras_fixtures.py)::

    python evaluation/bench_convert.py --tf-python /tmp/tfenv/bin/python \\
        --reference /tmp/deep_sxt

Writes ``evaluation/results/bench_convert.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "make_keras_fixtures.py"


def _tf(python: str, reference: str, *args: str) -> None:
    cmd = [python, str(TOOL), "--reference", reference, *args]
    proc = subprocess.run(cmd, text=True, capture_output=True)
    if proc.returncode:
        sys.exit(f"reference run failed:\n{proc.stderr[-3000:]}")
    print(proc.stdout.strip(), flush=True)


class _Reference:
    """The reference model in a TensorFlow subprocess, answering one timed call at a time."""

    def __init__(self, python: str, reference: str, inputs: Path, weights: Path, out: Path):
        cmd = [python, str(TOOL), "--reference", reference, "--width", "64",
               "--time", str(inputs), "--weights", str(weights), "--out", str(out)]  # fmt: skip
        self.log = open(out / "reference_stderr.log", "w")
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.info = self._answer()

    def _answer(self) -> dict:
        while line := self.proc.stdout.readline():
            if line.startswith("{"):  # the reference prints notes of its own
                return json.loads(line)
        sys.exit(f"reference run failed, see {self.log.name}")

    def __call__(self, key: str, mode: str) -> float:
        self.proc.stdin.write(f"{key} {mode}\n")
        self.proc.stdin.flush()
        return self._answer()["seconds"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


MODES = ("eager", "function")


def _ours(net, x, last: dict, slot: tuple) -> float:
    t0 = time.perf_counter()
    last[slot] = net(x)
    return time.perf_counter() - t0


def _inputs(sizes: list[int], seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for size in sizes:
        x = rng.standard_normal((1, 1, size, size)).astype(np.float32)
        # smooth a little, then standardise per slice as sxtquant and the reference do
        x = (x + np.roll(x, 1, -1) + np.roll(x, 1, -2) + np.roll(x, (1, 1), (-2, -1))) / 4
        out[f"tile{size}"] = ((x - x.mean()) / x.std()).astype(np.float32)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-python", default=os.environ.get("SXTQUANT_TF_PYTHON"))
    parser.add_argument("--reference", default=os.environ.get("DEEP_SXT_REPO"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sxtquant_bench_convert"))
    parser.add_argument("--sizes", default="256,1024", help="tile sides, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both frameworks")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "evaluation" / "results" / "bench_convert.json"
    )
    args = parser.parse_args(argv)
    if not args.tf_python or not args.reference:
        parser.error("needs --tf-python (TensorFlow + tf-keras) and --reference (deep_sxt clone)")

    import torch

    from sxtquant.convert import load_keras_weights
    from sxtquant.model import prepare_for_inference

    torch.set_num_threads(args.threads)
    env_threads = str(args.threads)
    os.environ.update(OMP_NUM_THREADS=env_threads, TF_NUM_INTRAOP_THREADS=env_threads)

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "paper_weights.h5"
    if not weights.is_file():
        _tf(args.tf_python, args.reference, "--width", "64", "--name", "paper",
            "--cases", "batch64", "--out", str(work))  # fmt: skip
    sizes = [int(s) for s in args.sizes.split(",")]
    inputs = _inputs(sizes)
    np.savez(work / "inputs.npz", **inputs)

    # Same weights, same inputs; every timed call of one framework is interleaved with
    # the other's, so both see the same machine load. Best of --repeat calls.
    model = load_keras_weights(weights, "paper")
    fused = prepare_for_inference(model, channels_last=True)
    ours = {
        "eval": (model, lambda x: x),
        "prepared": (fused, lambda x: x.contiguous(memory_format=torch.channels_last)),
    }
    reference = _Reference(args.tf_python, args.reference, work / "inputs.npz", weights, work)
    seconds: dict[tuple[str, str], list[float]] = {}
    last: dict[tuple[str, str], tuple] = {}
    with torch.inference_mode():
        for round_ in range(args.repeat + 1):
            for i, (key, x_np) in enumerate(inputs.items()):
                # Round 0 warms both frameworks up on the first (smallest) tile only: on
                # larger tiles a first call's set-up (tf.function tracing, oneDNN
                # primitives) is a few percent of a call, and each call is long.
                if round_ == 0 and i > 0:
                    continue
                calls = [(f"reference_{m}", lambda m=m, k=key: reference(k, m)) for m in MODES]
                for name, (net, prep) in ours.items():
                    x = prep(torch.from_numpy(x_np))
                    calls.append(
                        (
                            f"sxtquant_{name}",
                            lambda net=net, x=x, k=key, n=name: _ours(net, x, last, (k, n)),
                        )
                    )
                for variant, call in calls:
                    t = call()
                    print(f"round {round_} {key} {variant}: {t:.3f} s", flush=True)
                    if round_ > 0:
                        seconds.setdefault((key, variant), []).append(t)
    reference.close()
    with np.load(work / "reference_outputs.npz") as data:
        ref_out = {k: data[k] for k in data.files}

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end",
        "threads": args.threads,
        "torch": torch.__version__,
        "tensorflow": reference.info["tf_version"],
        "weights": "paper architecture (m = 64), seeded random weights via Keras save_weights",
        "repeat": args.repeat,
        "cases": {},
    }
    for key, x_np in inputs.items():
        entry = {"tile": list(x_np.shape[-2:])}
        for (k, variant), values in seconds.items():
            if k == key:
                entry[f"{variant}_s"] = min(values)
        for name in ours:
            image, label = last[(key, name)]
            for head, value in (("image", image), ("label", label)):
                diff = np.abs(value.float().numpy() - ref_out[f"{key}_{head}"]).max()
                entry[f"sxtquant_{name}_max_abs_diff_{head}"] = float(diff)
        best = min(entry["sxtquant_eval_s"], entry["sxtquant_prepared_s"])
        entry["speedup_vs_reference_eager"] = entry["reference_eager_s"] / best
        entry["speedup_vs_reference_function"] = entry["reference_function_s"] / best
        results["cases"][key] = entry
        print(json.dumps({key: entry}, indent=2), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
