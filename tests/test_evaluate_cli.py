"""`sxtquant evaluate` end to end: files in, JSON out; bad input ends with exit 2 and no output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sxtquant.io.volumes import write_volume
from tests.conftest import assert_user_error


@pytest.fixture
def volumes(tmp_path):
    """Two 10x10 slices with known counts, as TIFF files.

    Slice 0: truth rows 0-1, prediction rows 1-3, artifacts row 3 -> TP 10, FP 10,
    artifact 10, FN 10. Slice 1: truth rows 0-1, prediction rows 0-1 -> TP 20.
    Whole volume: TP 30, FP 20, FN 10, TN 140.
    """
    truth = np.zeros((2, 10, 10), np.uint8)
    truth[:, 0:2] = 255
    prob = np.zeros((2, 10, 10), np.float32)
    prob[0, 1:4] = 0.95
    prob[1, 0:2] = 0.99
    prob[1, 5] = 0.9  # exactly the threshold: negative
    artifacts = np.zeros((2, 10, 10), np.uint8)
    artifacts[:, 3] = 255
    paths = {
        "prob": tmp_path / "cell.probability.tif",
        "mask": tmp_path / "cell.mask.tif",
        "truth": tmp_path / "truth.tif",
        "artifacts": tmp_path / "artifacts.tif",
    }
    write_volume(paths["prob"], prob)
    write_volume(paths["mask"], np.where(prob > 0.9, 255, 0).astype(np.uint8))
    write_volume(paths["truth"], truth)
    write_volume(paths["artifacts"], artifacts)
    return paths


def test_evaluate_writes_json(run_cli, volumes, tmp_path):
    out = tmp_path / "metrics.json"
    result = run_cli(
        "evaluate",
        volumes["prob"],
        volumes["truth"],
        "--artifacts",
        volumes["artifacts"],
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    # one summary line: 170 of 200 pixels right, 30 of 50 marked are membrane, 30 of 40 found
    assert result.stdout == (
        f"{out}: accuracy 0.850, precision 0.600, recall 0.750, f1 0.667 (2 slices)\n"
    )
    data = json.loads(out.read_text())
    assert data["counts"] == {"tp": 30, "fp": 20, "fn": 10, "tn": 140}
    assert data["accuracy"] == pytest.approx(170 / 200)
    assert data["precision"] == pytest.approx(30 / 50)
    assert data["recall"] == pytest.approx(30 / 40)
    assert data["f1"] == pytest.approx(60 / 90)
    assert data["threshold"] == 0.9 and data["n_slices"] == 2
    assert data["prediction"] == str(volumes["prob"])
    assert data["truth"] == str(volumes["truth"])
    assert data["artifacts"] == str(volumes["artifacts"])
    classes = data["classes"]
    assert classes["per_slice"][0] == {
        "z": 0,
        "true_positive": 25.0,
        "false_positive": 25.0,
        "artifact": 25.0,
        "false_negative": 25.0,
    }
    assert classes["per_slice"][1]["true_positive"] == 100.0
    for entry in classes["per_slice"]:
        assert sum(
            entry[k] for k in ("true_positive", "false_positive", "artifact", "false_negative")
        ) == pytest.approx(100)
    assert classes["mean"]["true_positive"] == pytest.approx(62.5)
    assert classes["sd"]["true_positive"] == pytest.approx(np.std([25, 100], ddof=1))
    assert "tolerance" not in data


def test_evaluate_prints_json_with_nulls(run_cli, volumes, tmp_path):
    one_slice = tmp_path / "one.tif"
    write_volume(one_slice, np.zeros((1, 10, 10), np.float32))
    truth = tmp_path / "truth1.tif"
    write_volume(truth, np.zeros((1, 10, 10), np.uint8))
    result = run_cli("evaluate", one_slice, truth)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # valid JSON: NaN is written as null
    assert data["precision"] is None and data["recall"] is None and data["f1"] is None
    assert data["accuracy"] == 1.0
    assert data["classes"]["per_slice"] == []
    assert data["classes"]["sd"]["true_positive"] is None


def test_uint8_mask_prediction_same_as_probability(run_cli, volumes):
    from_prob = json.loads(run_cli("evaluate", volumes["prob"], volumes["truth"]).stdout)
    from_mask = json.loads(run_cli("evaluate", volumes["mask"], volumes["truth"]).stdout)
    for key in ("accuracy", "precision", "recall", "f1", "counts", "classes"):
        assert from_prob[key] == from_mask[key]


def test_threshold_and_tolerance_options(run_cli, volumes):
    low = json.loads(
        run_cli("evaluate", volumes["prob"], volumes["truth"], "--threshold", "0.5").stdout
    )
    assert low["counts"]["fp"] == 30  # row 5 of slice 1 (0.9) is now positive
    tol = json.loads(
        run_cli("evaluate", volumes["prob"], volumes["truth"], "--tolerance", "1").stdout
    )
    assert tol["tolerance"]["tolerance"] == 1.0
    assert tol["tolerance"]["recall"] == 1.0  # every truth pixel has a prediction within 1 px
    assert tol["tolerance"]["precision"] == pytest.approx(
        40 / 50
    )  # slice-0 row 3 is 2 px from the truth


def test_artifact_mask_does_not_change_pixel_metrics(run_cli, volumes):
    plain = json.loads(run_cli("evaluate", volumes["prob"], volumes["truth"]).stdout)
    with_a = json.loads(
        run_cli(
            "evaluate", volumes["prob"], volumes["truth"], "--artifacts", volumes["artifacts"]
        ).stdout
    )
    for key in ("accuracy", "precision", "recall", "f1", "counts"):
        assert plain[key] == with_a[key]
    assert plain["classes"]["per_slice"][0]["artifact"] == 0.0
    assert with_a["classes"]["per_slice"][0]["artifact"] == 25.0


def test_shape_mismatch_names_both_files(run_cli, volumes, tmp_path):
    other = tmp_path / "other.tif"
    write_volume(other, np.zeros((2, 10, 12), np.uint8))
    out = tmp_path / "metrics.json"
    result = run_cli("evaluate", volumes["prob"], other, "-o", out)
    assert_user_error(result, str(other), str(volumes["prob"]), "does not match")
    assert not out.exists()
    assert list(tmp_path.glob("*.json*")) == [] and list(tmp_path.glob(".metrics*")) == []

    result = run_cli("evaluate", volumes["prob"], volumes["truth"], "--artifacts", other, "-o", out)
    assert_user_error(result, str(other), "does not match")
    assert not out.exists()


@pytest.mark.parametrize(
    "case",
    ["missing", "not_probability", "bad_threshold", "negative_tolerance", "nan"],
)
def test_bad_input_exit_2_no_output(run_cli, volumes, tmp_path, case):
    out = tmp_path / "metrics.json"
    prediction, extra, fragment = volumes["prob"], [], None
    if case == "missing":
        prediction, fragment = tmp_path / "absent.tif", "absent.tif"
    elif case == "not_probability":
        prediction = tmp_path / "scaled.tif"
        write_volume(prediction, np.full((2, 10, 10), 200.0, np.float32))
        fragment = "[0, 1]"
    elif case == "nan":
        prediction = tmp_path / "nan.tif"
        data = np.zeros((2, 10, 10), np.float32)
        data[1, 2, 3] = np.nan
        write_volume(prediction, data)
        fragment = "NaN"
    elif case == "bad_threshold":
        extra, fragment = ["--threshold", "1.5"], "--threshold"
    else:
        extra, fragment = ["--tolerance", "-1"], "--tolerance"
    result = run_cli("evaluate", prediction, volumes["truth"], *extra, "-o", out)
    assert_user_error(result, fragment)
    assert result.stdout == ""
    assert not out.exists()
