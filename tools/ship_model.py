"""Ship a trained checkpoint as one of the package's models, with its model card.

Used by ``make model`` after ``sxtquant train``: evaluates the checkpoint on the held-out
test tomograms of the training set folder (``test/images`` + ``test/labels``, 2D slices
``<tomo>_z<NNNN>.tif`` or one 3D stack ``<tomo>.tif`` per tomogram, see ``dataset.json``'s
``layout``), also by depth band, and, for a region-aware network with ``test/regions``,
its cell and organelle interiors; scores the other methods given (the supervised-only
ablation, ``--compare`` checkpoints, the classical baselines) on the same tomograms;
measures what each held-out condition alone costs on new simulated cells and the CPU
throughput on full-size 1324 x 1284 slices; copies the checkpoint into ``--out``
(``sxtquant/models/default/``; the folder's name is the model's name) and writes
``MODEL_CARD.md``, ``test_metrics.json`` and the per-slice counts ``test_counts.csv.gz``
beside the weights.

Every held-out figure comes with a 95 % interval of a two-level bootstrap over the test
tomograms and their slices (:mod:`sxtquant.evaluate.intervals`), and every other method
with its paired difference to the shipped model. ``--card-only`` recomputes the
intervals and re-renders the card from the files of a shipped model folder.

Usage::

    python tools/ship_model.py --run RUN_DIR --data DATA_DIR [--out sxtquant/models/default]
        [--ablation RUN_DIR] [--compare NAME=CHECKPOINT ...] [--random-forest] [--otsu]
    python tools/ship_model.py --card-only [--out sxtquant/models/default]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import io as text_io
import itertools
import json
import math
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sxtquant import evaluate, io
from sxtquant.core.progress import set_quiet
from sxtquant.evaluate import intervals
from sxtquant.nn.checkpoint import SHIPPED_MODELS, load_model
from sxtquant.nn.network import count_parameters, flops_per_pixel
from sxtquant.nn.predict import predict_slices
from sxtquant.simulate.conditions import HELD_OUT_RANGES
from sxtquant.simulate.tomography import Acquisition
from sxtquant.train.start import training_options

SCORES = ("accuracy", "precision", "recall", "f1", "f1_tolerance_2vx")
HEADER = ["accuracy", "precision", "recall", "F1", "F1 (2-voxel tolerance)"]  # of SCORES
PAIRED = ("precision", "f1", "f1_tolerance_2vx")  # the paired differences of the card
REGION_SCORES = ("cell_dice", "organelle_dice", "organelle_f1")
TOLERANCE_VX = 2.0
COUNTS = (*intervals.PIXEL_COUNTS, *(f"tolerance_{c}" for c in intervals.TOLERANCE_COUNTS))
COUNTS_FILE = "test_counts.csv.gz"
DEPTH_BANDS = 4  # the depth breakdown of the model card: quarters of each test tomogram
SENSITIVITY_SEEDS = (901, 902)  # cells of the condition-sensitivity table, not in any split
SHIPPED = "this model"
DESCRIPTIONS = {
    "supervised-only": "the same recipe trained on the labelled data alone "
    "(`--supervised-only`, the paper's ablation)",
    "random-forest": "ilastik-style random forest on filter features, fitted on the same "
    "labelled slices",
    "otsu": "global Otsu threshold, its polarity fitted on the same labelled slices",
}


# --------------------------------------------------------------------------- test set


@dataclasses.dataclass(frozen=True)
class Tomogram:
    """One held-out test tomogram: (Z, Y, X) raw images, membrane truth, regions or None,
    and the z of every slice in the simulated volume."""

    images: np.ndarray
    labels: np.ndarray
    regions: np.ndarray | None
    z: tuple[int, ...]


def _layout(data_dir: Path, first: Path) -> str:
    dataset = data_dir / "dataset.json"
    if dataset.is_file() and "layout" in (meta := json.loads(dataset.read_text())):
        return meta["layout"]
    return "stacks" if io.read_volume(first).data.shape[0] > 1 else "slices"


def load_test_tomograms(data_dir: Path) -> dict[str, Tomogram]:
    """The held-out test tomograms of a training set folder, by name, in either layout."""
    folder = data_dir / "test"
    paths = sorted((folder / "images").glob("*.tif"))
    if not paths:
        raise FileNotFoundError(f"no test images in {folder / 'images'}")
    stacks = _layout(data_dir, paths[0]) == "stacks"
    groups: dict[str, list[Path]] = {}
    for path in paths:
        name = path.stem if stacks else re.sub(r"_z\d+$", "", path.stem)
        groups.setdefault(name, []).append(path)

    def read(kind: str, files: list[Path]) -> np.ndarray:
        return np.concatenate([io.read_volume(folder / kind / p.name).data for p in files])

    tomograms = {}
    for name, files in groups.items():
        images = read("images", files).astype(np.float32)
        has_regions = all((folder / "regions" / p.name).is_file() for p in files)
        z = (
            range(len(images))
            if stacks
            else [int(m.group(1)) if (m := re.search(r"_z(\d+)$", p.stem)) else 0 for p in files]
        )
        tomograms[name] = Tomogram(
            images,
            read("labels", files) > 0,
            read("regions", files).astype(np.uint8) if has_regions else None,
            tuple(z),
        )
    return tomograms


# --------------------------------------------------------------------------- scoring


def slice_counts(probability: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(Z, 8) per-slice counts: TP, FP, FN, TN at the paper's threshold (0.9), then the
    2-voxel tolerance counts (:data:`COUNTS`)."""
    pixel = evaluate.slice_counts(probability, truth)
    tolerant = [
        evaluate.tolerance_metrics(probability[z], truth[z], TOLERANCE_VX)
        for z in range(len(truth))
    ]
    return np.column_stack(
        [
            pixel[:, 0],
            pixel[:, 1] + pixel[:, 2],
            pixel[:, 3],
            pixel[:, 4],
            *([t[k] for t in tolerant] for k in intervals.TOLERANCE_COUNTS),
        ]
    ).astype(np.int64)


