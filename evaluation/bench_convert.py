#!/usr/bin/env python3
"""Speed and agreement: the published network in sxtquant vs the reference TensorFlow model.

Side by side on this machine, with the same weights (the paper architecture, m = 64,
76,483,502 parameters, seeded random weights written by the reference's own Keras
``save_weights``) and the same standardised input tiles (256x256 and 1024x1024):

* reference: ``MyDoubleDecoderNet`` of github.com/noegroup/deep_sxt, called as its own
  inference does (``model(x, training=False)``, eager, both heads), and compiled with
  ``tf.function`` (the best TensorFlow does with the unchanged model); and its label
  path alone (encoder, neck, label decoder and label head -- the reference has no such
  call of its own, this is the same work as sxtquant's ``forward_label``), eager and
  compiled;
* sxtquant: :func:`sxtquant.nn.keras.load_keras_weights` in eval mode, and its inference
  form :func:`sxtquant.nn.inference.prepare_for_inference` (on CPU a
  :class:`sxtquant.nn.fastform.FastSXTNet`), both heads and ``forward_label``.

Every timed call of one framework is interleaved with the other's, round after round,
so that both see the same machine load; the speed-ups are medians over rounds of the
ratio within a round. Each call's wall time and the CPU time of its process (user +
system, all threads) are recorded. Also the largest absolute difference of each head
from the reference's output and from sxtquant's eval-mode network. TensorFlow runs in
its own environment (see tools/make_keras_fixtures.py), as a server process started
from this same script::

    python evaluation/bench_convert.py --tf-python /tmp/tfenv/bin/python \\
        --reference /tmp/deep_sxt --sizes 256,1024 --repeat 5

Writes ``evaluation/results/bench_convert.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "make_keras_fixtures.py"

# One round: reference modes (served by the TensorFlow process) and sxtquant variants,
# alternating.
SEQUENCE = (
    ("reference", "eager"),
    ("sxtquant", "fast"),
    ("reference", "function"),
    ("sxtquant", "fast_label"),
    ("reference", "label_eager"),
    ("sxtquant", "eval"),
    ("reference", "label_function"),
)
# speed-ups reported: (name, reference variant, sxtquant variant)
RATIOS = (
    ("both_heads_vs_reference_eager", "reference_eager", "sxtquant_fast"),
    ("both_heads_vs_reference_function", "reference_function", "sxtquant_fast"),
    ("label_only_vs_reference_label_eager", "reference_label_eager", "sxtquant_fast_label"),
    ("label_only_vs_reference_label_function", "reference_label_function", "sxtquant_fast_label"),
    ("segmentation_vs_reference_own_inference", "reference_eager", "sxtquant_fast_label"),
)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(call) -> tuple[object, float, float]:
    """Result, wall seconds, CPU seconds of this process."""
    c0, t0 = _cpu_seconds(), time.perf_counter()
    out = call()
    return out, time.perf_counter() - t0, _cpu_seconds() - c0


# --------------------------------------------------------------------------- TensorFlow side


def serve_reference(args) -> int:
    """Runs under the TensorFlow interpreter: answers ``KEY MODE`` lines on stdin with one
    JSON line each (wall and CPU seconds); at end of input writes the outputs."""
    sys.path.insert(0, str(TOOL.parent))
    from make_keras_fixtures import build_reference  # sets TF_USE_LEGACY_KERAS first

    # isort: split
    import tensorflow as tf

    model = build_reference(args.reference, 64)
    model.load_weights(str(args.weights))

    def label_path(x):  # the model's call() without the image decoder
        features, skips = model.encoder(x, training=False)
        y = tf.concat([b(features, training=False) for b in model.mid_branch], axis=-1)
        z = model.decoder_label(y, skip_x=skips, training=False)
        for layer in model.final_layers_label:
            z = layer(z, training=False)
        return z

    modes = {
        "eager": lambda x: model(x, training=False),
        "function": tf.function(lambda x: model(x, training=False), reduce_retracing=True),
        "label_eager": label_path,
        "label_function": tf.function(label_path, reduce_retracing=True),
    }
    with np.load(args.serve_reference) as data:
        inputs = {k: tf.constant(np.moveaxis(data[k], 1, -1)) for k in data.files}  # NHWC
    outputs = {}
    print(json.dumps({"ready": True, "tf_version": tf.__version__}), flush=True)
    for line in sys.stdin:
        key, mode = line.split()

        def call(key=key, mode=mode):
            out = modes[mode](inputs[key])
            return [o.numpy() for o in out] if isinstance(out, list | tuple) else out.numpy()

        out, wall, cpu = _timed(call)
        if mode == "eager":
            outputs[f"{key}_image"] = np.moveaxis(out[0], -1, 1)
            outputs[f"{key}_label"] = np.moveaxis(out[1], -1, 1)
        elif mode == "label_function":
            outputs[f"{key}_label_only"] = np.moveaxis(out, -1, 1)
        print(json.dumps({"key": key, "mode": mode, "wall": wall, "cpu": cpu}), flush=True)
    np.savez(args.out_npz, **outputs)
    return 0


class _Reference:
    """The reference model in a TensorFlow subprocess, answering one timed call at a time."""

    def __init__(self, args, inputs: Path, out_npz: Path):
        cmd = [
            args.tf_python,
            str(Path(__file__).resolve()),
            "--reference",
            args.reference,
            "--serve-reference",
            str(inputs),
            "--weights",
            str(args.weights),
            "--out-npz",
            str(out_npz),
        ]
        env = dict(os.environ, TF_NUM_INTRAOP_THREADS=str(args.threads), TF_CPP_MIN_LOG_LEVEL="2")
        self.log = open(out_npz.with_suffix(".stderr.log"), "w")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self.info = self._answer()

    def _answer(self) -> dict:
        while line := self.proc.stdout.readline():
            if line.startswith("{"):  # the reference prints notes of its own
                return json.loads(line)
        sys.exit(f"reference run failed, see {self.log.name}")

    def __call__(self, key: str, mode: str) -> tuple[float, float]:
        self.proc.stdin.write(f"{key} {mode}\n")
        self.proc.stdin.flush()
        answer = self._answer()
        return answer["wall"], answer["cpu"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


# --------------------------------------------------------------------------- driver


def _inputs(sizes: list[int], seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for size in sizes:
        x = rng.standard_normal((1, 1, size, size)).astype(np.float32)
        # smooth a little, then standardise per slice as sxtquant and the reference do
        x = (x + np.roll(x, 1, -1) + np.roll(x, 1, -2) + np.roll(x, (1, 1), (-2, -1))) / 4
        out[f"tile{size}"] = ((x - x.mean()) / x.std()).astype(np.float32)
    return out


def _summary(values: list[tuple[float, float]]) -> dict:
    wall = [w for w, _ in values]
    cpu = [c for _, c in values]
    return {
        "wall_s_median": float(np.median(wall)),
        "cpu_s_median": float(np.median(cpu)),
        "wall_s": wall,
        "cpu_s": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tf-python", default=os.environ.get("SXTQUANT_TF_PYTHON"))
    parser.add_argument("--reference", default=os.environ.get("DEEP_SXT_REPO"))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sxtquant_bench_convert"))
    parser.add_argument("--sizes", default="256,1024", help="tile sides in pixels, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both frameworks")
    parser.add_argument(
        "--eval-max-size",
        type=int,
        default=256,
        help="time sxtquant's plain eval-mode network only on tiles up to this side (pixels); "
        "it is always run once for the agreement check",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "evaluation" / "results" / "bench_convert.json"
    )
    parser.add_argument("--serve-reference", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out-npz", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.reference:
        parser.error("needs --reference (deep_sxt clone)")
    if args.serve_reference is not None:
        return serve_reference(args)
    if not args.tf_python:
        parser.error("needs --tf-python (TensorFlow + tf-keras)")

    # sxtquant first: it sets its OpenMP defaults before torch loads, as for a user
    from sxtquant.nn.inference import prepare_for_inference
    from sxtquant.nn.keras import load_keras_weights

    # isort: split
    import torch

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    args.weights = work / "paper_weights.h5"
    if not args.weights.is_file():
        proc = subprocess.run(
            [
                args.tf_python,
                str(TOOL),
                "--reference",
                args.reference,
                "--width",
                "64",
                "--name",
                "paper",
                "--cases",
                "batch64",
                "--out",
                str(work),
            ],
            text=True,
            capture_output=True,
        )
        if proc.returncode:
            sys.exit(f"reference run failed:\n{proc.stderr[-3000:]}")
    sizes = [int(s) for s in args.sizes.split(",")]
    inputs = _inputs(sizes)
    np.savez(work / "inputs.npz", **inputs)

    model = load_keras_weights(args.weights, "paper")
    cl = torch.channels_last
    last: dict[tuple[str, str], object] = {}
    with torch.inference_mode():
        # the plain network on large tiles once, for the agreement check only, before the
        # inference form holds its memory (the plain one needs several GB at 1024 x 1024)
        for key, x_np in inputs.items():
            if x_np.shape[-1] > args.eval_max_size:
                last[(key, "eval")] = model(torch.from_numpy(x_np))
    fast = prepare_for_inference(model, channels_last=True)
    ours = {
        "eval": lambda x: model(x),
        "fast": lambda x: fast(x.contiguous(memory_format=cl)),
        "fast_label": lambda x: fast.forward_label(x.contiguous(memory_format=cl)),
    }
    reference = _Reference(args, work / "inputs.npz", work / "reference_outputs.npz")
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    loads = {}
    with torch.inference_mode():
        for key, x_np in inputs.items():  # one size after the other, as a user would run
            x = torch.from_numpy(x_np)
            timed_eval = x_np.shape[-1] <= args.eval_max_size
            for round_ in range(args.repeat + 1):  # round 0 warms up (tracing, packing)
                loads.setdefault(key, []).append(os.getloadavg()[0])
                calls = []
                for side, name in SEQUENCE:  # one framework, then the other
                    if side == "reference":
                        calls.append((f"reference_{name}", lambda k=key, m=name: reference(k, m)))
                    elif name != "eval" or timed_eval:
                        calls.append((f"sxtquant_{name}", name))
                for variant, call in calls:
                    if isinstance(call, str):
                        out, wall, cpu = _timed(lambda c=call, x=x: ours[c](x))
                        last[(key, call)] = out
                    else:
                        wall, cpu = call()
                    print(
                        f"round {round_} {key} {variant}: {wall:.3f} s (CPU {cpu:.3f} s)",
                        flush=True,
                    )
                    if round_ > 0:
                        samples.setdefault((key, variant), []).append((wall, cpu))
    reference.close()
    with np.load(work / "reference_outputs.npz") as data:
        ref_out = {k: data[k] for k in data.files}

    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1min": {
            "start": load_start[0],
            "per_round": loads,  # per tile size
            "end": os.getloadavg()[0],
        },
        "threads": args.threads,
        "torch": torch.__version__,
        "tensorflow": reference.info["tf_version"],
        "weights": "paper architecture (m = 64), seeded random weights via Keras save_weights",
        "repeat": args.repeat,
        "command": "python evaluation/bench_convert.py " + " ".join(argv or sys.argv[1:]),
        "cases": {},
    }
    for key, x_np in inputs.items():
        entry: dict = {
            "tile": list(x_np.shape[-2:]),
            "variants": {},
            "speedup": {},
            "max_abs_diff": {},
        }
        for (k, variant), values in sorted(samples.items()):
            if k == key:
                entry["variants"][variant] = _summary(values)
        for name, ref_variant, our_variant in RATIOS:
            a, b = samples[(key, ref_variant)], samples[(key, our_variant)]
            entry["speedup"][name] = {
                "wall": float(np.median([ra[0] / rb[0] for ra, rb in zip(a, b, strict=True)])),
                "cpu": float(np.median([ra[1] / rb[1] for ra, rb in zip(a, b, strict=True)])),
            }
        image_eval, label_eval = last[(key, "eval")]
        image_fast, label_fast = last[(key, "fast")]
        diffs = {
            "fast_vs_reference_image": (image_fast, ref_out[f"{key}_image"]),
            "fast_vs_reference_label": (label_fast, ref_out[f"{key}_label"]),
            "eval_vs_reference_image": (image_eval, ref_out[f"{key}_image"]),
            "eval_vs_reference_label": (label_eval, ref_out[f"{key}_label"]),
            "fast_vs_eval_image": (image_fast, image_eval.numpy()),
            "fast_vs_eval_label": (label_fast, label_eval.numpy()),
            "fast_label_only_vs_reference_label_only": (
                last[(key, "fast_label")],
                ref_out[f"{key}_label_only"],
            ),
        }
        for name, (a, b) in diffs.items():
            a = a.float().numpy() if isinstance(a, torch.Tensor) else a
            entry["max_abs_diff"][name] = float(np.abs(a - b).max())
        entry["max_abs_image"] = float(np.abs(ref_out[f"{key}_image"]).max())
        results["cases"][key] = entry
        print(json.dumps({key: {k: entry[k] for k in ("speedup", "max_abs_diff")}}, indent=2))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
