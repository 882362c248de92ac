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
   paper's values beside ours (:func:`evaluation.report.write_report`);
5. **claims** -- every network (and the random forest) is trained with each seed of
   ``HarnessConfig.seeds``; :mod:`evaluation.claims` scores each of the paper's
   comparisons by its mean difference over seeds and a paired bootstrap interval.

Everything generated (simulations, trained models) is cached under ``OUT/work/``,
keyed by a hash of the settings that made it, so a rerun only recomputes what
changed. Every random choice is seeded.

Output files (in ``OUT``; every table has a ``data`` column, ``simulated`` or ``real``)

=============================  ==========================================================
``run.json``                    settings, provenance, hardware, timings, headline numbers
``per_slice_metrics.csv``       (a) per-slice accuracy/precision/recall/F1, every method and seed
``claims.csv``                  the paper's claims: difference, bootstrap 95 % interval, verdict
``holdout_metrics.csv``         (b) pooled test metrics of every method and seed (+ image accuracy)
``classes_per_slice.csv``       (c) expert-comparison classes per slice, every method and seed
``classes.json``                (c) mean and SD of the classes per method (all seeds' slices)
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

from evaluation.claims import score_claims
from evaluation.paper import PAPER
from evaluation.report import write_report
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
    "smoke_config",
    "write_report",
]