def scores_of_counts(counts) -> dict[str, np.ndarray]:
    """:data:`SCORES` from summed :data:`COUNTS` (..., 8): the scorer of the intervals."""
    counts = np.asarray(counts)
    tolerant = intervals.tolerance_scores(counts[..., 4:])["f1"]
    return {**intervals.pixel_scores(counts[..., :4]), "f1_tolerance_2vx": tolerant}


def _dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    total = np.count_nonzero(predicted) + np.count_nonzero(truth)
    return 2 * np.count_nonzero(predicted & truth) / total if total else math.nan


def matched_instances(truth: np.ndarray, predicted: np.ndarray, *, iou: float = 0.5) -> int:
    """Pairs of truth and predicted labels matched one to one at IoU >= ``iou`` (the
    pairs taken in decreasing IoU; at ``iou`` > 0.5 every pair is unique anyway)."""
    both = (truth > 0) & (predicted > 0)
    if not both.any():
        return 0
    width = int(predicted.max()) + 1
    keys, overlap = np.unique(
        truth[both].astype(np.int64) * width + predicted[both], return_counts=True
    )
    t, p = keys // width, keys % width
    union = np.bincount(truth.ravel())[t] + np.bincount(predicted.ravel())[p] - overlap
    ratio = overlap / union
    used_t, used_p = set(), set()
    for i in np.argsort(-ratio, kind="stable"):
        if ratio[i] < iou:
            break
        if t[i] not in used_t and p[i] not in used_p:
            used_t.add(t[i])
            used_p.add(p[i])
    return len(used_t)


def region_scores(probs: dict, regions: np.ndarray, voxel_size_nm: float) -> dict:
    """Cell- and organelle-interior Dice (probability > 0.5 against regions >= 1 and
    == 2) and the organelle instance F1 at IoU 0.5 of one tomogram.

    The organelles are those the pipeline finds (:func:`organelles_from_probability`
    inside the cell of :func:`cell_mask_from_probability`, as
    :func:`~sxtquant.quantify.regions.objects_from_regions`), against the connected
    components of the truth's organelle interior with the same minimum volume.
    """
    from sxtquant.quantify import regions as quantify
    from sxtquant.quantify.objects import connected_components, remove_small

    row = {}
    if "cell" in probs:
        row["cell_dice"] = _dice(probs["cell"] > quantify.REGION_THRESHOLD, regions >= 1)
    if "organelles" in probs:
        organelles = probs["organelles"]
        row["organelle_dice"] = _dice(organelles > quantify.REGION_THRESHOLD, regions == 2)
        cell = None
        if "cell" in probs:
            cell = quantify.cell_mask_from_probability(np.maximum(probs["cell"], organelles))
        found = quantify.organelles_from_probability(
            organelles, voxel_size_nm=voxel_size_nm, cell_mask=cell
        )
        floor = math.ceil(quantify.DEFAULT_ORGANELLE_MIN_VOLUME_NM3 / voxel_size_nm**3)
        truth = remove_small(connected_components(regions == 2), floor)
        n_true, n_found = len(np.unique(truth)) - 1, len(np.unique(found)) - 1
        matched = matched_instances(truth, found)
        row["organelle_f1"] = 2 * matched / (n_true + n_found) if n_true + n_found else math.nan
        row |= {"organelles_true": n_true, "organelles_found": n_found, "matched": matched}
    return row


def network_predictor(model):
    """raw (n, h, w) slices -> {head: probabilities}: every head of a region-aware
    network (``predict_heads``), else the membrane."""
    from sxtquant.nn import predict

    if "cell" in getattr(model.config, "heads", ()) and hasattr(predict, "predict_heads"):
        return lambda images: predict.predict_heads(model, images, device="cpu", progress=False)
    return lambda images: {"membrane": predict_slices(model, images, device="cpu", progress=False)}


def _membrane_of(baseline):
    return lambda images: {"membrane": baseline.predict_proba(images)}


def evaluate_method(name: str, predict, tomograms: dict, voxel_size_nm: float):
    """Per-slice counts (a table: method, tomogram, z, :data:`COUNTS`) and per-tomogram
    region scores (a list, empty without regions) of one method on the test tomograms."""
    tables, region_rows = [], []
    for tomo, data in tomograms.items():
        probs = predict(data.images)
        counts = slice_counts(probs["membrane"], data.labels)
        table = pd.DataFrame(counts, columns=COUNTS)
        table.insert(0, "z", data.z)
        table.insert(0, "tomogram", tomo)
        table.insert(0, "method", name)
        tables.append(table)
        if data.regions is not None and len(probs) > 1:
            scores = region_scores(probs, data.regions, voxel_size_nm)
            region_rows.append({"tomogram": tomo, **scores})
    return pd.concat(tables, ignore_index=True), region_rows


# --------------------------------------------------------------------------- summaries


def _value(x) -> float:
    return math.nan if x is None else float(x)


