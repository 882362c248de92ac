"""tools/ship_model.py end to end on a tiny synthetic test set with untrained tiny models."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from sxtquant import io
from sxtquant.nn.checkpoint import save_checkpoint
from sxtquant.nn.config import PRESETS
from sxtquant.nn.network import build_model

TOOL = Path(__file__).resolve().parents[1] / "tools" / "ship_model.py"
VOXEL_NM = 20.0  # organelles of >= 25 voxels count (the pipeline's 2e5 nm^3)


@pytest.fixture(scope="module")
def ship():
    spec = importlib.util.spec_from_file_location("ship_model", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ship_model"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["ship_model"]


def _tomogram(seed: int, shape=(6, 32, 32)):
    """Raw images, membrane mask and regions of a disk-shaped cell with two organelles."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    r = np.hypot(y - 16, x - 16)
    regions = (r < 12).astype(np.uint8)
    for cy, cx in ((12, 12), (20, 19)):
        regions[(np.hypot(y - cy, x - cx) < 4) & (z >= 1) & (z <= 4)] = 2
    membrane = np.abs(r - 12) < 1
    images = (0.2 * regions + 0.5 * membrane + rng.normal(0, 0.05, shape)).astype(np.float32)
    return images, membrane, regions


def _write_data(root: Path, layout: str, *, dataset_json: bool = True, tests: int = 2) -> Path:
    acquisition = {"tilt_max_deg": 60.0, "blur_fwhm_nm": 40.0, "dose": 700.0, "jitter_px": 0.6}
    tomograms = []
    test_names = [f"test{i:03d}" for i in range(tests)]
    for split, names in (("test", test_names), ("labeled", ["labeled000"])):
        for i, name in enumerate(names):
            images, membrane, regions = _tomogram(10 * len(split) + i)
            folder = root / split
            if layout == "stacks":
                files = [(f"{name}.tif", slice(None))]
            else:
                files = [(f"{name}_z{z:04d}.tif", z) for z in range(len(images))]
            for file, cut in files:
                io.write_volume(folder / "images" / file, images[cut], VOXEL_NM)
                io.write_mask(folder / "labels" / file, membrane[cut], VOXEL_NM)
                io.write_volume(folder / "regions" / file, regions[cut], VOXEL_NM)
            tomograms.append({"name": name, "split": split, "acquisition": acquisition})
    if dataset_json:
        meta = {"seed": 7, "voxel_size_nm": VOXEL_NM, "layout": layout, "tomograms": tomograms}
        (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _run(folder: Path, config, seed: int) -> Path:
    import torch

    torch.manual_seed(seed)
    metadata = {"epoch": 3, "val_f1": 0.5, "train_config": {"preset": "tiny", "seed": seed}}
    save_checkpoint(build_model(config), folder / "best", metadata=metadata)
    return folder


REGION_CONFIG = dataclasses.replace(PRESETS["tiny"], in_slices=3, regions=("cell", "organelles"))


def _ship(ship, tmp_path: Path, layout: str, *extra: str, dataset_json: bool = True) -> Path:
    data = _write_data(tmp_path / "data", layout, dataset_json=dataset_json)
    out = tmp_path / "default"
    argv = [
        "--run", str(_run(tmp_path / "run", REGION_CONFIG, 0)),
        "--data", str(data),
        "--out", str(out),
        "--samples", "200",
        "--skip-speed",
        "--skip-sensitivity",
        *extra,
    ]  # fmt: skip
    ship.main(argv)
    return out


def _check_interval(row: dict) -> None:
    assert row["low"] <= row["value"] <= row["high"]
    assert row["samples"] == 200 and row["seed"] == 0 and row["level"] == 0.95


@pytest.mark.parametrize("layout", ["stacks", "slices"])
def test_ship_writes_intervals_and_card_only_reproduces_the_card(ship, tmp_path, layout):
    previous = _run(tmp_path / "previous", "tiny", 1)
    ablation = _run(tmp_path / "ablation", REGION_CONFIG, 2)
    out = _ship(
        ship,
        tmp_path,
        layout,
        "--compare", f"previous={previous}",
        "--ablation", str(ablation),
        "--otsu",
        "--epochs-before", "26",
    )  # fmt: skip
    results = json.loads((out / "test_metrics.json").read_text())
    card = (out / "MODEL_CARD.md").read_text()
    # a run started (--init) from a 26-epoch model: its epoch 3 is the model's 29th; the
    # options stay those of the run
    assert "Checkpoint of epoch 29 (" in card and results["train_config"]["epochs"] == 3
    assert (out / "weights.pt").is_file() and (out / ship.COUNTS_FILE).is_file()
    assert [r["tomogram"] for r in results["per_tomogram"]] == ["test000", "test001"]
    assert {r["slices"] for r in results["per_tomogram"]} == {6}
    for key in ship.SCORES:
        row = results["intervals"][key]
        _check_interval(row)
        assert row["statistic"] == "pooled" and row["levels"] == ["tomograms", "slices"]
        assert (row["n_tomograms"], row["n_slices"]) == (2, 12)
        assert row["value"] == results["pooled"][key] or np.isnan(results["pooled"][key] or np.nan)
    # the pooled F1 from the summed counts, the per-tomogram rows from each one's counts
    f1 = results["intervals"]["f1"]
    assert f"{f1['value']:.3f} [{f1['low']:.3f}, {f1['high']:.3f}]" in card
    assert "two-level bootstrap" in card and "12 slices" in card
    # regions of the region-aware model (and of the ablation), not of the 2D previous one
    assert set(results["regions"]["intervals"]) == set(ship.REGION_SCORES)
    for row in results["regions"]["intervals"].values():
        if row["value"] is not None:
            _check_interval(row)
    assert "## Cell and organelle interiors" in card
    compared = results["compared"]
    assert list(compared) == ["previous", "supervised-only", "otsu"]
    assert "regions" not in compared["previous"] and "regions" in compared["supervised-only"]
    assert set(compared["supervised-only"]["paired_regions"]) == set(ship.REGION_SCORES)
    for entry in compared.values():
        assert len(entry["per_tomogram"]) == 2
        _check_interval(entry["intervals"]["f1"])
        assert set(entry["paired"]) == set(ship.PAIRED)
        for row in entry["paired"].values():
            _check_interval(row)
            assert row["statistic"] == "pooled difference"
    assert "this model − supervised-only" in card and "this model − previous" in card
    # named by its folder; the fine-tuning command has the options that fit the model
    assert card.startswith("# sxtquant default model\n") and "reproduce with `make model`" in card
    assert "--preset tiny --in-slices 3 --regions --init default`" in card
    assert "with region heads and a Dice term" in card
    # a byte-identical card (and JSON) from the stored results, without evaluating
    before = (out / "test_metrics.json").read_bytes()
    ship.main(["--card-only", "--out", str(out)])
    assert (out / "MODEL_CARD.md").read_text() == card
    assert (out / "test_metrics.json").read_bytes() == before
    # copied under another name with its own recipe, the card says so
    other = out.with_name("membrane-3")
    shutil.copytree(out, other)
    ship.main(["--card-only", "--out", str(other), "--recipe", "make model-3"])
    renamed = (other / "MODEL_CARD.md").read_text()
    assert renamed.startswith("# sxtquant membrane-3 model\n")
    assert "reproduce with `make model-3`" in renamed and "--init membrane-3`" in renamed


def test_a_membrane_only_model_without_dataset_json_is_scored_from_3d_files(ship, tmp_path):
    data = _write_data(tmp_path / "data", "stacks", dataset_json=False, tests=1)
    out = tmp_path / "default"
    ship.main(
        [
            "--run", str(_run(tmp_path / "run", "tiny", 0)),
            "--data", str(data),
            "--out", str(out),
            "--samples", "100",
            "--skip-speed",
            "--skip-sensitivity",
        ]
    )  # fmt: skip
    results = json.loads((out / "test_metrics.json").read_text())
    assert "regions" not in results and results["compared"] == {}
    f1 = results["intervals"]["f1"]
    assert (f1["n_tomograms"], f1["n_slices"], f1["levels"]) == (1, 6, ["slices"])
    assert f1["low"] <= f1["value"] <= f1["high"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "(semi-supervised, Dyhr et al. PNAS 2023 protocol)" in card
    assert "--preset tiny --init default`" in card
    assert "the slices of the one test tomogram" in card and "On 1 held-out test tomogram," in card
    assert "## Cell and organelle interiors" not in card


def test_an_old_test_metrics_json_gets_tomogram_level_intervals(ship, tmp_path):
    # what the shipped folder held before the intervals: per-tomogram scores and means
    out = tmp_path / "default"
    save_checkpoint(
        build_model("tiny"),
        out,
        metadata={"epoch": 30, "val_f1": 0.7, "train_config": {"preset": "tiny"}},
    )
    rows = [
        {"tomogram": f"test00{i}", **dict.fromkeys(ship.SCORES, 0.4 + 0.02 * i)} for i in range(3)
    ]
    old = {
        "per_tomogram": rows,
        "mean": dict.fromkeys(ship.SCORES, 0.42),
        "by_depth": [],
        "condition_sensitivity": [],
        "compared": {"supervised-only": dict.fromkeys(ship.SCORES, 0.43)},
        "cpu_megapixels_per_s": 1.7,
    }
    (out / "test_metrics.json").write_text(json.dumps(old))
    (out / "MODEL_CARD.md").write_text(
        "# old\n\n## Training data\nline one.\nline two.\n\n## Training recipe\n"
        "Schedule: epochs 1-12 at lr 2e-3. The options of the last phase:\n\n"
        "CPU speed: 1.70 megapixels/s on full-size 1324 × 1284 slices (2 threads).\n"
    )
    ship.main(["--card-only", "--out", str(out), "--samples", "100"])
    results = json.loads((out / "test_metrics.json").read_text())
    card = (out / "MODEL_CARD.md").read_text()
    f1 = results["intervals"]["f1"]
    assert f1["statistic"] == "mean over tomograms" and f1["levels"] == ["tomograms"]
    assert f1["value"] == pytest.approx(0.42) and 0.4 <= f1["low"] <= 0.42 <= f1["high"] <= 0.44
    assert "line one.\nline two." in card and "Schedule: epochs 1-12 at lr 2e-3." in card
    assert "tomogram-level bootstrap only" in card and "(2 threads)" in card
    assert "supervised-only are not in this card" in card
    again = card
    ship.main(["--card-only", "--out", str(out)])
    assert (out / "MODEL_CARD.md").read_text() == again


def test_instances_match_one_to_one_at_iou_one_half(ship):
    truth = np.zeros((1, 4, 12), np.uint16)
    truth[0, :, 0:4], truth[0, :, 6:10] = 1, 2
    found = np.zeros_like(truth)
    found[0, :, 0:3] = 1  # IoU 3/4 with truth 1
    found[0, :, 6:7] = 2  # IoU 1/4 with truth 2: not a match
    found[0, :, 7:10] = 3  # IoU 3/4 with truth 2
    assert ship.matched_instances(truth, found) == 2
    assert ship.matched_instances(truth, found, iou=0.8) == 0
    assert ship.matched_instances(truth, np.zeros_like(truth)) == 0


@pytest.mark.parametrize("spec", ["no-equals-sign", "otsu=somewhere", "=somewhere"])
def test_bad_compare_is_refused_with_exit_code_2(ship, tmp_path, capsys, spec):
    with pytest.raises(SystemExit) as exit_info:
        ship.main(["--run", "r", "--data", str(tmp_path), "--compare", spec])
    assert exit_info.value.code == 2
    assert "NAME=CHECKPOINT" in capsys.readouterr().err
