"""sxtquant.report on small hand-made arrays, and `sxtquant demo` end to end."""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from sxtquant.evaluate.matching import match_filopodia, matching_summary
from sxtquant.report.figures import (
    COLORS,
    comparison_masks,
    crop_figure,
    measured_vs_true_figure,
    overlay_rgb,
    slice_overlay_figure,
)
from sxtquant.report.html import Section, html_figure, html_page, html_table
from tests.conftest import assert_user_error

# --------------------------------------------------------------------------- overlays


def test_comparison_masks_count_each_class():
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 255]])
    truth = np.array([[1, 0, 1, 0], [1, 0, 1, 0]], dtype=bool)
    classes = comparison_masks(pred, truth)
    assert classes["true_positive"].sum() == 2  # (0,0), (1,0)
    assert classes["false_positive"].sum() == 2  # (0,1), (1,3)
    assert classes["false_negative"].sum() == 2  # (0,2), (1,2)
    assert classes["false_positive"][1, 3] and classes["false_negative"][0, 2]
    with pytest.raises(ValueError, match="shape"):
        comparison_masks(pred, truth[:, :3])


def test_overlay_rgb_paints_masks_over_grey():
    image = np.arange(20, dtype=float).reshape(4, 5)
    mask = np.zeros((4, 5), bool)
    mask[1, 2] = True
    rgb = overlay_rgb(image, [(mask, COLORS["prediction"])], alpha=1.0, limits=(0.0, 19.0))
    assert rgb.shape == (4, 5, 3)
    np.testing.assert_allclose(rgb[1, 2], COLORS["prediction"], atol=1e-6)
    # elsewhere: grey, equal channels, scaled between the limits
    np.testing.assert_allclose(rgb[0, 0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(rgb[3, 4], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(rgb[2, 1], [11 / 19] * 3, rtol=1e-6)
    half = overlay_rgb(image, [(mask, (1.0, 0.0, 0.0))], alpha=0.5, limits=(0.0, 19.0))
    np.testing.assert_allclose(half[1, 2], [0.5 + 0.5 * 7 / 19, 0.5 * 7 / 19, 0.5 * 7 / 19])


def test_slice_overlay_figure_panels(rng):
    tomogram = rng.normal(size=(8, 32, 48))
    truth = np.zeros(tomogram.shape, bool)
    truth[:, 10, 5:40] = True
    prediction = np.roll(truth, 1, axis=2)
    fig = slice_overlay_figure(
        tomogram, prediction, truth, voxel_size_nm=(20.0, 10.0, 10.0), z=3, y=10
    )
    axes = fig.axes
    assert len(axes) == 8  # 2 rows (x–y, x–z) x 4 columns
    titles = [ax.get_title() for ax in axes[:4]]
    assert titles == ["tomogram", "predicted membranes", "true membranes", "prediction vs truth"]
    assert "z = 3" in axes[0].get_ylabel() and "x–y" in axes[0].get_ylabel()
    assert "y = 10" in axes[4].get_ylabel() and "x–z" in axes[4].get_ylabel()
    # x–z panel drawn in nm: 8 slices of 20 nm high, 48 pixels of 10 nm wide
    extent = axes[4].get_images()[0].get_extent()
    assert extent[1] == pytest.approx(480.0) and extent[2] == pytest.approx(160.0)
    # the comparison panel of the x–z slice at y = 10: TP where both, FP one step right
    comp = axes[7].get_images()[0].get_array()
    assert comp.shape == (8, 48, 3)
    # truth at x = 5..39, prediction at x = 6..40: FN at 5, TP at 20, FP at 40
    for x, key in ((5, "false_negative"), (20, "true_positive"), (40, "false_positive")):
        grey = comp[0, x] - 0.75 * np.asarray(COLORS[key])  # alpha 0.75 over grey
        np.testing.assert_allclose(grey, grey[0], atol=1e-5)
    np.testing.assert_allclose(comp[0, 45], comp[0, 45][0], atol=1e-6)  # nothing: grey
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "false positive" in labels and "predicted membrane" in labels

    no_truth = slice_overlay_figure(tomogram, prediction, voxel_size_nm=10.0)
    assert len(no_truth.axes) == 4
    assert [ax.get_title() for ax in no_truth.axes[:2]] == ["tomogram", "predicted membranes"]
    with pytest.raises(ValueError, match="shape"):
        slice_overlay_figure(tomogram, prediction[:4])


def test_crop_figure_keeps_only_the_drawing():
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    fig = Figure(figsize=(4.0, 3.0))  # 400 x 300 pixels at 100 dpi
    fig.patches.append(
        Rectangle((0.5, 0.5), 0.2, 0.1, transform=fig.transFigure, color="red", lw=0)
    )
    out = crop_figure(fig, dpi=100, pad=5)
    image = out.axes[0].get_images()[0].get_array()
    # the 80 x 30 pixel rectangle and 5 pixels on each side (+-1 for anti-aliasing)
    assert abs(image.shape[1] - 90) <= 2 and abs(image.shape[0] - 40) <= 2
    assert tuple(image[20, 45]) == (255, 0, 0) and tuple(image[0, 0]) == (255, 255, 255)
    assert out.get_size_inches() * 100 == pytest.approx(image.shape[1::-1])


# --------------------------------------------------------------------------- filopodia vs truth


def _truth_and_detections():
    """A cell (label 1) with three simulated filopodia (2, 3, 4) and three detections."""
    true = np.zeros((4, 10, 40), np.uint16)
    true[:, :, 0:10] = 1  # the cell body
    true[0, 0, 10:30] = 2  # filopodium 2: 20 voxels
    true[1, 0, 10:30] = 3  # filopodium 3: 20 voxels
    true[2, 0, 10:30] = 4  # filopodium 4: never detected
    det = np.zeros_like(true)
    det[0, 0, 14:24] = 1  # 10 voxels on filopodium 2 ...
    det[1, 0, 14:18] = 1  # ... and 4 on filopodium 3: matched to 2
    det[1, 0, 20:26] = 2  # 6 voxels on filopodium 3 ...
    det[3, 0:4, 0:5] = 2  # ... and 20 on the cell body (no filopodium): matched to 3
    det[3, 5, 15:20] = 3  # 5 voxels on background only: a false detection
    table = pd.DataFrame(
        {
            "label": [1, 2, 3, 4],
            "class": ["plasma_membrane", "filopodium", "filopodium", "filopodium"],
            "length_nm": [np.nan, 500.0, 800.0, 300.0],
            "diameter_nm": [np.nan, 100.0, 120.0, 90.0],
            "volume_nm3": [1e9, 4e6, 9e6, 2e6],
            "surface_area_nm2": [5e6, 1.6e5, 3e5, 1e5],
        }
    )
    detected = pd.DataFrame(
        {
            "label": [1, 2, 3],
            "length_nm": [550.0, 760.0, 250.0],
            "radius_nm": [45.0, 66.0, 30.0],
            "volume_nm3": [4.4e6, 9e6, 1e6],
            "surface_area_nm2": [1.2e5, 3.3e5, 5e4],
        }
    )
    return true, det, table, detected


def test_match_filopodia_picks_largest_overlap_with_a_filopodium():
    true, det, table, detected = _truth_and_detections()
    matches = match_filopodia(det, detected, true, table)
    assert list(matches["label"]) == [1, 2, 3, 0]
    assert list(matches["true_label"]) == [2, 3, 0, 4]
    assert list(matches["status"]) == ["matched", "matched", "false", "missed"]
    assert list(matches["overlap_voxels"]) == [10, 6, 0, 0]
    np.testing.assert_allclose(matches["overlap_fraction"][:3], [10 / 14, 6 / 26, 0.0])
    assert math.isnan(matches["overlap_fraction"][3])
    first = matches.iloc[0]
    assert first["length_nm_measured"] == 550.0 and first["length_nm_true"] == 500.0
    assert first["length_relative_error"] == pytest.approx(0.1)
    assert first["diameter_nm_measured"] == 90.0  # twice the radius
    assert first["diameter_relative_error"] == pytest.approx(-0.1)
    assert first["surface_area_relative_error"] == pytest.approx(-0.25)
    second = matches.iloc[1]
    assert second["length_relative_error"] == pytest.approx(-0.05)
    assert second["diameter_relative_error"] == pytest.approx(0.1)
    assert second["volume_relative_error"] == pytest.approx(0.0)
    false, missed = matches.iloc[2], matches.iloc[3]
    assert math.isnan(false["length_nm_true"]) and math.isnan(false["length_relative_error"])
    assert false["length_nm_measured"] == 250.0
    assert missed["length_nm_true"] == 300.0 and math.isnan(missed["length_nm_measured"])

    summary = matching_summary(matches)
    assert summary["true"] == 3 and summary["detected"] == 3
    assert (summary["matched"], summary["true_found"]) == (2, 2)
    assert (summary["false"], summary["missed"]) == (1, 1)
    assert summary["mean_abs_relative_error"]["length"] == pytest.approx((0.1 + 0.05) / 2)


def test_match_filopodia_leaves_out_the_filopodia_that_leave_the_volume():
    true, det, table, detected = _truth_and_detections()
    table["touches_border"] = [True, False, True, True]  # filopodia 3 and 4 are cut
    detected["touches_border"] = [False, False, True]  # the false detection is cut too
    matches = match_filopodia(det, detected, true, table)
    assert list(matches["status"]) == ["matched", "cut", "cut", "cut"]
    summary = matching_summary(matches)
    assert summary["true"] == 1 and summary["true_found"] == 1 and summary["matched"] == 1
    assert (summary["false"], summary["missed"], summary["cut"]) == (0, 0, 3)
    assert summary["mean_abs_relative_error"]["length"] == pytest.approx(0.1)


def test_match_filopodia_without_detections_lists_the_missed():
    true, det, table, detected = _truth_and_detections()
    matches = match_filopodia(np.zeros_like(det), detected.iloc[:0], true, table)
    assert list(matches["status"]) == ["missed"] * 3
    summary = matching_summary(matches)
    assert summary["detected"] == 0 and summary["missed"] == 3
    assert math.isnan(summary["mean_abs_relative_error"]["diameter"])
    fig = measured_vs_true_figure(matches)  # still drawable
    assert len(fig.axes) == 4
    with pytest.raises(ValueError, match="differ"):
        match_filopodia(det[:2], detected, true, table)


def test_measured_vs_true_figure_one_panel_per_quantity():
    true, det, table, detected = _truth_and_detections()
    fig = measured_vs_true_figure(match_filopodia(det, detected, true, table))
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title().startswith("length (n = 2)")
    # the points are (true, measured) of the two matched filopodia
    offsets = fig.axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(sorted(map(tuple, offsets)), [(500, 550), (800, 760)])


# --------------------------------------------------------------------------- HTML


def test_html_table_formats_and_escapes():
    table = pd.DataFrame({"name": ["<b>", "x"], "value": [1.23456, np.nan], "n": [3, 4]})
    text = html_table(table, columns={"name": "Name", "value": "V"}, formats={"value": ".2f"})
    assert "<th>Name</th>" in text and "<th>V</th>" in text and "<th>n</th>" not in text
    assert "&lt;b&gt;" in text and "<b>" not in text
    assert ">1.23<" in text and ">–<" in text
    assert "(none)" in html_table(table.iloc[:0])


def test_html_page_is_self_contained():
    page = html_page(
        "Title & more",
        [Section("Part", html_figure("fig one.png", "a caption"), "part")],
        subtitle="sub",
    )
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower() and "http" not in page
    assert 'src="fig one.png"' in page and 'href="#part"' in page
    assert "Title &amp; more" in page


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    """A randomly initialised tiny checkpoint: the pipeline must run with any model."""
    import torch

    from sxtquant.nn.checkpoint import save_checkpoint
    from sxtquant.nn.network import build_model

    torch.manual_seed(0)
    return save_checkpoint(build_model("tiny"), tmp_path_factory.mktemp("model") / "tiny")


def _pngs(report: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', report)


def test_demo_end_to_end_then_rerun_on_input(run_cli, tmp_path, random_model):
    out = tmp_path / "demo"
    result = run_cli(
        "demo", "-o", out, "--model", random_model, "--shape", "24", "96", "96", "--seed", "1"
    )
    assert result.returncode == 0, result.stderr
    for line in ("objects found", "filopodia found", "segmentation F1", "time: simulate"):
        assert line in result.stdout
    assert f"report: {out / 'report.html'}" in result.stdout
    expected = [
        "report.html",
        "summary.json",
        "overlay.png",
        "objects_3d.png",
        "filopodia.png",
        "measured_vs_true.png",
        "simulation/tomogram.mrc",
        "simulation/membranes.tif",
        "simulation/objects.tif",
        "segmentation/tomogram.probability.tif",
        "segmentation/tomogram.mask.tif",
        "segmentation/metrics.json",
        "quantification/filled.mask.tif",
        "quantification/objects.tif",
        "quantification/objects.csv",
        "quantification/filopodia.tif",
        "quantification/filopodia.csv",
        "quantification/filopodia_summary.csv",
        "quantification/filopodia_vs_truth.csv",
    ]
    for name in expected:
        assert (out / name).is_file(), name
    report = (out / "report.html").read_text(encoding="utf-8")
    pngs = _pngs(report)
    assert {"overlay.png", "objects_3d.png", "filopodia.png", "measured_vs_true.png"} <= set(pngs)
    assert all((out / p).is_file() and (out / p).stat().st_size > 1000 for p in pngs)
    for link in re.findall(r'href="([^"#]+)"', report):
        assert (out / link).exists(), link
    summary = json.loads((out / "summary.json").read_text())
    objects = pd.read_csv(out / "quantification" / "objects.csv")
    assert summary["objects"] == len(objects)
    assert summary["filopodia"]["found"] == len(pd.read_csv(out / "quantification/filopodia.csv"))
    truth = pd.read_csv(out / "simulation" / "objects.csv")
    assert summary["true_filopodia"] == int((truth["class"] == "filopodium").sum())
    assert 0.0 <= summary["segmentation"]["precision"] <= 1.0
    metrics = json.loads((out / "segmentation" / "metrics.json").read_text())
    assert summary["segmentation"]["f1"] == pytest.approx(metrics["f1"])
    # the reference run on the true membranes counts the same true filopodia
    reference = summary["filopodia_on_true_membranes"]
    assert reference["true"] == summary["filopodia_vs_truth"]["true"]
    assert "same, on true membranes" in result.stdout
    assert "as a perfect network would segment them" in report
    if summary["objects"]:
        assert (out / "meshes" / "objects.glb").is_file()
        assert (out / "meshes" / "objects.stl").is_file()

    # a rerun on a given tomogram replaces the first run's files: no simulation left
    tomogram = tmp_path / "cell.mrc"
    shutil.copy(out / "simulation" / "tomogram.mrc", tomogram)
    (out / "mine.txt").write_text("not the demo's")
    result = run_cli("demo", "-o", out, "--model", random_model, "--input", tomogram, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "segmentation F1" not in result.stdout and "objects found" in result.stdout
    assert "on true membranes" not in result.stdout
    assert not (out / "simulation").exists() and not (out / "measured_vs_true.png").exists()
    assert (out / "segmentation" / "cell.mask.tif").is_file()
    assert not (out / "segmentation" / "tomogram.mask.tif").exists()
    assert (out / "mine.txt").read_text() == "not the demo's"  # not the demo's to remove
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "measured_vs_true.png" not in report
    assert all((out / p).is_file() for p in _pngs(report))
    assert result.stderr.strip() == ""  # --quiet: no progress bars


def test_demo_bad_input_writes_nothing(run_cli, tmp_path, random_model):
    out = tmp_path / "demo"
    result = run_cli(
        "demo", "-o", out, "--input", tmp_path / "missing.mrc", "--model", random_model
    )
    assert_user_error(result, "missing.mrc")
    bad = tmp_path / "broken.mrc"
    bad.write_bytes(b"not an mrc file")
    assert_user_error(run_cli("demo", "-o", out, "--input", bad, "--model", random_model), "broken")
    assert_user_error(run_cli("demo", "-o", out, "--model", tmp_path / "no_model"), "no_model")
    assert_user_error(
        run_cli("demo", "-o", out, "--model", random_model, "--shape", "8", "64", "64"), "--shape"
    )
    assert not out.exists()


def test_demo_downstream_of_a_perfect_network_recovers_the_filopodia(
    tmp_path, monkeypatch, capsys, random_model
):
    """With the true membranes as the network's output, every simulated filopodium is
    found and measured within a few percent of its analytic geometry."""
    import sxtquant.nn.predict
    from sxtquant.cli import demo, main
    from sxtquant.core.progress import set_quiet

    sims = []
    simulate = demo._simulate

    def remember(*args, **kwargs):
        sims.append(simulate(*args, **kwargs))
        return sims[-1]

    def oracle(model, volume, **kwargs):  # a network that returns the true membranes
        return np.where(sims[-1].membranes, np.float32(0.95), np.float32(0.02))

    monkeypatch.setattr(demo, "_simulate", remember)
    monkeypatch.setattr(sxtquant.nn.predict, "predict_volume", oracle)
    out = tmp_path / "demo"
    argv = ["demo", "-o", str(out), "--model", str(random_model), "--quiet"]
    try:
        code = main([*argv, "--shape", "48", "160", "160", "--seed", "2"])
    finally:
        set_quiet(False)
    assert code == 0
    true = int((sims[0].table["class"] == "filopodium").sum())
    assert true >= 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["segmentation"]["f1"] == 1.0
    assert summary["filopodia"]["found"] == true
    m = summary["filopodia_vs_truth"]
    assert (m["true_found"], m["matched"], m["false"], m["missed"]) == (true, true, 0, 0)
    # the reference on the true membranes is then the same run, number for number
    assert summary["filopodia_on_true_membranes"] == m
    errors = m["mean_abs_relative_error"]
    assert errors["length"] < 0.05
    assert max(errors["diameter"], errors["volume"], errors["surface_area"]) < 0.1
    matches = pd.read_csv(out / "quantification" / "filopodia_vs_truth.csv")
    assert sorted(matches["true_label"]) == sorted(
        sims[0].table.loc[sims[0].table["class"] == "filopodium", "label"]
    )
    report = (out / "report.html").read_text(encoding="utf-8")
    assert f"{true} of the {true} simulated filopodia were found" in report
    assert "The segmentation is poor" not in report
    assert re.search(rf"filopodia found\s+{true} / {true} true", capsys.readouterr().out)