def summarize_counts(table: pd.DataFrame, options: dict) -> dict:
    """Per-tomogram rows, their mean, the pooled scores and their intervals."""
    values = table[list(COUNTS)].to_numpy()
    rows = []
    for tomo, part in table.groupby("tomogram", sort=False):
        scores = scores_of_counts(part[list(COUNTS)].to_numpy().sum(axis=0))
        rows.append(
            {"tomogram": tomo, "slices": len(part), **{k: float(scores[k]) for k in SCORES}}
        )
    found = intervals.count_intervals(
        values, table["tomogram"].to_numpy(), scorer=scores_of_counts, **options
    )
    return {
        "per_tomogram": rows,
        "mean": {k: float(np.nanmean([r[k] for r in rows])) for k in SCORES},
        "pooled": {k: found[k]["value"] for k in SCORES},
        "intervals": found,
    }


def summarize_regions(rows: list[dict], options: dict) -> dict:
    keys = [k for k in REGION_SCORES if rows and k in rows[0]]
    found = {k: intervals.tomogram_interval([_value(r[k]) for r in rows], **options) for k in keys}
    return {"per_tomogram": rows, "intervals": found}


def paired_regions(shipped: list[dict], other: list[dict], options: dict) -> dict:
    mine = {r["tomogram"]: r for r in shipped}
    common = [r for r in other if r["tomogram"] in mine]
    keys = [k for k in REGION_SCORES if common and k in common[0] and k in shipped[0]]
    return {
        k: intervals.paired_tomogram_interval(
            [_value(mine[r["tomogram"]][k]) for r in common],
            [_value(r[k]) for r in common],
            **options,
        )
        for k in keys
    }


def by_depth(table: pd.DataFrame) -> list[dict]:
    """Scores by depth: the slices pooled over tomograms in :data:`DEPTH_BANDS` bands of
    each tomogram's stack, first slice to last (the cell's caps lie in the outer bands)."""
    sums = np.zeros((DEPTH_BANDS, len(COUNTS)), dtype=np.int64)
    spans: list[set] = [set() for _ in range(DEPTH_BANDS)]
    lengths = sorted({str(n) for n in table.groupby("tomogram", sort=False).size()})
    for _, part in table.groupby("tomogram", sort=False):
        counts = part[list(COUNTS)].to_numpy()
        edges = np.linspace(0, len(counts), DEPTH_BANDS + 1).round().astype(int)
        for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
            sums[i] += counts[lo:hi].sum(axis=0)
            spans[i].add(f"{lo}–{hi - 1}")
    rows = []
    for i, total in enumerate(sums):
        scores = scores_of_counts(total)
        rows.append(
            {
                "band": f"{i + 1} of {DEPTH_BANDS}",
                "tomogram_slices": ", ".join(lengths),
                "slices": ", ".join(sorted(spans[i])),
                "membrane_fraction": float((total[0] + total[2]) / total[:4].sum()),
                **{k: float(scores[k]) for k in SCORES[1:]},
            }
        )
    return rows


def _set_regions(entry: dict, rows: list[dict], options: dict) -> bool:
    """``entry["regions"]``: the region summary of ``rows``, or none without them."""
    if rows:
        entry["regions"] = summarize_regions(rows, options)
    else:
        entry.pop("regions", None)
    return bool(rows)


def recompute(results: dict, table: pd.DataFrame | None) -> dict:
    """The summaries and intervals of ``results`` from the per-slice counts (``table``),
    or, without them, over the stored per-tomogram scores alone."""
    boot = {"samples": intervals.SAMPLES, "seed": 0} | results.get("bootstrap", {})
    results["bootstrap"] = boot
    options = {"samples": boot["samples"], "seed": boot["seed"]}
    shipped_regions = results.get("regions", {}).get("per_tomogram", [])
    _set_regions(results, shipped_regions, options)
    if table is None:  # per-tomogram scores only: the tomograms are resampled
        rows = results["per_tomogram"]
        results["intervals"] = {
            k: intervals.tomogram_interval([_value(r[k]) for r in rows], **options) for k in SCORES
        }
        return results
    shipped = table[table["method"] == SHIPPED]
    results |= summarize_counts(shipped, options)
    results["by_depth"] = by_depth(shipped)
    for name, entry in results.get("compared", {}).items():
        other = table[table["method"] == name]
        key = ["tomogram", "z"]
        if not other[key].reset_index(drop=True).equals(shipped[key].reset_index(drop=True)):
            raise ValueError(f"{name} was not scored on the same slices as the shipped model")
        entry |= summarize_counts(other, options)
        paired = intervals.paired_count_intervals(
            shipped[list(COUNTS)].to_numpy(),
            other[list(COUNTS)].to_numpy(),
            shipped["tomogram"].to_numpy(),
            scorer=scores_of_counts,
            **options,
        )
        entry["paired"] = {k: paired[k] for k in PAIRED}
        rows = entry.get("regions", {}).get("per_tomogram", [])
        if _set_regions(entry, rows, options):
            entry["paired_regions"] = paired_regions(shipped_regions, rows, options)
    return results


# --------------------------------------------------------------------------- costs


def _held_out_middle() -> dict:
    """Each held-out acquisition condition at the middle of its range (dose: geometric)."""
    middle = {k: (lo + hi) / 2 for k, (lo, hi) in HELD_OUT_RANGES.items()}
    middle["dose"] = float(np.sqrt(np.prod(HELD_OUT_RANGES["dose"])))
    middle["tilt_max_deg"] = float(round(middle["tilt_max_deg"]))
    return {k: middle[k] for k in ("tilt_max_deg", "blur_fwhm_nm", "dose", "jitter_px")}


