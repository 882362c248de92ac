"""Pixel metrics, expert-comparison classes, tolerance and image accuracy on hand-made arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sxtquant import evaluate

# One 10x10 slice with known counts: truth = rows 0-1 (20 pixels); the prediction
# covers rows 1-3 (30 pixels) -> TP = 10 (row 1), FP = 20 (rows 2-3), FN = 10 (row 0),
# TN = 100 - 40 = 60. The artifact mask covers row 3 -> 10 of the 20 FP are artifacts.


@pytest.fixture
def known():
    truth = np.zeros((10, 10), np.uint8)
    truth[0:2] = 255
    prob = np.zeros((10, 10), np.float32)
    prob[1:4] = 0.95
    artifacts = np.zeros((10, 10), np.uint8)
    artifacts[3] = 255
    return prob, truth, artifacts


def test_pixel_metrics_known_counts(known):
    prob, truth, _ = known
    m = evaluate.pixel_metrics(prob, truth)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (10, 20, 10, 60)
    assert m["accuracy"] == pytest.approx(0.70)
    assert m["precision"] == pytest.approx(10 / 30)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(2 * 10 / (2 * 10 + 20 + 10))


def test_threshold_is_strict():
    truth = np.ones((1, 1, 4), bool)
    prob = np.array([[[0.9, 0.9000001, 0.5, 1.0]]], np.float32)
    m = evaluate.pixel_metrics(prob, truth)
    assert m["tp"] == 2  # 0.9 itself is negative
    assert evaluate.pixel_metrics(prob, truth, threshold=0.4)["tp"] == 4


def test_masks_are_binarised_above_zero():
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[:, :2] = 255
    as_uint8 = truth.copy()
    as_bool = truth > 0
    as_01 = (truth > 0).astype(np.uint16)
    for mask in (as_uint8, as_bool, as_01):
        m = evaluate.pixel_metrics(mask, truth, threshold=0.99)
        assert (m["precision"], m["recall"], m["accuracy"]) == (1.0, 1.0, 1.0)


def test_float_prediction_outside_unit_interval_rejected():
    truth = np.zeros((1, 3, 3), np.uint8)
    float_mask = np.zeros((1, 3, 3), np.float32)
    float_mask[0, 0] = 255.0  # a 0/255 mask saved as float is not a probability map
    with pytest.raises(ValueError, match=r"values in \[0, 255\]"):
        evaluate.pixel_metrics(float_mask, truth)
    with pytest.raises(ValueError, match="threshold"):
        evaluate.pixel_metrics(float_mask / 255, truth, threshold=1.5)


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="shapes differ"):
        evaluate.pixel_metrics(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_undefined_metrics_are_nan_never_zero():
    truth = np.zeros((1, 5, 5), np.uint8)
    empty = np.zeros((1, 5, 5), np.float32)
    m = evaluate.pixel_metrics(empty, truth)  # nothing predicted, no truth
    assert m["accuracy"] == 1.0
    assert math.isnan(m["precision"]) and math.isnan(m["recall"]) and math.isnan(m["f1"])

    truth[0, 0, 0] = 1
    m = evaluate.pixel_metrics(empty, truth)  # nothing predicted, some truth
    assert math.isnan(m["precision"])
    assert m["recall"] == 0.0 and m["f1"] == 0.0

    m = evaluate.pixel_metrics(np.ones((1, 5, 5), np.float32), np.zeros((1, 5, 5), bool))
    assert m["precision"] == 0.0 and math.isnan(m["recall"]) and m["f1"] == 0.0


def test_per_slice_metrics_table(known):
    prob, truth, _ = known
    volume_prob = np.stack([prob, np.zeros_like(prob)])
    volume_truth = np.stack([truth, np.zeros_like(truth)])
    table = evaluate.per_slice_metrics(volume_prob, volume_truth)
    assert list(table.columns) == [
        "z",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "tp",
        "fp",
        "fn",
        "tn",
    ]
    assert table["z"].tolist() == [0, 1]
    assert table.loc[0, "precision"] == pytest.approx(1 / 3)
    assert table.loc[1, "accuracy"] == 1.0
    assert math.isnan(table.loc[1, "precision"])  # an empty slice: undefined, not 0


def test_expert_classes_known_counts(known):
    prob, truth, artifacts = known
    table = evaluate.expert_classes(prob, truth, artifacts)
    assert len(table) == 1
    row = table.iloc[0]
    # labelled pixels = TP 10 + FP 10 + artifact 10 + FN 10 = 40
    assert row["labelled_pixels"] == 40
    for key in evaluate.CLASS_KEYS:
        assert row[key] == pytest.approx(25.0)

    no_artifacts = evaluate.expert_classes(prob, truth).iloc[0]
    assert no_artifacts["artifact"] == 0.0
    assert no_artifacts["false_positive"] == pytest.approx(50.0)


def test_classes_sum_to_100_and_empty_slices_left_out(rng):
    prob = rng.random((6, 12, 12)).astype(np.float32)
    truth = rng.random((6, 12, 12)) > 0.7
    artifacts = rng.random((6, 12, 12)) > 0.5
    prob[2] = 0.0
    truth[2] = False  # slice 2: nothing labelled
    table = evaluate.expert_classes(prob, truth, artifacts)
    assert table["z"].tolist() == [0, 1, 3, 4, 5]
    sums = table[list(evaluate.CLASS_KEYS)].sum(axis=1)
    np.testing.assert_allclose(sums, 100.0)


def test_artifact_mask_changes_only_the_classes(rng):
    prob = rng.random((3, 16, 16)).astype(np.float32)
    truth = rng.random((3, 16, 16)) > 0.6
    artifacts = rng.random((3, 16, 16)) > 0.5
    with_a = evaluate.evaluate(prob, truth, artifacts)
    without = evaluate.evaluate(prob, truth)
    for key in (*evaluate.PIXEL_KEYS, "counts"):
        assert with_a[key] == without[key]
    assert with_a["classes"] != without["classes"]
    for a, b in zip(with_a["classes"]["per_slice"], without["classes"]["per_slice"], strict=True):
        assert a["true_positive"] == b["true_positive"]
        assert a["false_negative"] == b["false_negative"]
        assert a["false_positive"] + a["artifact"] == pytest.approx(b["false_positive"])


def test_class_summary_layout_mean_sd():
    truth = np.zeros((3, 10, 10), np.uint8)
    truth[:, 0:2] = 1  # 20 truth pixels per slice
    prob = np.zeros((3, 10, 10), np.float32)
    prob[0, 0:2] = 1.0  # slice 0: TP 100 %
    prob[1, 0:1] = 1.0  # slice 1: TP 50 %, FN 50 %
    # slice 2: FN 100 %
    summary = evaluate.evaluate(prob, truth)["classes"]
    assert set(summary) == {"per_slice", "mean", "sd"}
    assert [entry["z"] for entry in summary["per_slice"]] == [0, 1, 2]
    assert set(summary["per_slice"][0]) == {"z", *evaluate.CLASS_KEYS}
    assert set(summary["mean"]) == set(summary["sd"]) == set(evaluate.CLASS_KEYS)
    assert summary["mean"]["true_positive"] == pytest.approx(50.0)
    assert summary["sd"]["true_positive"] == pytest.approx(50.0)  # ddof = 1: [100, 50, 0]
    assert summary["mean"]["false_negative"] == pytest.approx(50.0)


def test_class_sd_nan_with_fewer_than_two_slices(known):
    prob, truth, _ = known
    one = evaluate.evaluate(prob, truth)["classes"]
    assert len(one["per_slice"]) == 1
    assert all(math.isnan(v) for v in one["sd"].values())
    none = evaluate.evaluate(np.zeros((2, 4, 4), np.float32), np.zeros((2, 4, 4), bool))
    assert none["classes"]["per_slice"] == []
    assert all(math.isnan(v) for v in none["classes"]["mean"].values())


def test_tolerance_metrics_forgive_small_offsets():
    truth = np.zeros((1, 20, 20), bool)
    truth[0, 10, 2:18] = True  # a horizontal membrane, 16 pixels
    shifted = np.zeros((1, 20, 20), np.float32)
    shifted[0, 12, 2:18] = 1.0  # drawn two pixels lower
    strict = evaluate.pixel_metrics(shifted, truth)
    assert strict["tp"] == 0 and strict["f1"] == 0.0
    one = evaluate.tolerance_metrics(shifted, truth, 1)
    assert one["precision"] == 0.0 and one["f1"] == 0.0
    two = evaluate.tolerance_metrics(shifted, truth, 2)
    assert (two["precision"], two["recall"], two["f1"]) == (1.0, 1.0, 1.0)
    # anisotropic pixels: a 2-pixel offset along y of 3 nm pixels is 6 nm
    assert evaluate.tolerance_metrics(shifted, truth, 5, sampling=(3, 1))["f1"] == 0.0
    assert evaluate.tolerance_metrics(shifted, truth, 6, sampling=(3, 1))["f1"] == 1.0


def test_tolerance_zero_equals_strict_metrics(rng):
    prob = rng.random((3, 12, 12)).astype(np.float32)
    truth = rng.random((3, 12, 12)) > 0.7
    strict = evaluate.pixel_metrics(prob, truth)
    tol = evaluate.tolerance_metrics(prob, truth, 0)
    for key in ("precision", "recall", "f1"):
        assert tol[key] == pytest.approx(strict[key])


def test_tolerance_slice_vs_volume_mode():
    truth = np.zeros((3, 8, 8), bool)
    truth[0, 4, 4] = True
    pred = np.zeros((3, 8, 8), bool)
    pred[1, 4, 4] = True  # one slice away
    assert evaluate.tolerance_metrics(pred, truth, 1)["f1"] == 0.0
    assert evaluate.tolerance_metrics(pred, truth, 1, mode="volume")["f1"] == 1.0


def test_tolerance_nan_cases():
    empty = np.zeros((2, 5, 5), bool)
    some = empty.copy()
    some[0, 2, 2] = True
    both_empty = evaluate.tolerance_metrics(empty, empty, 2)
    assert all(math.isnan(both_empty[k]) for k in ("precision", "recall", "f1"))
    no_pred = evaluate.tolerance_metrics(empty, some, 2)
    assert math.isnan(no_pred["precision"]) and no_pred["recall"] == 0.0 and no_pred["f1"] == 0.0


def test_image_accuracy_within_one_sd():
    image = np.array([[[0.0, 2.0, 0.0, 2.0]], [[0.0, 4.0, 0.0, 4.0]]])  # slice SDs 1 and 2
    error = np.array([[[0.5, -1.0, 1.5, 0.0]], [[0.5, -2.0, 2.5, 3.0]]])
    per_slice = evaluate.image_accuracy_per_slice(image + error, image)
    np.testing.assert_allclose(per_slice, [0.75, 0.5])
    assert evaluate.image_accuracy(image + error, image) == pytest.approx(0.625)
    assert evaluate.image_accuracy(image, image) == 1.0


def test_two_dimensional_input_is_one_slice(known):
    prob, truth, artifacts = known
    result = evaluate.evaluate(prob, truth, artifacts)
    assert result["n_slices"] == 1
    assert result["counts"] == {"tp": 10, "fp": 20, "fn": 10, "tn": 60}