PRESETS = ("tiny", "small", "base", "paper")


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
        Seed of the data split (real data) and of the speed measurement's input.
    seeds : tuple of int
        Training seeds: the evaluated preset is trained semi-supervised and
        supervised-only, and the random forest fitted, once per seed; the claims are
        scored over them. The sweep (d) and speed (e) use the first seed's networks.
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
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {self.seeds!r}")
        for preset in (self.preset, *self.sweep_presets, *self.speed_presets):
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")

    def train_config(self, preset: str, *, supervised_only: bool, seed: int):
        """The :class:`sxtquant.train.TrainConfig` of one model of this run."""
        from sxtquant.train.config import TrainConfig

        values = {
            "device": self.device,
            "seed": seed,
            **self.train,
            "preset": preset,
            "supervised_only": supervised_only,
        }
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def quick_config(preset: str = "tiny", **overrides) -> HarnessConfig:
    """The claims run of ``make evaluate``: small tomograms, short trainings on small crops,
    three training seeds per method (about 15 min on 2 cores).

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
        "seeds": (0, 1, 2),
        **overrides,
    }
    return HarnessConfig(**values)


def smoke_config(**overrides) -> HarnessConfig:
    """The end-to-end check of ``make test``: every stage, table and figure, on tiny inputs.

    One 16-slice tomogram per split, a few training steps, two seeds (so the claims'
    seed handling runs), a small filopodia phantom and a small speed slice. Its numbers
    mean nothing; its outputs must all be there and consistent.
    """
    bench = Benchmark(
        shape=(16, 64, 64),
        n_labeled=1,
        n_unlabeled=1,
        n_test=1,
        sirt_iterations=5,
        filopodia_shape=(32, 160, 160),
        filopodia_cells=1,
        filopodia_per_cell=4,
    )
    train = {
        "epochs": 1,
        "steps_per_epoch": 3,
        "batch_size": 2,
        "crop": 32,
        "lr": 1e-3,
        "patience": 0,
        "validation_fraction": 0.1,
        "num_workers": 0,
    }
    values = {
        "preset": "tiny",
        "quick": True,
        "benchmark": bench,
        "train": train,
        "sweep_presets": ("tiny",),
        "speed_presets": ("tiny",),
        "speed_slices": 1,
        "speed_shape": (128, 128),
        "tile": 64,
        "overlap": 16,
        "forest": {"n_estimators": 4, "samples_per_class": 500, "max_depth": 6},
        "seeds": (0, 1),
        "threads": 1,
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
        "seeds": (0, 1, 2),
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
    seed: int,
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

    tc = config.train_config(preset, supervised_only=supervised_only, seed=seed)
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
        "seed": seed,
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
    seed: int,
    reconstruction: np.ndarray | None = None,
):
    """All metrics of one method on the concatenated test stack.

    Returns
    -------
    summary : dict
        :func:`sxtquant.evaluate.scoring.evaluate` of the whole stack (+ ``image_accuracy``).
    per_slice : DataFrame
        :func:`sxtquant.evaluate.metrics.per_slice_metrics` with ``method``, ``seed``,
        ``tomogram``, ``z``.
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
    per_slice.insert(0, "seed", seed)
    per_slice.insert(0, "method", method)
    per_slice.insert(0, "data", source)
    per_slice["image_accuracy"] = per_slice_image if per_slice_image is not None else math.nan
    classes = evaluate.expert_classes(probability, truth, artifacts)
    stack_z = classes["z"].to_numpy()
    classes = classes.drop(columns="z")
    classes.insert(0, "z", index["z"].to_numpy()[stack_z])
    classes.insert(0, "tomogram", index["tomogram"].to_numpy()[stack_z])
    classes.insert(0, "seed", seed)
    classes.insert(0, "method", method)
    classes.insert(0, "data", source)
    return summary, per_slice, classes


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

    # ---- networks: semi-supervised and supervised-only per seed, then every sweep preset
    first = config.seeds[0]
    summaries: dict[tuple[str, int], dict] = {}
    per_slice_tables, class_tables = [], []
    training: dict[str, dict] = {}
    checkpoints: dict[str, Path] = {}
    sweep: dict[str, dict] = {}
    for preset in dict.fromkeys((config.preset, *config.sweep_presets)):
        evaluated = preset == config.preset
        for seed in config.seeds if evaluated else (first,):
            for supervised_only in (False, True) if evaluated else (False,):
                method = "supervised-only" if supervised_only else "semi-supervised"
                best, facts = train_network(
                    dataset,
                    config,
                    preset,
                    supervised_only=supervised_only,
                    seed=seed,
                    work=work,
                    quiet=quiet,
                )
                model = load_model(best, device=_device(config))
                probability, reconstruction = network_outputs(
                    model, test_image, config, quiet=quiet
                )
                summary, per_slice, classes = score_method(
                    method,
                    probability,
                    dataset.test,
                    source,
                    seed=seed,
                    reconstruction=None if supervised_only else reconstruction,
                )
                summary.update(
                    preset=preset,
                    parameters=count_parameters(model),
                    train_seconds=facts["train_seconds"],
                    epochs_run=facts["epochs_run"],
                    best_epoch=facts["best_epoch"],
                )
                if not supervised_only and seed == first:
                    sweep[preset] = summary
                    checkpoints[preset] = best
                if evaluated:
                    summaries[method, seed] = summary
                    per_slice_tables.append(per_slice)
                    class_tables.append(classes)
                    training[f"{method}[seed {seed}]"] = facts
        t = lap(f"networks[{preset}]", t)

    # ---- classical baselines, trained on the same labelled slices (the forest per seed)
    train_data = dataset.training_data()
    baselines = {  # method: (seeds, a fresh baseline for a seed); Otsu's has no seed
        "random-forest": (config.seeds, lambda s: RandomForestBaseline(seed=s, **config.forest)),
        "otsu": ((first,), lambda s: OtsuBaseline()),
    }
    for method, (seeds, make) in baselines.items():
        for seed in seeds:
            baseline = make(seed)
            b0 = time.perf_counter()
            baseline.fit(list(train_data.images), list(train_data.labels))
            fit_seconds = time.perf_counter() - b0
            probability = baseline.predict_proba(test_image)
            summary, per_slice, classes = score_method(
                method, probability, dataset.test, source, seed=seed
            )
            summary["fit_seconds"] = fit_seconds
            summaries[method, seed] = summary
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
                "seed": seed,
                **{k: summary[k] for k in ("accuracy", "precision", "recall", "f1")},
                "image_accuracy": summary.get("image_accuracy", math.nan),
                "n_slices": summary["n_slices"],
                **summary["counts"],
            }
            for (method, seed), summary in summaries.items()
        ]
    )
    holdout["order"] = holdout["method"].map(METHODS.index)
    holdout = holdout.sort_values(["order", "seed"], kind="stable").drop(columns="order")
    claims = score_claims(per_slice, classes_per_slice)
    claims.insert(0, "data", source)
    t = lap("claims", t)

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
    io.write_table(claims, out / "claims.csv")
    io.write_json(
        {
            "data": source,
            "methods": _class_blocks(classes_per_slice),
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
        "summary": {
            f"{m}[seed {seed}]": {k: v for k, v in summary.items() if k != "classes"}
            for (m, seed), summary in summaries.items()
        },
        "claims": claims.drop(columns="data").to_dict("records"),
        "test_conditions": [t_.conditions for t_ in dataset.test],
        "paper": PAPER,
    }
    io.write_json(record, out / "run.json")
    write_report(out)
    return record


def _class_blocks(classes_per_slice: pd.DataFrame) -> dict:
    """Mean and SD (over every seed's slices) of each expert-comparison class, per method."""
    from sxtquant.evaluate.classes import summarize_classes

    blocks = {}
    for method in METHODS:
        mine = classes_per_slice[classes_per_slice["method"] == method]
        if mine.empty:
            continue
        summary = summarize_classes(mine)
        blocks[method] = {"mean": summary["mean"], "sd": summary["sd"], "n_slices": len(mine)}
    return blocks