def condition_sensitivity(model, shape=(64, 256, 256), seeds=SENSITIVITY_SEEDS) -> list[dict]:
    """What each held-out acquisition condition alone costs the model.

    New simulated cells (seeds outside the training set) are imaged at the standard
    conditions, with one condition moved to the middle of its held-out range, and with
    all of them moved; pixel and 2-voxel tolerance metrics are averaged over the cells.
    This separates what the model loses on unseen cells from what it loses to each
    unseen condition.
    """
    from sxtquant.simulate.cell import CellContent
    from sxtquant.simulate.tomogram import simulate_tomogram

    middle = _held_out_middle()
    variants = {"standard": {}}
    names = {
        "tilt_max_deg": "tilt ±{:.0f}°",
        "blur_fwhm_nm": "zone-plate blur {:.0f} nm",
        "dose": "dose {:.0f} photons/px",
        "jitter_px": "jitter {:.2f} px",
    }
    variants.update({names[k].format(v): {k: v} for k, v in middle.items()})
    variants["all four held-out"] = middle
    predict = network_predictor(model)
    rows = []
    for name, changes in variants.items():
        scores = []
        for seed in seeds:
            acquisition = dataclasses.replace(Acquisition(), **changes)
            sim = simulate_tomogram(
                shape, seed=seed, content=CellContent(), acquisition=acquisition
            )
            counts = slice_counts(predict(sim.tomogram)["membrane"], sim.membranes).sum(axis=0)
            scores.append(scores_of_counts(counts))
        rows.append(
            {"conditions": name} | {k: float(np.mean([s[k] for s in scores])) for k in SCORES[1:]}
        )
    return rows


def cpu_throughput(model, *, slices: int = 2, repeats: int = 3, shape=(1324, 1284)) -> float:
    """Megapixels per second of :func:`predict_slices` on full-size slices (best of repeats,
    so that other work on a shared machine does not count against the model)."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(slices, *shape)).astype(np.float32)
    predict_slices(model, images[:1], device="cpu", progress=False)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict_slices(model, images, device="cpu", progress=False)
        seconds.append(time.perf_counter() - start)
    return images.size / min(seconds) / 1e6


# --------------------------------------------------------------------------- card inputs

_FORMATS = {
    "tilt_max_deg": "{:.0f}",
    "blur_fwhm_nm": "{:.0f}",
    "dose": "{:.0f}",
    "jitter_px": "{:.2f}",
}


def _conditions_text(ranges: dict) -> str:
    """'tilt ±58–60°, zone-plate blur 38–42 nm, ...' from (lo, hi) per condition."""

    def span(key):
        lo, hi = (_FORMATS[key].format(v) for v in ranges[key])
        return lo if lo == hi else f"{lo}–{hi}"

    return (
        f"tilt ±{span('tilt_max_deg')}°, zone-plate blur {span('blur_fwhm_nm')} nm, "
        f"dose {span('dose')} photons/px, jitter {span('jitter_px')} px"
    )


def _standard_text() -> str:
    standard = Acquisition()
    return _conditions_text({k: (getattr(standard, k),) * 2 for k in _FORMATS})


def dataset_summary(data_dir: Path) -> dict:
    """What the card says of the training set, from its ``dataset.json``: the number of
    tomograms of each split and the range of their acquisition conditions."""
    path = data_dir / "dataset.json"
    dataset = json.loads(path.read_text()) if path.is_file() else {}
    tomograms = dataset.get("tomograms", [])
    splits = dict(sorted(Counter(t.get("split", "?") for t in tomograms).items()))
    ranges = {}
    for split in splits:
        acquisitions = [t["acquisition"] for t in tomograms if t.get("split") == split]
        if acquisitions and all(k in acquisitions[0] for k in _FORMATS):
            ranges[split] = {
                k: (min(a[k] for a in acquisitions), max(a[k] for a in acquisitions))
                for k in _FORMATS
            }
    cut = sum(bool(t.get("field_of_view")) for t in tomograms)
    lines = [
        f"`sxtquant simulate --dataset` (seed {dataset.get('seed')}, voxel size "
        f"{dataset.get('voxel_size_nm')} nm, {dataset.get('layout', 'slices')} layout): "
        + ", ".join(f"{n} {k} tomograms" for k, n in splits.items())
        + (f"; {cut} of them cells cut by the field of view." if cut else ".")
    ]
    words = {"labeled": "Labelled", "unlabeled": "Unlabelled", "test": "Held-out test"}
    parts = [f"{words.get(k, k)}: {_conditions_text(r)}" for k, r in ranges.items() if k != "test"]
    if "test" in ranges:
        test, seen = ranges["test"], [r for k, r in ranges.items() if k != "test"]
        novel = all(
            all(test[k][1] < r[k][0] or test[k][0] > r[k][1] for r in seen) for k in _FORMATS
        )
        parts.append(
            f"{words['test']}: {_conditions_text(test)} — "
            + (
                "conditions NOT seen in training"
                if novel
                else "within the training ranges: new cells, not new conditions"
            )
        )
    lines.append(". ".join(parts) + ".")
    return {
        "seed": dataset.get("seed"),
        "voxel_size_nm": dataset.get("voxel_size_nm"),
        "layout": dataset.get("layout", "slices"),
        "tomograms": splits,
        "description": lines,
    }


def model_summary(model, checkpoint: Path, epochs_before: int = 0) -> tuple[dict, dict]:
    """(model facts, training options) of a checkpoint folder for the card;
    ``epochs_before``: the epochs of the model its run started from (``--init``), counted
    in the checkpoint's epoch."""
    path = checkpoint / "metadata.json"
    metadata = json.loads(path.read_text()) if path.is_file() else {}
    # the epochs this checkpoint trained for: epoch N of a longer run is what `--epochs N`
    # gives (the crops are drawn by position); the options are those of the last phase
    # when the run was resumed with another --lr (see --schedule)
    train_config = {**metadata.get("train_config", {}), "epochs": metadata.get("epoch")}
    facts = {
        "preset": train_config.get("preset", "?"),
        "width": model.config.width,
        "parameters": count_parameters(model),
        "kflop_per_pixel": flops_per_pixel(model.config) / 1e3,
        "epoch": None if metadata.get("epoch") is None else metadata["epoch"] + epochs_before,
        "val_f1": metadata.get("val_f1"),
        "in_slices": getattr(model.config, "in_slices", 1),
        "heads": list(getattr(model.config, "heads", ("membrane",))),
    }
    return facts, train_config


