"""The evaluation harness: regenerate the reference paper's numbers, beside the paper's.

``python -m evaluation run`` (see :mod:`evaluation.__main__`) calls :func:`run`, which
builds the evaluation in thin layers over the package's own functions:

1. **data** -- :func:`simulated_dataset` (``sxtquant.simulate``: labelled tomograms at
   the standard acquisition, unlabelled ones over the training ranges, held-out test
   tomograms from conditions never trained on) or :func:`real_dataset` (a folder in
   the training layout of :func:`sxtquant.train.load_training_data`);
2. **methods** -- the two-headed network trained semi-supervised and supervised-only
   (:func:`sxtquant.train.train`, identical settings otherwise), the classical
   baselines (:mod:`sxtquant.evaluate.baselines`), all predicting membrane probabilities of
   the same test slices (:func:`sxtquant.nn.predict.predict_slices` for the networks);
3. **metrics** -- :mod:`sxtquant.evaluate.metrics` on arrays, per slice and pooled over the
   test set (threshold 0.9);
4. **outputs** -- tidy CSV/JSON tables in the output folder and ``report.md`` with the
   paper's values beside ours (:func:`write_report`).

Everything generated (simulations, trained models) is cached under ``OUT/work/``,
keyed by a hash of the settings that made it, so a rerun only recomputes what
changed. Every random choice is seeded.

Output files (in ``OUT``; every table has a ``data`` column, ``simulated`` or ``real``)

=============================  ==========================================================
``run.json``                    settings, provenance, hardware, timings, headline numbers
``per_slice_metrics.csv``       (a) per-slice accuracy/precision/recall/F1 of every method
``holdout_metrics.csv``         (b) pooled test metrics of every method (+ image accuracy)
``classes_per_slice.csv``       (c) expert-comparison classes per slice, every method
``classes.json``                (c) the ``classes`` blocks (mean, SD, per slice) per method
``model_sweep.csv``             (d) presets, parameters, FLOPs, metrics or why not run
``speed.csv``                   (e) measured throughput and the paper-volume extrapolation
``filopodia.csv``               (f) every simulated filopodium, measured vs analytic truth
``filopodia_summary.csv``       (f) population mean ± SD beside the paper's
``report.md``                   all of the above, readable
=============================  ==========================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sxtquant import io
from sxtquant.core.errors import InputError
from sxtquant.core.progress import progress

__all__ = [
    "PAPER",
    "PRESETS",
    "Benchmark",
    "Dataset",
    "HarnessConfig",
    "Tomogram",
    "full_config",
    "quick_config",
    "real_dataset",
    "run",
    "simulated_dataset",
    "write_report",
]

PRESETS = ("tiny", "small", "base", "paper")

#: The reference paper's numbers (Dyhr et al., PNAS 120(24) e2209938120, 2023).
PAPER = {
    "semi_vs_supervised_median_precision_gain_pct": 14.0,  # Fig. 2A, "at least 14 %"
    "holdout_accuracy": 0.97,
    "holdout_precision": 0.74,
    "holdout_image_accuracy": 0.80,  # "> 80 %"
    "classes_mean": {
        "true_positive": 69.8,
        "false_negative": 27.7,
        "false_positive": 1.3,
        "artifact": 1.2,
    },
    "classes_sd": {
        "true_positive": 10.4,
        "false_negative": 10.8,
        "false_positive": 2.2,
        "artifact": 2.1,
    },
    "speed_slices": 350,
    "speed_slice_shape": (1324, 1284),
    "speed_seconds": 300.0,  # "< 5 min"
    "speed_hardware": "NVIDIA RTX 3090",
    "sweep_parameters": (1_000_000, 76_483_502),  # Fig. S7A, 1 M to 76 M
}

NETWORK_METHODS = ("semi-supervised", "supervised-only")
BASELINE_METHODS = ("random-forest", "otsu")
METHODS = NETWORK_METHODS + BASELINE_METHODS


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Benchmark:
    """The simulated benchmark: how many tomograms of which size, under which conditions.

    Labelled tomograms use the standard acquisition (±65°, 25 nm blur), unlabelled ones
    draw their conditions from :data:`sxtquant.simulate.TRAINING_RANGES`, test
    tomograms from :data:`sxtquant.simulate.HELD_OUT_RANGES` (narrower tilt, wider
    blur, lower dose, more misalignment: never seen in training), see
    :func:`sxtquant.simulate.sample_conditions`.

    Attributes
    ----------
    shape : (Z, Y, X) ints
        Size of every training/test tomogram in voxels.
    voxel_size_nm : float
    n_labeled, n_unlabeled, n_test : int
        Tomograms of each split.
    sirt_iterations : int
        SIRT iterations of the reconstruction.
    filopodia_shape : (Z, Y, X) ints
        Size of the phantoms of the filopodia benchmark (f).
    filopodia_cells : int
        Phantoms (cells) of the filopodia benchmark.
    filopodia_per_cell : int
        Filopodia asked for per cell (fewer when they do not fit).
    seed : int
    """

    shape: tuple[int, int, int] = (32, 128, 128)
    voxel_size_nm: float = 9.8
    n_labeled: int = 2
    n_unlabeled: int = 3
    n_test: int = 2
    sirt_iterations: int = 30
    filopodia_shape: tuple[int, int, int] = (64, 320, 320)
    filopodia_cells: int = 2
    filopodia_per_cell: int = 12
    seed: int = 0


@dataclass(frozen=True)
class HarnessConfig:
    """Everything that decides a harness run.

    Attributes
    ----------
    preset : {"tiny", "small", "base", "paper"}
        The network evaluated in (a)-(c) and (e).
    quick : bool
        The CI run (small data, short training) or the full run.
    benchmark : Benchmark
    train : dict
        :class:`sxtquant.train.TrainConfig` fields (``preset`` and
        ``supervised_only`` are set per model).
    sweep_presets : tuple of str
        Presets trained in the model-size sweep (d); the others are listed with
        their size and "not run".
    speed_presets : tuple of str
        Presets whose inference throughput (e) is measured.
    speed_slices : int
        Slices of ``speed_shape`` timed per preset (at least one).
    speed_shape : (H, W) ints
        Slice size for the speed measurement.
    speed_paper_shape : (H, W) ints
        Slice size for the ``paper`` preset when it is in ``speed_presets`` (a CPU
        is slow on it: a smaller slice, extrapolated by pixel count).
    tile, overlap, batch_size : int
        Inference settings (:func:`sxtquant.nn.predict.predict_slices`).
    forest : dict
        :class:`sxtquant.evaluate.baselines.RandomForestBaseline` options.
    device : {"auto", "cpu", "cuda"}
    threads : int or None
        torch CPU threads (``None``: torch's default).
    seed : int
    """

    preset: str = "tiny"
    quick: bool = True
    benchmark: Benchmark = field(default_factory=Benchmark)
    train: dict = field(default_factory=dict)
    sweep_presets: tuple[str, ...] = ("tiny",)
    speed_presets: tuple[str, ...] = ("tiny", "paper")
    speed_slices: int = 1
    speed_shape: tuple[int, int] = (1324, 1284)
    speed_paper_shape: tuple[int, int] = (256, 256)
    tile: int = 256
    overlap: int = 32
    batch_size: int = 4
    forest: dict = field(default_factory=dict)
    device: str = "auto"
    threads: int | None = None
    seed: int = 0

    def __post_init__(self):
        for preset in (self.preset, *self.sweep_presets, *self.speed_presets):
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")

    def train_config(self, preset: str, *, supervised_only: bool):
        """The :class:`sxtquant.train.TrainConfig` of one model of this run."""
        from sxtquant.train.config import TrainConfig

        values = {
            "device": self.device,
            "seed": self.seed,
            **self.train,
            "preset": preset,
            "supervised_only": supervised_only,
        }
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def quick_config(preset: str = "tiny", **overrides) -> HarnessConfig:
    """The CI run: small tomograms, a short training on small crops (~10 min on 2 cores).

    The training budget goes into many steps on small crops (64 px, batch 8) at a
    learning rate of 1e-3, which trains the narrow ``tiny`` network in minutes.
    """
    train = {
        "epochs": 8,
        "steps_per_epoch": 60,
        "batch_size": 8,
        "crop": 64,
        "lr": 1e-3,
        "patience": 0,
        "validation_fraction": 0.1,
        "num_workers": 0,
        # batch-norm statistics that settle within a few hundred steps (the Keras
        # default, 0.01 in torch terms, needs thousands)
        "bn_momentum": 0.1,
        # membranes are ~5 % of the pixels: weighting them 3× (as the shipped model's
        # recipe does) keeps a short training from settling on "no membrane anywhere"
        "membrane_weight": 3.0,
    }
    forest = {"n_estimators": 40, "samples_per_class": 8000, "max_depth": 16}
    values = {
        "preset": preset,
        "quick": True,
        "benchmark": Benchmark(),
        "train": train,
        "sweep_presets": (preset,),
        "speed_presets": tuple(dict.fromkeys((preset, "paper"))),
        "speed_slices": 1,
        "forest": forest,
        **overrides,
    }
    return HarnessConfig(**values)


def full_config(preset: str = "paper", **overrides) -> HarnessConfig:
    """The full run (meant for a GPU): larger tomograms, the paper's training, every preset."""
    bench = Benchmark(
        shape=(64, 256, 256),
        n_labeled=3,
        n_unlabeled=12,
        n_test=3,
        filopodia_cells=4,
    )
    train = {
        "epochs": 40,
        "steps_per_epoch": 200,
        "batch_size": 8,
        "crop": 128,
        "lr": 1e-4,
        "patience": 10,
        "validation_fraction": 0.1,
    }
    forest = {"n_estimators": 100, "samples_per_class": 20000, "max_depth": 20}
    values = {
        "preset": preset,
        "quick": False,
        "benchmark": bench,
        "train": train,
        "sweep_presets": PRESETS,
        "speed_presets": tuple(dict.fromkeys((preset, "paper"))),
        "speed_slices": 5,
        "speed_paper_shape": (1324, 1284),
        "forest": forest,
        **overrides,
    }
    return HarnessConfig(**values)


def _key(obj) -> str:
    """A short stable hash of JSON-able settings (cache keys)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _code_key(*modules: str) -> str:
    """A hash of the source of ``sxtquant`` modules or packages (every file of a package):
    a cache made by other code is stale."""
    import importlib

    digest = hashlib.sha256()
    for name in modules:
        module = importlib.import_module(f"sxtquant.{name}")
        source = Path(module.__file__)
        files = sorted(source.parent.rglob("*.py")) if hasattr(module, "__path__") else [source]
        for file in files:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


# --------------------------------------------------------------------------- data


@dataclass
class Tomogram:
    """One volume of a data set, in memory.

    ``image`` (Z, Y, X) float32 raw intensities; ``membranes`` (Z, Y, X) bool truth (or
    None when unlabelled); ``artifacts`` (Z, Y, X) bool or None; ``objects`` (Z, Y, X)
    uint16 instance labels and ``table`` their analytic geometry (simulated only).
    """

    name: str
    image: np.ndarray
    membranes: np.ndarray | None = None
    artifacts: np.ndarray | None = None
    objects: np.ndarray | None = None
    table: pd.DataFrame | None = None
    conditions: dict = field(default_factory=dict)
    voxel_size_nm: float | None = None


@dataclass
class Dataset:
    """Training and test volumes; ``source`` is ``simulated`` or ``real``."""

    source: str
    labeled: list[Tomogram]
    unlabeled: list[Tomogram]
    test: list[Tomogram]
    description: str = ""

    def training_data(self):
        """The labelled and unlabelled slices as :class:`sxtquant.train.TrainingData`."""
        from sxtquant.train.data import TrainingData

        images = [s for t in self.labeled for s in t.image]
        labels = [s for t in self.labeled for s in t.membranes]
        unlabeled = [s for t in self.unlabeled for s in t.image]
        names = [f"{t.name}[{z}]" for t in self.labeled for z in range(len(t.image))]
        return TrainingData(
            images=tuple(np.asarray(s, np.float32) for s in images),
            labels=tuple(np.asarray(s) > 0 for s in labels),
            unlabeled=tuple(np.asarray(s, np.float32) for s in unlabeled),
            names=tuple(names),
        )

    def fingerprint(self) -> str:
        """A hash of the data's identity (names and conditions), for model caches."""
        return _key(
            [
                self.source,
                [
                    (t.name, t.conditions, len(t.image), np.shape(t.image[0]))
                    for t in self.labeled + self.unlabeled
                ],
            ]
        )


_SPLIT_CODES = {"labeled": 1, "unlabeled": 2, "test": 3}


def _simulate_one(bench: Benchmark, split: str, index: int, folder: Path) -> Tomogram:
    """Simulate (or read back from ``folder``) one tomogram of the benchmark."""
    from sxtquant import simulate

    name = f"{split}-{index}"
    done = folder / "conditions.json"
    if done.is_file():
        conditions = json.loads(done.read_text())
        return Tomogram(
            name=name,
            image=io.read_volume(folder / "tomogram.tif").data.astype(np.float32),
            membranes=io.read_volume(folder / "membranes.tif").data > 0,
            artifacts=io.read_volume(folder / "artifacts.tif").data > 0,
            objects=io.read_volume(folder / "objects.tif").data,
            table=pd.read_csv(folder / "objects.csv"),
            conditions=conditions,
            voxel_size_nm=bench.voxel_size_nm,
        )
    rng = np.random.default_rng([bench.seed, _SPLIT_CODES[split], index])
    acquisition, content = simulate.sample_conditions(rng, split)
    acquisition = dataclasses.replace(acquisition, sirt_iterations=bench.sirt_iterations)
    seed = int(rng.integers(2**31))
    sim = simulate.simulate_tomogram(
        bench.shape, bench.voxel_size_nm, seed=seed, content=content, acquisition=acquisition
    )
    conditions = {"split": split, "seed": seed, **simulate.conditions_dict(acquisition, content)}
    v = bench.voxel_size_nm
    folder.mkdir(parents=True, exist_ok=True)
    io.write_volume(folder / "tomogram.tif", sim.tomogram.astype(np.float32), v)
    io.write_mask(folder / "membranes.tif", sim.membranes, v)
    io.write_mask(folder / "artifacts.tif", sim.artifacts, v)
    io.write_volume(folder / "objects.tif", sim.objects, v)
    io.write_table(sim.table, folder / "objects.csv")
    io.write_json(conditions, done)  # last: marks the folder complete
    return Tomogram(
        name=name,
        image=sim.tomogram.astype(np.float32),
        membranes=np.asarray(sim.membranes, bool),
        artifacts=np.asarray(sim.artifacts, bool),
        objects=sim.objects,
        table=sim.table,
        conditions=conditions,
        voxel_size_nm=v,
    )


def simulated_dataset(bench: Benchmark, work: str | os.PathLike) -> Dataset:
    """The simulated benchmark, generated once and cached in ``work/sim/``.

    Parameters
    ----------
    bench : Benchmark
    work : path-like
        Cache folder.

    Returns
    -------
    Dataset
        ``source = "simulated"``.
    """
    root = Path(work) / "sim" / _key([dataclasses.asdict(bench), _code_key("simulate")])
    splits = {"labeled": bench.n_labeled, "unlabeled": bench.n_unlabeled, "test": bench.n_test}
    jobs = [(split, i) for split, n in splits.items() for i in range(n)]
    made: dict[str, list[Tomogram]] = {split: [] for split in splits}
    for split, i in progress(jobs, desc="simulating", unit="tomogram"):
        made[split].append(_simulate_one(bench, split, i, root / f"{split}-{i}"))
    z, y, x = bench.shape
    description = (
        f"simulated cryo-SXT tomograms of {z}x{y}x{x} voxels at {bench.voxel_size_nm:g} nm: "
        f"{bench.n_labeled} labelled (standard acquisition), {bench.n_unlabeled} unlabelled "
        f"(training condition ranges), {bench.n_test} held-out test tomograms (conditions "
        "outside the training ranges)"
    )
    return Dataset("simulated", made["labeled"], made["unlabeled"], made["test"], description)


def real_dataset(folder: str | os.PathLike, *, test_fraction: float = 0.2, seed: int = 0):
    """A real data set in the training layout, with a seeded hold-out of labelled slices.

    ``folder`` holds ``labeled/images``, ``labeled/labels`` and optionally
    ``unlabeled/images`` (:func:`sxtquant.train.load_training_data`). A seeded
    ``test_fraction`` of the labelled slices is held out as the test set (there is no
    artifact mask, so the ``artifact`` class is 0).

    Raises
    ------
    InputError
        If the folder is not in that layout, or its test slices differ in size.
    """
    from sxtquant.train.data import load_training_data, split_slices

    data = load_training_data(folder)
    train_idx, test_idx = split_slices(len(data.images), test_fraction, seed)
    shapes = {data.images[i].shape for i in test_idx}
    if len(shapes) != 1:
        raise InputError(folder, f"held-out test slices differ in size: {sorted(shapes)}")
    labeled = Tomogram(
        "labeled",
        image=np.stack([data.images[i] for i in train_idx])
        if len({data.images[i].shape for i in train_idx}) == 1
        else [data.images[i] for i in train_idx],
        membranes=[data.labels[i] for i in train_idx],
        conditions={"slices": [data.names[i] for i in train_idx]},
    )
    unlabeled = Tomogram("unlabeled", image=list(data.unlabeled))
    test = Tomogram(
        "test",
        image=np.stack([data.images[i] for i in test_idx]),
        membranes=np.stack([data.labels[i] for i in test_idx]),
        conditions={"slices": [data.names[i] for i in test_idx]},
    )
    description = (
        f"real data from {os.fspath(folder)}: {len(train_idx)} labelled training slices, "
        f"{len(data.unlabeled)} unlabelled slices, {len(test_idx)} held-out labelled slices"
    )
    return Dataset("real", [labeled], [unlabeled] if data.unlabeled else [], [test], description)


# --------------------------------------------------------------------------- methods


def train_network(
    dataset: Dataset,
    config: HarnessConfig,
    preset: str,
    *,
    supervised_only: bool,
    work: Path,
    quiet: bool = False,
) -> tuple[Path, dict]:
    """Train (or reuse from ``work/models/``) one network; returns its best checkpoint.

    Returns
    -------
    (Path, dict)
        The checkpoint folder (``best/``) and facts about the training (epochs,
        best epoch, validation loss, seconds; ``cached`` when reused).
    """
    from sxtquant.train.loop import train

    tc = config.train_config(preset, supervised_only=supervised_only)
    kind = "supervised" if supervised_only else "semi"
    key = _key([tc.to_dict(), dataset.fingerprint(), _code_key("train", "nn")])
    folder = work / "models" / f"{preset}-{kind}-{key}"
    facts_path = folder / "harness.json"
    if facts_path.is_file() and (folder / "best").is_dir():
        facts = json.loads(facts_path.read_text())
        return folder / "best", {**facts, "cached": True}
    started = time.perf_counter()
    result = train(dataset.training_data(), folder, tc, progress=not quiet)
    facts = {
        "preset": preset,
        "supervised_only": supervised_only,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "train_seconds": time.perf_counter() - started,
        "train_config": tc.to_dict(),
    }
    io.write_json(facts, facts_path)
    return result.best_dir, {**facts, "cached": False}


def _device(config: HarnessConfig):
    from sxtquant.core.device import resolve_device

    return resolve_device(config.device)


def network_outputs(model, volume: np.ndarray, config: HarnessConfig, *, quiet: bool = False):
    """Membrane probabilities (tiled, :func:`sxtquant.nn.predict.predict_slices`) and the image
    head's reconstruction of the standardised slices (whole slices, for image accuracy).

    Returns
    -------
    probability : (Z, Y, X) float32 in [0, 1]
    reconstruction : (Z, Y, X) float32
        In the standardised intensity space of :func:`sxtquant.nn.network.standardize_slices`.
    """
    import torch

    from sxtquant.nn.network import standardize_slices
    from sxtquant.nn.predict import predict_slices

    device = _device(config)
    probability = predict_slices(
        model,
        np.asarray(volume, np.float32),
        device=device,
        tile=config.tile,
        overlap=config.overlap,
        batch_size=config.batch_size,
        progress=not quiet,
    )
    z, h, w = volume.shape
    ph, pw = -h % 16, -w % 16
    standardized = standardize_slices(np.asarray(volume, np.float32))
    padded = np.pad(standardized, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    model = model.to(device).eval()
    out = np.empty_like(standardized)
    with torch.no_grad():
        for i in range(z):
            x = torch.from_numpy(padded[i][None, None].copy()).to(device)
            image, _ = model(x)
            out[i] = image[0, 0, :h, :w].float().cpu().numpy()
    return probability, out


def _stack(tomograms: Sequence[Tomogram], attr: str) -> np.ndarray | None:
    arrays = [getattr(t, attr) for t in tomograms]
    if any(a is None for a in arrays):
        return None
    return np.concatenate([np.asarray(a) for a in arrays])


def _slice_index(tomograms: Sequence[Tomogram]) -> pd.DataFrame:
    """Which tomogram and z every slice of the concatenated test stack comes from."""
    rows = [(t.name, z) for t in tomograms for z in range(len(t.image))]
    return pd.DataFrame(rows, columns=["tomogram", "z"])


# --------------------------------------------------------------------------- scoring


def score_method(
    method: str,
    probability: np.ndarray,
    test: Sequence[Tomogram],
    source: str,
    *,
    reconstruction: np.ndarray | None = None,
):
    """All metrics of one method on the concatenated test stack.

    Returns
    -------
    summary : dict
        :func:`sxtquant.evaluate.scoring.evaluate` of the whole stack (+ ``image_accuracy``).
    per_slice : DataFrame
        :func:`sxtquant.evaluate.metrics.per_slice_metrics` with ``method``, ``tomogram``, ``z``.
    classes : DataFrame
        :func:`sxtquant.evaluate.classes.expert_classes` per slice, same identifying columns.
    """
    from sxtquant import evaluate

    truth = _stack(test, "membranes")
    artifacts = _stack(test, "artifacts")
    index = _slice_index(test)
    summary = evaluate.evaluate(probability, truth, artifacts)
    if reconstruction is not None:
        image = np.concatenate([np.asarray(t.image, np.float32) for t in test])
        from sxtquant.nn.network import standardize_slices

        per_slice_image = evaluate.image_accuracy_per_slice(
            reconstruction, standardize_slices(image)
        )
        summary["image_accuracy"] = float(per_slice_image.mean())
    else:
        per_slice_image = None
    per_slice = evaluate.per_slice_metrics(probability, truth)
    per_slice = per_slice.drop(columns="z")
    per_slice.insert(0, "z", index["z"].to_numpy())
    per_slice.insert(0, "tomogram", index["tomogram"].to_numpy())
    per_slice.insert(0, "method", method)
    per_slice.insert(0, "data", source)
    per_slice["image_accuracy"] = per_slice_image if per_slice_image is not None else math.nan
    classes = evaluate.expert_classes(probability, truth, artifacts)
    stack_z = classes["z"].to_numpy()
    classes = classes.drop(columns="z")
    classes.insert(0, "z", index["z"].to_numpy()[stack_z])
    classes.insert(0, "tomogram", index["tomogram"].to_numpy()[stack_z])
    classes.insert(0, "method", method)
    classes.insert(0, "data", source)
    return summary, per_slice, classes


def _median_gain(per_slice: pd.DataFrame, column: str = "precision") -> dict:
    semi = per_slice.loc[per_slice["method"] == "semi-supervised", column].median()
    sup = per_slice.loc[per_slice["method"] == "supervised-only", column].median()
    return {
        "metric": column,
        "median_semi_supervised": float(semi),
        "median_supervised_only": float(sup),
        "gain_points": float(100 * (semi - sup)),
        "gain_relative_pct": float(100 * (semi - sup) / sup) if sup > 0 else math.nan,
    }


# --------------------------------------------------------------------------- (d) and (e)


def hardware() -> dict:
    """What the measurements ran on."""
    import torch

    info = {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["processor"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def hardware_label(config: HarnessConfig) -> str:
    info = hardware()
    device = _device(config)
    if device.type == "cuda":
        return f"GPU {info['cuda']}"
    return f"CPU {info['processor']} ({info['torch_threads']} torch threads)"


def measure_speed(config: HarnessConfig, models: dict[str, Path], *, quiet: bool = False):
    """Time :func:`sxtquant.nn.predict.predict_slices` per preset and extrapolate to the paper's
    volume (350 slices of 1324x1284) by pixel throughput.

    A trained checkpoint is used where ``models`` has one; otherwise the untrained
    preset (the speed does not depend on the weights).
    """
    import torch

    from sxtquant.nn.checkpoint import load_model
    from sxtquant.nn.network import build_model, count_parameters, flops_per_pixel
    from sxtquant.nn.predict import predict_slices

    device = _device(config)
    label = hardware_label(config)
    paper_pixels = PAPER["speed_slices"] * math.prod(PAPER["speed_slice_shape"])
    rows = []
    rng = np.random.default_rng(config.seed)
    for preset in config.speed_presets:
        shape = config.speed_paper_shape if preset == "paper" else config.speed_shape
        if preset in models:
            model, weights = load_model(models[preset], device=device), "trained"
        else:
            torch.manual_seed(config.seed)
            model, weights = build_model(preset).to(device).eval(), "untrained"
        slices = rng.normal(size=(config.speed_slices, *shape)).astype(np.float32)
        kwargs = {
            "device": device,
            "tile": config.tile,
            "overlap": config.overlap,
            "batch_size": config.batch_size,
            "progress": not quiet,
        }
        warm = {**kwargs, "tile": 64, "overlap": 16}
        predict_slices(model, slices[:1, :64, :64], **warm)  # warm-up (oneDNN kernels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        predict_slices(model, slices, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        pixels = slices.size
        rows.append(
            {
                "preset": preset,
                "parameters": count_parameters(model),
                "weights": weights,
                "flops_per_pixel": flops_per_pixel(preset),
                "slices_timed": config.speed_slices,
                "slice_height": shape[0],
                "slice_width": shape[1],
                "seconds": seconds,
                "seconds_per_slice": seconds / config.speed_slices,
                "megapixels_per_second": pixels / seconds / 1e6,
                "paper_volume_seconds": paper_pixels / (pixels / seconds),
                "paper_seconds": PAPER["speed_seconds"],
                "paper_hardware": PAPER["speed_hardware"],
                "hardware": label,
                "tile": config.tile,
                "overlap": config.overlap,
                "batch_size": config.batch_size,
            }
        )
    return pd.DataFrame(rows)


def model_sweep(config: HarnessConfig, results: dict[str, dict]) -> pd.DataFrame:
    """(d) One row per preset: size, cost, and the hold-out metrics where it was trained."""
    from sxtquant.nn.network import build_model, count_parameters, flops_per_pixel

    rows = []
    base_flops = flops_per_pixel(config.preset)
    for preset in PRESETS:
        row = {
            "preset": preset,
            "parameters": count_parameters(build_model(preset)),
            "flops_per_pixel": flops_per_pixel(preset),
        }
        if preset in results:
            summary = results[preset]
            row.update(
                status="run",
                reason="",
                accuracy=summary["accuracy"],
                precision=summary["precision"],
                recall=summary["recall"],
                f1=summary["f1"],
                image_accuracy=summary.get("image_accuracy", math.nan),
                train_seconds=summary.get("train_seconds", math.nan),
            )
        else:
            factor = row["flops_per_pixel"] / base_flops
            run_kind = "quick" if config.quick else "this"
            row.update(
                status="not run",
                reason=(
                    f"not in the {run_kind} run's sweep ({', '.join(config.sweep_presets)}): "
                    f"training costs about {factor:.0f}x the {config.preset} preset per step; "
                    "run the full harness (on a GPU) for it"
                ),
                accuracy=math.nan,
                precision=math.nan,
                recall=math.nan,
                f1=math.nan,
                image_accuracy=math.nan,
                train_seconds=math.nan,
            )
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- (f)


def filopodia_benchmark(bench: Benchmark, work: Path, *, quiet: bool = False):
    """(f) The Fig. 3B measurements of simulated filopodia against their analytic truth.

    Phantoms (:func:`sxtquant.simulate.make_phantom`) with many filopodia; every
    filopodium's ground-truth voxels (its label in the phantom, i.e. the part outside
    the cell body) go through :func:`sxtquant.quantify.filopodia.analyze`, and each measured
    row is paired with the analytic geometry of the simulator's table.

    Returns
    -------
    per_filopodium : DataFrame
        One row per simulated filopodium: ``cell``, ``label``, ``detected`` (kept by
        :func:`~sxtquant.quantify.filopodia.analyze`), the analytic ``true_*`` values and the
        measured columns.
    summary : DataFrame
        :func:`sxtquant.quantify.filopodia.summarize` of the detected ones (paper values beside).
    """
    from sxtquant import quantify, simulate

    code = _code_key("simulate", "quantify")
    root = work / "filopodia" / _key([dataclasses.asdict(bench), code])
    cached = root / "filopodia.csv"
    if cached.is_file():
        per = pd.read_csv(cached)
        return per, quantify.summarize(per[per["detected"]])
    v = bench.voxel_size_nm
    rows = []
    for cell in progress(range(bench.filopodia_cells), desc="filopodia cells", unit="cell"):
        content = simulate.CellContent(
            filopodia=bench.filopodia_per_cell, organelle_density=0.3, fiducials=0
        )
        phantom = simulate.make_phantom(
            bench.filopodia_shape,
            v,
            seed=np.random.default_rng([bench.seed, 6, cell]),
            content=content,
        )
        table = phantom.table
        truth = table[table["class"] == "filopodium"]
        labels = np.where(np.isin(phantom.objects, truth["label"].to_numpy()), phantom.objects, 0)
        measured, _ = quantify.analyze(labels.astype(np.uint16), v, kind="labels")
        measured = measured.set_index("label")
        for _, t in truth.iterrows():
            label = int(t["label"])
            row = {
                "cell": cell,
                "label": label,
                "detected": label in measured.index,
                "true_length_nm": float(t["length_nm"]),
                "true_centreline_length_nm": float(t["centreline_length_nm"]),
                "true_radius_nm": float(t["radius_nm"]),
                "true_diameter_nm": 2 * float(t["radius_nm"]),
                "true_volume_nm3": float(t["volume_nm3"]),
                "true_surface_area_nm2": float(t["surface_area_nm2"]),
                "true_surface_to_volume_per_um": 1000
                * float(t["surface_area_nm2"])
                / float(t["volume_nm3"]),
                "true_curvature_per_um": float(t.get("curvature_per_um", math.nan)),
            }
            if label in measured.index:
                m = measured.loc[label]
                row.update({c: m[c] for c in measured.columns})
            rows.append(row)
    per = pd.DataFrame(rows)
    io.write_table(per, cached)
    return per, quantify.summarize(per[per["detected"]])


FILOPODIA_PAIRS = (
    # (quantity, measured column, truth column)
    ("length (base to tip)", "length_nm", "true_length_nm"),
    ("radius", "radius_nm", "true_radius_nm"),
    ("volume", "volume_nm3", "true_volume_nm3"),
    ("surface area", "surface_area_nm2", "true_surface_area_nm2"),
    ("surface-to-volume ratio", "surface_to_volume_per_um", "true_surface_to_volume_per_um"),
)


def filopodia_errors(per: pd.DataFrame) -> pd.DataFrame:
    """Relative error (measured / truth - 1) of every paired quantity: mean, SD, max |.|."""
    found = per[per["detected"].astype(bool)]
    rows = []
    for name, measured, truth in FILOPODIA_PAIRS:
        if measured not in found or not len(found):
            rel = np.empty(0)
        else:
            rel = (found[measured].to_numpy(float) / found[truth].to_numpy(float)) - 1
        rows.append(
            {
                "quantity": name,
                "n": len(rel),
                "mean_error_pct": 100 * float(np.mean(rel)) if len(rel) else math.nan,
                "sd_error_pct": 100 * float(np.std(rel, ddof=1)) if len(rel) > 1 else math.nan,
                "max_abs_error_pct": 100 * float(np.max(np.abs(rel))) if len(rel) else math.nan,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the run


def run(
    config: HarnessConfig,
    out: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
    quiet: bool = False,
) -> dict:
    """Run the whole evaluation and write its outputs to ``out`` (see the module docs).

    Parameters
    ----------
    config : HarnessConfig
    out : path-like
        Output folder; ``out/work/`` caches simulations and trained models.
    data : path-like, optional
        A real data set in the training layout (:func:`real_dataset`); without it the
        simulated benchmark is used and every output is labelled ``simulated``.
    cache : path-like, optional
        Cache folder for simulations and trained models (default ``out/work``); runs
        that share it share whatever they have in common.
    quiet : bool
        No progress bars.

    Returns
    -------
    dict
        The content of ``run.json``.
    """
    from sxtquant.core import progress as _progress

    was_quiet = _progress.is_quiet()
    _progress.set_quiet(was_quiet or quiet)
    try:
        return _run(config, out, data=data, cache=cache, quiet=quiet)
    finally:
        _progress.set_quiet(was_quiet)


def _run(config: HarnessConfig, out, *, data, cache, quiet: bool) -> dict:
    import torch

    from sxtquant import __version__
    from sxtquant.evaluate.baselines import OtsuBaseline, RandomForestBaseline
    from sxtquant.nn.checkpoint import load_model
    from sxtquant.nn.network import count_parameters

    if config.threads:
        torch.set_num_threads(int(config.threads))
    out = Path(out)
    # created by the first cache write, after the input is checked
    work = Path(cache) if cache is not None else out / "work"
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = now - since
        return now

    t = time.perf_counter()
    dataset = (
        real_dataset(data, seed=config.seed)
        if data is not None
        else simulated_dataset(config.benchmark, work)
    )
    source = dataset.source
    test_image = _stack(dataset.test, "image")
    t = lap("data", t)

    # ---- networks: semi-supervised and supervised-only, then every sweep preset
    summaries: dict[str, dict] = {}
    per_slice_tables, class_tables = [], []
    training: dict[str, dict] = {}
    checkpoints: dict[str, Path] = {}
    sweep: dict[str, dict] = {}
    for preset in dict.fromkeys((config.preset, *config.sweep_presets)):
        kinds = (False, True) if preset == config.preset else (False,)
        for supervised_only in kinds:
            method = "supervised-only" if supervised_only else "semi-supervised"
            best, facts = train_network(
                dataset, config, preset, supervised_only=supervised_only, work=work, quiet=quiet
            )
            model = load_model(best, device=_device(config))
            probability, reconstruction = network_outputs(model, test_image, config, quiet=quiet)
            summary, per_slice, classes = score_method(
                method,
                probability,
                dataset.test,
                source,
                reconstruction=None if supervised_only else reconstruction,
            )
            summary.update(
                preset=preset,
                parameters=count_parameters(model),
                train_seconds=facts["train_seconds"],
                epochs_run=facts["epochs_run"],
                best_epoch=facts["best_epoch"],
            )
            if not supervised_only:
                sweep[preset] = summary
                checkpoints[preset] = best
            if preset == config.preset:
                summaries[method] = summary
                per_slice_tables.append(per_slice)
                class_tables.append(classes)
                training[method] = facts
        t = lap(f"networks[{preset}]", t)

    # ---- classical baselines, trained on the same labelled slices
    train_data = dataset.training_data()
    forest = RandomForestBaseline(seed=config.seed, **config.forest)
    baselines = {
        "random-forest": forest,
        "otsu": OtsuBaseline(),
    }
    for method, baseline in baselines.items():
        b0 = time.perf_counter()
        baseline.fit(list(train_data.images), list(train_data.labels))
        fit_seconds = time.perf_counter() - b0
        probability = baseline.predict_proba(test_image)
        summary, per_slice, classes = score_method(method, probability, dataset.test, source)
        summary["fit_seconds"] = fit_seconds
        summaries[method] = summary
        per_slice_tables.append(per_slice)
        class_tables.append(classes)
    t = lap("baselines", t)

    per_slice = pd.concat(per_slice_tables, ignore_index=True)
    classes_per_slice = pd.concat(class_tables, ignore_index=True)
    holdout = pd.DataFrame(
        [
            {
                "data": source,
                "method": method,
                **{k: summaries[method][k] for k in ("accuracy", "precision", "recall", "f1")},
                "image_accuracy": summaries[method].get("image_accuracy", math.nan),
                "n_slices": summaries[method]["n_slices"],
                **summaries[method]["counts"],
            }
            for method in METHODS
        ]
    )

    # ---- (d) sweep, (e) speed
    sweep_table = model_sweep(config, sweep)
    sweep_table.insert(0, "data", source)
    t = lap("sweep", t)
    speed = measure_speed(config, checkpoints, quiet=quiet)
    t = lap("speed", t)

    # ---- (f) filopodia (always simulated: it needs analytic truth)
    filo, filo_summary = filopodia_benchmark(config.benchmark, work, quiet=quiet)
    filo.insert(0, "data", "simulated")
    filo_summary.insert(0, "data", "simulated")
    filo_err = filopodia_errors(filo)
    t = lap("filopodia", t)

    # ---- outputs
    out.mkdir(parents=True, exist_ok=True)
    io.write_table(per_slice, out / "per_slice_metrics.csv")
    io.write_table(holdout, out / "holdout_metrics.csv")
    io.write_table(classes_per_slice, out / "classes_per_slice.csv")
    io.write_json(
        {
            "data": source,
            "methods": {m: summaries[m]["classes"] for m in METHODS},
            "paper": {"mean": PAPER["classes_mean"], "sd": PAPER["classes_sd"]},
        },
        out / "classes.json",
    )
    io.write_table(sweep_table, out / "model_sweep.csv")
    io.write_table(speed, out / "speed.csv")
    io.write_table(filo, out / "filopodia.csv")
    io.write_table(filo_summary, out / "filopodia_summary.csv")
    io.write_table(filo_err, out / "filopodia_errors.csv")
    timings["total"] = time.perf_counter() - started
    record = {
        "data": source,
        "description": dataset.description,
        "sxtquant": __version__,
        "config": config.to_dict(),
        "hardware": hardware(),
        "timings_seconds": timings,
        "training": training,
        "summary": {m: {k: v for k, v in summaries[m].items() if k != "classes"} for m in METHODS},
        "semi_vs_supervised": {
            "precision": _median_gain(per_slice, "precision"),
            "f1": _median_gain(per_slice, "f1"),
        },
        "test_conditions": [t_.conditions for t_ in dataset.test],
        "paper": PAPER,
    }
    io.write_json(record, out / "run.json")
    write_report(out)
    return record


# --------------------------------------------------------------------------- report


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    value = float(value)
    if not math.isfinite(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{digits + 1}g}"


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (no extra dependency)."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join(" --- " for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(_fmt(v, digits) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _pct(value) -> str:
    return "–" if value is None or not math.isfinite(float(value)) else f"{100 * value:.1f} %"


def _signed(value, unit: str) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    return f"{float(value):+.1f}{unit}"


def _pm(mean, sd) -> str:
    if mean is None or not math.isfinite(float(mean)):
        return "–"
    sd_text = f"{sd:.1f}" if sd is not None and math.isfinite(float(sd)) else "–"
    return f"{mean:.1f} ± {sd_text}"


def write_report(out: str | os.PathLike) -> Path:
    """Write ``report.md`` from the tables of a finished run in ``out``."""
    out = Path(out)
    record = json.loads((out / "run.json").read_text())
    source = record["data"]
    label = f" ({source})"
    holdout = pd.read_csv(out / "holdout_metrics.csv")
    classes = json.loads((out / "classes.json").read_text())
    sweep = pd.read_csv(out / "model_sweep.csv")
    speed = pd.read_csv(out / "speed.csv")
    filo_summary = pd.read_csv(out / "filopodia_summary.csv")
    filo_err = pd.read_csv(out / "filopodia_errors.csv")
    filo = pd.read_csv(out / "filopodia.csv")
    config = record["config"]
    hw = record["hardware"]
    gain = record["semi_vs_supervised"]["precision"]
    gain_f1 = record["semi_vs_supervised"]["f1"]
    lines = [
        f"# sxtquant evaluation report — data: **{source}**",
        "",
        f"Generated by `python -m evaluation run` ({'quick' if config['quick'] else 'full'} "
        f"run, preset `{config['preset']}`) in {record['timings_seconds']['total']:.0f} s on "
        f"{hw['processor']} ({hw['cpu_count']} CPUs, {hw['torch_threads']} torch threads"
        f"{', GPU ' + hw['cuda'] if hw.get('cuda') else ''}).",
        "",
        f"Data{label}: {record['description']}.",
        "Paper: Dyhr et al., PNAS 120(24) e2209938120 (2023). Pixel metrics use the paper's "
        "threshold: positive where probability > 0.9.",
        "",
    ]
    if source == "simulated":
        lines += [
            "> Every number below comes from **simulated** tomograms (sxtquant.simulate), not "
            "from the paper's data: it shows the pipeline works and how the methods rank, "
            "not that the paper's numbers are reproduced.",
            "",
        ]
    # (a)
    lines += [
        f"## (a) Semi-supervised vs supervised-only training{label} (Fig. 2A)",
        "",
        "Same labelled slices, same settings; the semi-supervised network also trains its "
        "image decoder on unlabelled slices. Per-slice metrics on the held-out test slices "
        "(`per_slice_metrics.csv`, box plots: `paper_figures/fig2a.py`).",
        "",
        "| | semi-supervised | supervised-only | difference | paper |",
        "| --- | --- | --- | --- | --- |",
        f"| median per-slice precision | {_pct(gain['median_semi_supervised'])} | "
        f"{_pct(gain['median_supervised_only'])} | {_signed(gain['gain_points'], ' points')} "
        f"({_signed(gain['gain_relative_pct'], ' % relative')}) | ≥ 14 % higher with "
        "semi-supervision |",
        f"| median per-slice F1 | {_pct(gain_f1['median_semi_supervised'])} | "
        f"{_pct(gain_f1['median_supervised_only'])} | "
        f"{_signed(gain_f1['gain_points'], ' points')} | – |",
        "",
        "Per-slice precision is undefined (NaN, left out of the median) on a slice where "
        "the method marks no pixel; a median over no defined slice is shown as –.",
        "",
    ]
    # (b)
    first = holdout.iloc[0]
    prevalence = (first["tp"] + first["fn"]) / (
        first["tp"] + first["fn"] + first["fp"] + first["tn"]
    )
    table = holdout[["method", "accuracy", "precision", "recall", "f1", "image_accuracy"]].copy()
    for c in ("accuracy", "precision", "recall", "f1", "image_accuracy"):
        table[c] = [_pct(v) for v in table[c]]
    paper_row = pd.DataFrame(
        [["paper (network, real hold-out)", "97 %", "74 %", "–", "–", "> 80 %"]],
        columns=table.columns,
    )
    table = pd.concat([table, paper_row], ignore_index=True)
    lines += [
        f"## (b) Hold-out test metrics{label}",
        "",
        "Pooled over all test slices"
        + (
            ", whose acquisition conditions (tilt range, blur, dose, misalignment) lie "
            "outside the training ranges: "
            + "; ".join(_conditions_text(c) for c in record["test_conditions"])
            if source == "simulated"
            else ""
        )
        + ". Classical baselines trained on the same labelled slices.",
        "",
        markdown_table(table),
        "",
        f"Membrane pixels are {_pct(prevalence)} of the test slices: a prediction that "
        f"ignores the image scores precision ≈ {_pct(prevalence)}, and marking every pixel "
        f"scores F1 = {_pct(2 * prevalence / (1 + prevalence))}.",
        "",
    ]
    # (c)
    keys = ("true_positive", "false_negative", "false_positive", "artifact")
    rows = []
    for method, block in classes["methods"].items():
        rows.append([method, *(_pm(block["mean"][k], block["sd"][k]) for k in keys)])
    rows.append(
        ["paper (expert comparison)"]
        + [_pm(PAPER["classes_mean"][k], PAPER["classes_sd"][k]) for k in keys]
    )
    lines += [
        f"## (c) Expert-comparison classes on the hold-out tomograms{label} (Fig. 2D/E)",
        "",
        "Percent of each slice's labelled pixels (TP + FP + artifact + FN), mean ± SD over "
        "slices"
        + (
            "; the artifact class uses the simulator's artifact mask (gold-fiducial streaks)"
            if source == "simulated"
            else "; no artifact mask for this data (artifact class 0)"
        )
        + ".",
        "",
        markdown_table(pd.DataFrame(rows, columns=["method", *keys])),
        "",
    ]
    # (d)
    sw = sweep[
        [
            "preset",
            "parameters",
            "flops_per_pixel",
            "status",
            "precision",
            "f1",
            "image_accuracy",
            "train_seconds",
            "reason",
        ]
    ].copy()
    for c in ("precision", "f1", "image_accuracy"):
        sw[c] = [_pct(v) for v in sw[c]]
    lines += [
        f"## (d) Model-size sweep{label} (Fig. S7A)",
        "",
        "Paper: networks from 1 M to 76 M parameters; 76,483,502 is the published network "
        "(`paper` preset). Metrics on the hold-out test slices (semi-supervised training).",
        "",
        markdown_table(sw),
        "",
    ]
    # (e)
    sp = speed[
        [
            "preset",
            "parameters",
            "weights",
            "slice_height",
            "slice_width",
            "slices_timed",
            "seconds_per_slice",
            "megapixels_per_second",
            "paper_volume_seconds",
            "hardware",
        ]
    ].copy()
    lines += [
        "## (e) Segmentation speed",
        "",
        "Measured with `sxtquant.nn.predict.predict_slices` (tile "
        f"{config['tile']}, overlap {config['overlap']}, batch {config['batch_size']}) on "
        "the hardware named in the table; `paper_volume_seconds` extrapolates the measured "
        "pixel throughput to the paper's volume (350 slices of 1324×1284). Paper: < 300 s on "
        "an NVIDIA RTX 3090 — a different machine, so compare with care.",
        "",
        markdown_table(sp),
        "",
    ]
    # (f)
    fs = filo_summary[
        ["quantity", "unit", "mean", "sd", "n", "paper_mean", "paper_sd", "paper_n"]
    ].copy()
    n_total, n_found = len(filo), int(filo["detected"].astype(bool).sum())
    lines += [
        "## (f) Filopodia morphology (Fig. 3B) on simulated filopodia (simulated)",
        "",
        f"{n_total} simulated filopodia ({config['benchmark']['filopodia_cells']} phantom "
        f"cells); {n_found} found and measured by `sxtquant.quantify.filopodia.analyze` from their "
        "ground-truth voxels. Measured against the simulator's analytic geometry "
        "(`filopodia.csv` has every filopodium, measured beside true):",
        "",
        markdown_table(filo_err),
        "",
        "Population values beside the paper's (n = 59 real filopodia; the simulated ones "
        "are drawn with radius 40–90 nm and length 0.3–2 µm, so agreement of the means is "
        "by construction, not a result):",
        "",
        markdown_table(fs),
        "",
        "## Timings",
        "",
        markdown_table(
            pd.DataFrame(
                [(k, v) for k, v in record["timings_seconds"].items()],
                columns=["stage", "seconds"],
            )
        ),
        "",
    ]
    return io.write_text("\n".join(lines), out / "report.md")


def _conditions_text(conditions: dict) -> str:
    acq = conditions.get("acquisition", {})
    if not acq:
        return "–"
    return (
        f"±{acq['tilt_max_deg']:g}°, blur {acq['blur_fwhm_nm']:.0f} nm, dose "
        f"{acq['dose']:.0f}, jitter {acq['jitter_px']:.2f} px"
    )
