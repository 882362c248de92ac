"""Run the evaluation harness: the reference paper's metrics beside ours.

Usage::

    python -m evaluation run [--data DIR | --simulated] [--preset tiny|small|base|paper]
                             [--out evaluation/results] [--quick] [--device auto|cpu|cuda]
                             [--seeds 0,1,2]
    python -m evaluation report [--out evaluation/results]

``run`` writes JSON/CSV tables and ``report.md`` into ``--out`` (see
:mod:`evaluation.harness`); generated data and trained models are cached in
``OUT/work/``, so a second run is fast. Without ``--data`` it looks for the paper's
data set (``sxtquant fetch refubium-37222``) in the training layout and otherwise
uses the simulated benchmark (every output then says "simulated").
``report`` rebuilds ``report.md`` from the tables of a finished run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="run the evaluation and write the report")
    source = run.add_mutually_exclusive_group()
    source.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="real data in the training layout (labeled/images, labeled/labels, "
        "unlabeled/images); a seeded 20 %% of the labelled slices is held out for testing",
    )
    source.add_argument(
        "--simulated",
        action="store_true",
        help="use the simulated benchmark even if the paper's data is present",
    )
    run.add_argument(
        "--preset",
        choices=("tiny", "small", "base", "paper"),
        default=None,
        help="network width evaluated (default: tiny with --quick, paper otherwise)",
    )
    run.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)"
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="the CI run: small simulated tomograms and a short training (~10 min on 2 cores)",
    )
    run.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device"
    )
    run.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    run.add_argument(
        "--sweep",
        type=_presets,
        metavar="PRESETS",
        default=None,
        help="comma-separated presets trained for the model-size sweep (d) (default: the "
        "evaluated preset with --quick, all four otherwise)",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the real data's hold-out split and of the speed measurement's input "
        "(the simulated benchmark has its own seed; training seeds: --seeds)",
    )
    run.add_argument(
        "--seeds",
        type=_seeds,
        metavar="SEEDS",
        default=None,
        help="comma-separated training seeds of each network and of the random forest; the "
        "claims are scored over them (default: 0,1,2)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    report = verbs.add_parser("report", help="rebuild report.md from a finished run")
    report.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)"
    )
    return parser


def _presets(text: str) -> tuple[str, ...]:
    """``--sweep``: comma-separated preset names, each once, in the order given."""
    from evaluation.harness import PRESETS

    presets = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [p for p in presets if p not in PRESETS]
    if unknown or not presets:
        raise argparse.ArgumentTypeError(
            f"{text!r}: name one or more of {', '.join(PRESETS)}, separated by commas"
        )
    return presets


def _seeds(text: str) -> tuple[int, ...]:
    """``--seeds``: comma-separated distinct non-negative integers."""
    try:
        seeds = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        seeds = ()
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give one or more distinct non-negative integers, separated by commas"
        )
    return seeds


def _real_data_folder() -> Path | None:
    """The paper's data set where the harness can use it directly (training layout)."""
    from sxtquant.io.fetch import locate

    folder = locate("refubium-37222")
    if folder is not None and (folder / "labeled" / "images").is_dir():
        return folder
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from evaluation import harness
    from sxtquant.core.errors import InputError
    from sxtquant.core.progress import set_quiet

    if args.verb == "report":
        path = harness.write_report(args.out)
        print(path)
        return 0
    set_quiet(args.quiet)
    preset = args.preset or ("tiny" if args.quick else "paper")
    make = harness.quick_config if args.quick else harness.full_config
    data = args.data
    if data is None and not args.simulated:
        data = _real_data_folder()
    overrides = {} if args.sweep is None else {"sweep_presets": args.sweep}
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    try:
        config = make(preset, device=args.device, threads=args.threads, seed=args.seed, **overrides)
        started = time.perf_counter()
        record = harness.run(config, args.out, data=data, quiet=args.quiet)
    except (InputError, ValueError) as exc:
        print(f"python -m evaluation: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    print(f"data: {record['data']}; wall time {seconds:.0f} s")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