def _legacy_inputs(results: dict, folder: Path) -> dict:
    """What a test_metrics.json of before the intervals lacks for the card: the model's
    facts from its folder, the training set, schedule and threads from its old card."""
    if "model" not in results:
        results["model"], results["train_config"] = model_summary(load_model(folder), folder)
    if "dataset" in results:
        return results
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    section = card.split("## Training data\n", 1)[1].split("\n\n", 1)[0]
    schedule = re.search(r"^Schedule: (.+)\. The options of the last phase:", card, re.M)
    threads = re.search(r"slices \((\d+) threads\)", card)
    results["dataset"] = {"description": section.splitlines(), "source": "the model's old card"}
    results["schedule"] = schedule.group(1) if schedule else None
    results["cpu_threads"] = int(threads.group(1)) if threads else None
    for name, entry in results.get("compared", {}).items():
        if "mean" not in entry:  # only the means over tomograms were kept
            results["compared"][name] = {"description": DESCRIPTIONS.get(name, name), "mean": entry}
    return results


# --------------------------------------------------------------------------- card


def _number(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _with_interval(row: dict | None, value=None, signed: bool = False) -> str:
    """'0.419 [0.401, 0.437]' of an interval entry (or the bare value without one)."""
    if row is None:
        return _number(value)
    text = (
        "n/a"
        if row["value"] is None
        else (f"{row['value']:+.3f}" if signed else _number(row["value"]))
    )
    if row.get("low") is None:
        return text
    return f"{text} [{_number(row['low'])}, {_number(row['high'])}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _interval_text(results: dict) -> str:
    first = next(iter(results["intervals"].values()))
    boot = results["bootstrap"]
    if first["statistic"] == "pooled" and first["levels"] == ["slices"]:
        return (
            "In brackets, 95 % intervals: the 2.5 and 97.5 percentiles of "
            f"{boot['samples']:,} draws of the slices of the one test tomogram with "
            "replacement, every draw recomputing the pooled score from the summed per-slice "
            f"counts (seed {boot['seed']}; `sxtquant.evaluate.intervals`). With a single "
            "tomogram they leave out how much the score varies between cells."
        )
    if first["statistic"] == "pooled":
        slices = sorted({r["slices"] for r in results["per_tomogram"]})
        return (
            "In brackets, 95 % intervals: the 2.5 and 97.5 percentiles of "
            f"{boot['samples']:,} draws of a two-level bootstrap over the test set, the "
            f"{first['n_tomograms']} tomograms drawn with replacement, then the slices of "
            f"each drawn tomogram ({', '.join(map(str, slices))}) with replacement, every "
            "draw recomputing the pooled score from the summed per-slice counts (seed "
            f"{boot['seed']}; `sxtquant.evaluate.intervals`). They say how much the score "
            "depends on which cells were simulated, not what another training run would give."
        )
    return (
        "In brackets, 95 % intervals of the mean over the test tomograms: the 2.5 and 97.5 "
        f"percentiles of {boot['samples']:,} draws of the {first['n_tomograms']} tomograms "
        f"with replacement (seed {boot['seed']}). The run that shipped this model kept each "
        "tomogram's scores but not its per-slice counts, so this is a tomogram-level "
        "bootstrap only: the slices within a tomogram are not resampled, and with "
        f"{first['n_tomograms']} tomograms the interval is little more than their range."
    )


def _comparison(results: dict) -> list[str]:
    compared = results.get("compared", {})
    pooled = "pooled" in results
    lines = [
        "",
        "## Beside other methods",
        "On the same test tomograms ("
        + ("scores pooled over their slices" if pooled else "means over tomograms")
        + "):",
        "",
        *[f"- {name}: {entry['description']}" for name, entry in compared.items()],
        "",
    ]
    rows = [[SHIPPED] + [_with_interval(results["intervals"][k]) for k in SCORES]]
    for name, entry in compared.items():
        values = entry.get("pooled", entry["mean"])
        rows.append(
            [name] + [_with_interval(entry.get("intervals", {}).get(k), values[k]) for k in SCORES]
        )
    lines += _table(["method", *HEADER], rows)
    paired = {name: entry for name, entry in compared.items() if "paired" in entry}
    if paired:
        lines += [
            "",
            f"Paired differences, {SHIPPED} minus each method, over the same bootstrap draws "
            "of tomograms and slices for both (of tomograms for the region scores); a "
            "difference whose interval excludes 0 is marked *:",
            "",
        ]
        header = ["method", *(HEADER[SCORES.index(k)] for k in PAIRED)]
        region_keys = [
            k
            for k in REGION_SCORES
            if any(k in e.get("paired_regions", {}) for e in paired.values())
        ]
        header += [_REGION_NAMES[k] for k in region_keys]
        rows = []
        for name, entry in paired.items():
            cells = [entry["paired"][k] for k in PAIRED]
            cells += [entry.get("paired_regions", {}).get(k) for k in region_keys]
            rows.append(
                [f"{SHIPPED} − {name}"]
                + [
                    "n/a"
                    if c is None
                    else _with_interval(c, signed=True) + (" *" if c["excludes_zero"] else "")
                    for c in cells
                ]
            )
        lines += _table(header, rows)
    if any("intervals" not in entry for entry in compared.values()):
        missing = ", ".join(name for name, entry in compared.items() if "intervals" not in entry)
        lines += [
            "",
            f"The per-tomogram figures of {missing} are not in this card: the run that "
            "shipped this model kept only their means, so they have no interval and no "
            "paired difference here. They need the methods' runs: `tools/ship_model.py` "
            "with `--ablation RUN` (and `--random-forest`, `--otsu`) on the test "
            "tomograms gives both.",
        ]
    return lines


_REGION_NAMES = {
    "cell_dice": "cell-interior Dice",
    "organelle_dice": "organelle-interior Dice",
    "organelle_f1": "organelle instance F1 (IoU ≥ 0.5)",
}


def _regions(results: dict) -> list[str]:
    regions = results.get("regions")
    if not regions:
        return []
    keys = list(regions["intervals"])
    lines = [
        "",
        "## Cell and organelle interiors",
        "The region heads at probability > 0.5 against the simulation's regions: the cell "
        "interior (cytoplasm, organelles included) and the organelle interior, by Dice; "
        "the organelles found by the pipeline (`organelles_from_probability` inside the "
        "cell mask) matched one to one with the truth's organelles (connected components of "
        "the organelle interior, the same minimum volume) at IoU ≥ 0.5, by instance F1. "
        "Means over tomograms; in brackets the 95 % interval of a bootstrap over the "
        "tomograms (these scores exist per tomogram only).",
        "",
    ]
    rows = [
        [r["tomogram"]] + [_number(_value(r.get(k))) for k in keys] for r in regions["per_tomogram"]
    ]
    if "organelle_f1" in keys:
        for row, r in zip(rows, regions["per_tomogram"], strict=True):
            row.append(f"{r['matched']} of {r['organelles_true']} / {r['organelles_found']}")
    rows.append(
        ["**mean**"]
        + [_with_interval(regions["intervals"][k]) for k in keys]
        + [""] * ("organelle_f1" in keys)
    )
    header = ["tomogram"] + [_REGION_NAMES[k] for k in keys]
    header += ["organelles matched of true / found"] if "organelle_f1" in keys else []
    lines += _table(header, rows)
    others = {n: e for n, e in results.get("compared", {}).items() if "regions" in e}
    if others:
        lines += ["", "The other region-aware methods (means over tomograms):", ""]
        rows = [[SHIPPED] + [_with_interval(regions["intervals"][k]) for k in keys]]
        rows += [
            [name] + [_with_interval(e["regions"]["intervals"].get(k)) for k in keys]
            for name, e in others.items()
        ]
        lines += _table(["method"] + [_REGION_NAMES[k] for k in keys], rows)
    return lines


def _headline(results: dict) -> str:
    found = results["intervals"]
    first = next(iter(found.values()))
    slices = sum(r.get("slices", 0) for r in results["per_tomogram"])
    n = first["n_tomograms"]
    where = f"{n} held-out test tomogram{'s' * (n != 1)}" + (f", {slices} slices" if slices else "")
    text = (
        f"On {where}: F1 {_with_interval(found['f1'])}, precision "
        f"{_with_interval(found['precision'])}, recall {_with_interval(found['recall'])}, "
        f"F1 within 2 voxels {_with_interval(found['f1_tolerance_2vx'])}"
    )
    regions = results.get("regions", {}).get("intervals", {})
    text += "".join(f", {_REGION_NAMES[k]} {_with_interval(v)}" for k, v in regions.items())
    statistic = "pooled" if first["statistic"] == "pooled" else "means over tomograms"
    if regions and first["statistic"] == "pooled":
        statistic = "membranes pooled over the slices, regions means over tomograms"
    return text + f" ({statistic}; 95 % intervals, see below)."


def _protocol(model: dict, train_config: dict) -> str:
    """Which training protocol made the model (its facts and options), in words."""
    if train_config.get("supervised_only"):
        return "supervised only, on the labelled slices"
    if model.get("in_slices", 1) > 1 or model.get("heads", ["membrane"]) != ["membrane"]:
        return (
            "semi-supervised: the label and reconstruction losses of Dyhr et al. PNAS 2023, "
            "here with region heads and a Dice term, on many fully labelled tomograms rather "
            "than the paper's few"
        )
    return "semi-supervised, Dyhr et al. PNAS 2023 protocol"


def _fine_tune_options(results: dict) -> str:
    """The `sxtquant train` options that fine-tune this model."""
    model = results["model"]
    regions = any(h != "membrane" for h in model.get("heads", ["membrane"]))
    options = training_options(model["preset"], model.get("in_slices", 1), regions)
    return options + f" --init {results.get('name', 'default')}"


def model_card(results: dict) -> str:
    """The model card, from ``test_metrics.json``'s contents alone."""
    model, train_config = results["model"], results["train_config"]
    schedule = results.get("schedule")
    regions = [h for h in model.get("heads", ["membrane"]) if h != "membrane"]
    name = results.get("name", "default")
    lines = [
        f"# sxtquant {name} model",
        "",
        f"Preset `{model['preset']}` (m = {model['width']}), {model['parameters']:,} parameters, "
        f"{model['kflop_per_pixel']:.0f} kFLOP per pixel."
        + (
            f" Input: {model['in_slices']} neighbouring slices; heads: {', '.join(model['heads'])}."
            if model.get("in_slices", 1) > 1 or regions
            else ""
        ),
        f"Trained with `sxtquant train` ({_protocol(model, train_config)}) on simulated cryo-SXT "
        f"tomograms; reproduce with `{results.get('recipe', 'make model')}`. Checkpoint of "
        f"epoch {model['epoch']} (validation F1 {_value(model['val_f1']):.3f}).",
        "",
        _headline(results),
        "",
        "## Training data",
        *results["dataset"]["description"],
        "",
        "## Training recipe",
        *([f"Schedule: {schedule}. The options of the last phase:", ""] if schedule else []),
        "```json",
        json.dumps(train_config, indent=2),
        "```",
        "",
        "## Metrics on the held-out simulated test tomograms",
        "Pixel metrics at the paper's threshold (probability > 0.9); tolerance F1 counts a "
        "pixel as correct within 2 voxels (in-plane). " + _interval_text(results),
        "",
    ]
    rows = [
        [r["tomogram"]] + [_number(_value(r[k])) for k in SCORES] for r in results["per_tomogram"]
    ]
    summary = "**all tomograms, pooled**" if "pooled" in results else "**mean**"
    rows.append([summary] + [_with_interval(results["intervals"][k]) for k in SCORES])
    lines += _table(["tomogram", *HEADER], rows)
    if results.get("by_depth"):
        depth = results["by_depth"]
        lines += [
            "",
            "By depth (slices pooled over the test tomograms): the outer bands hold the top "
            "and bottom of the cell, where membranes run nearly parallel to the slice. Their "
            "Fourier components lie in the missing wedge of the tilt series, so they are "
            "barely visible in the reconstruction and few are found; in the real cells of the "
            "paper (350 slices) such caps are a smaller share of the volume than in these "
            f"test tomograms ({depth[-1]['tomogram_slices']} slices).",
            "",
        ]
        rows = [
            [r["band"], r["slices"], f"{100 * r['membrane_fraction']:.1f} %"]
            + [_number(_value(r[k])) for k in SCORES[1:]]
            for r in depth
        ]
        lines += _table(["depth band", "slices", "membrane pixels", *HEADER[1:]], rows)
    lines += _regions(results)
    if results.get("condition_sensitivity"):
        lines += [
            "",
            "Which unseen condition costs what: new simulated cells (seeds "
            f"{', '.join(map(str, SENSITIVITY_SEEDS))}, default cell content) imaged at the "
            f"standard conditions ({_standard_text()}), then with one acquisition condition "
            "moved to the middle of its held-out range (means over the cells):",
            "",
        ]
        rows = [
            [r["conditions"]] + [_number(_value(r[k])) for k in SCORES[1:]]
            for r in results["condition_sensitivity"]
        ]
        lines += _table(["acquisition", *HEADER[1:]], rows)
    if results.get("compared"):
        lines += _comparison(results)
    lines += [
        "",
        "Targets of issue #7: precision ≥ 0.74, F1 ≥ 0.7, tolerance F1 ≥ 0.85"
        + ("; of issue #16: cell-interior Dice ≥ 0.9. " if results.get("regions") else ". ")
        + "Where the table is below them, this model is a placeholder that lets the "
        "pipeline run end to end; do not publish numbers from it without checking "
        "against your own labels.",
    ]
    if results.get("cpu_megapixels_per_s") is not None:
        lines += [
            "",
            f"CPU speed: {results['cpu_megapixels_per_s']:.2f} megapixels/s on full-size "
            f"1324 × 1284 slices ({results.get('cpu_threads')} threads).",
        ]
    lines += [
        "",
        "## Not trained on",
        "Real cryo-SXT data of any microscope; cell types, organelles or contrast outside "
        "the simulator; voxel sizes other than 9.8 nm; tilt ranges below ±55°. For real "
        "tomograms, the published network of the reference paper (`sxtquant fetch "
        "weights-2021-05`, then `sxtquant convert`), or this model fine-tuned on a few of "
        f"your own labelled slices (`sxtquant train DATA -o tuned {_fine_tune_options(results)}`), "
        "is the better choice.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- files


def write_outputs(folder: Path, results: dict, table: pd.DataFrame | None) -> str:
    """Recompute the summaries, write test_metrics.json (and the per-slice counts) and
    MODEL_CARD.md into ``folder``; returns the card. The card is rendered from the JSON
    as written, so ``--card-only`` reproduces it byte for byte."""
    results = json.loads(io.json_text(results))  # NaN -> null, as a later read sees it
    results = recompute(results, table)
    if table is not None:
        results["slice_counts"] = COUNTS_FILE
        csv = table.to_csv(index=False, lineterminator="\n").encode()
        (folder / COUNTS_FILE).write_bytes(gzip.compress(csv, mtime=0))
    text = io.json_text(results)
    (folder / "test_metrics.json").write_text(text, encoding="utf-8")
    card = model_card(json.loads(text))
    (folder / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    return card


def card_only(folder: Path, bootstrap: dict | None = None, recipe: str | None = None) -> str:
    """Recompute the intervals and re-render the card of a shipped model folder (named by
    the folder; ``bootstrap``: other ``samples`` or ``seed`` than those stored; ``recipe``:
    another command that reproduces it)."""
    results = json.loads((folder / "test_metrics.json").read_text(encoding="utf-8"))
    results = _legacy_inputs(results, folder) | {"name": folder.name}
    if recipe is not None:
        results["recipe"] = recipe
    results["bootstrap"] = results.get("bootstrap", {}) | (bootstrap or {})
    table = None
    if results.get("slice_counts"):
        raw = gzip.decompress((folder / results["slice_counts"]).read_bytes()).decode()
        table = pd.read_csv(text_io.StringIO(raw), dtype={"method": str, "tomogram": str})
    return write_outputs(folder, results, table)


def _checkpoint(spec: str, which: str) -> Path | str:
    """A ``--compare``/``--ablation`` checkpoint: a checkpoint folder, a run folder (its
    ``best``/``last``), or a shipped model's name."""
    path = Path(spec)
    if path.is_dir() and not (path / "config.json").is_file() and (path / which).is_dir():
        return path / which
    return spec


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="sxtquant train output folder")
    parser.add_argument("--data", type=Path, help="the training set folder (test/ inside)")
    parser.add_argument("--out", type=Path, default=Path("sxtquant/models/default"))
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="best (lowest validation loss) or last (final epoch) checkpoint of every run",
    )
    parser.add_argument(
        "--ablation", type=Path, help="sxtquant train --supervised-only run with the same recipe"
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="another model to score on the same test tomograms (a checkpoint or run folder, "
        "or a shipped model's name), with a paired interval against this one; repeatable",
    )
    parser.add_argument(
        "--random-forest", action="store_true", help="add the random-forest baseline"
    )
    parser.add_argument("--otsu", action="store_true", help="add the Otsu-threshold baseline")
    parser.add_argument(
        "--schedule",
        help="the learning-rate schedule in words, when the run was resumed with another "
        "--lr (the checkpoint records only the last phase's options)",
    )
    parser.add_argument(
        "--epochs-before",
        type=int,
        default=0,
        metavar="N",
        help="the run started (--init) from a model trained N epochs: the card counts them "
        "in the checkpoint's epoch (default 0)",
    )
    parser.add_argument(
        "--samples", type=int, help=f"bootstrap draws (default {intervals.SAMPLES}, or as stored)"
    )
    parser.add_argument("--seed", type=int, help="seed of the bootstrap (default 0, or as stored)")
    parser.add_argument("--skip-speed", action="store_true", help="do not measure CPU speed")
    parser.add_argument(
        "--skip-sensitivity", action="store_true", help="do not simulate the condition table"
    )
    parser.add_argument(
        "--recipe",
        help="the command that reproduces the model, for the card (default: make model, or "
        "as stored)",
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="recompute the intervals and re-render MODEL_CARD.md from --out's test_metrics.json "
        "(and per-slice counts) without evaluating",
    )
    return parser


def main(argv=None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    bootstrap = {"samples": args.samples, "seed": args.seed}
    bootstrap = {k: v for k, v in bootstrap.items() if v is not None}
    if args.card_only:
        print(card_only(args.out, bootstrap, args.recipe))
        return
    if args.run is None or args.data is None:
        parser.error("--run and --data are needed (or --card-only)")
    others = {}
    for spec in args.compare:
        name, sep, checkpoint = spec.partition("=")
        if not (sep and name and checkpoint) or name in (SHIPPED, *DESCRIPTIONS, *others):
            parser.error(f"--compare wants NAME=CHECKPOINT with a new name, got {spec!r}")
        others[name] = ("compare", _checkpoint(checkpoint, args.checkpoint))
    if args.ablation is not None:
        others["supervised-only"] = ("ablation", _checkpoint(str(args.ablation), args.checkpoint))
    if not (args.data / "test" / "images").is_dir():
        parser.error(f"no test tomograms: {args.data / 'test' / 'images'} is not a folder")
    torch.set_num_threads(2)
    set_quiet(True)
    checkpoint = args.run / args.checkpoint
    model = load_model(checkpoint)
    tomograms = load_test_tomograms(args.data)
    dataset = dataset_summary(args.data)
    voxel = float(dataset.get("voxel_size_nm") or 9.8)
    facts, train_config = model_summary(model, checkpoint, args.epochs_before)
    table, shipped_regions = evaluate_method(SHIPPED, network_predictor(model), tomograms, voxel)
    tables, compared = [table], {}
    for name, (kind, source) in others.items():
        other = load_model(source)
        part, regions = evaluate_method(name, network_predictor(other), tomograms, voxel)
        tables.append(part)
        description = (
            DESCRIPTIONS["supervised-only"]
            if kind == "ablation"
            else f"the shipped model `{source}` (see its MODEL_CARD.md)"
            if source in SHIPPED_MODELS
            else f"the model `{source}`"
        )
        compared[name] = {"description": description, "regions": {"per_tomogram": regions}}
    baselines = [
        n for n, wanted in (("random-forest", args.random_forest), ("otsu", args.otsu)) if wanted
    ]
    if baselines:
        from sxtquant.evaluate.baselines import OtsuBaseline, RandomForestBaseline
        from sxtquant.train.data import load_training_data

        train = load_training_data(args.data)
        for name in baselines:
            baseline = RandomForestBaseline(seed=0) if name == "random-forest" else OtsuBaseline()
            baseline.fit(list(train.images), list(train.labels))
            tables.append(evaluate_method(name, _membrane_of(baseline), tomograms, voxel)[0])
            compared[name] = {"description": DESCRIPTIONS[name]}
    results = {
        "name": args.out.name,
        "recipe": args.recipe or "make model",
        "model": facts,
        "train_config": train_config,
        "schedule": args.schedule,
        "dataset": dataset,
        "bootstrap": {"samples": intervals.SAMPLES, "seed": 0} | bootstrap,
        "regions": {"per_tomogram": shipped_regions},
        "condition_sensitivity": [] if args.skip_sensitivity else condition_sensitivity(model),
        "compared": compared,
        "cpu_megapixels_per_s": None if args.skip_speed else cpu_throughput(model),
        "cpu_threads": torch.get_num_threads(),
    }
    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(checkpoint, tmp, ignore=shutil.ignore_patterns("train_state.pt"))
    card = write_outputs(tmp, results, pd.concat(tables, ignore_index=True))
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    print(card)
    print(f"{args.out.name} model written to {args.out}")


if __name__ == "__main__":
    main()
