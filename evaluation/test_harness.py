"""The evaluation suite: the quick harness on the simulated benchmark, with stated thresholds.

One session-scoped quick run (``conftest.quick_run``: tiny preset, small simulated
tomograms, a short training on 2 torch threads) feeds every test. Thresholds are
stated here, beside the paper's numbers, and in ``docs/evaluation.md``; none of
them is a check that cannot fail.

Real-data tests run the harness on the paper's data when it is present (see
``sxtquant fetch refubium-37222``) and are skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation import harness
from sxtquant.evaluate.metrics import CLASS_KEYS

ROOT = Path(__file__).resolve().parent.parent

# ---- thresholds of the quick run (simulated data, tiny preset; see docs/evaluation.md)
MIN_F1_MARGIN_OVER_BASELINES = 0.0  # the network's pooled F1 must exceed each baseline's
MIN_NETWORK_ACCURACY = 0.90  # pooled pixel accuracy (paper, real data: 97 %)
MIN_NETWORK_F1 = 0.30  # pooled F1 of the semi-supervised network
MIN_IMAGE_ACCURACY = 0.80  # image head (paper: > 80 %)
MAX_FILOPODIA_VOLUME_ERROR = 0.05  # |measured / analytic - 1| of every filopodium
MAX_FILOPODIA_LENGTH_ERROR = 0.10
MAX_FILOPODIA_SAV_ERROR = 0.10
MIN_FILOPODIA_FOUND = 0.8  # fraction of simulated filopodia found by analyze()

OUTPUTS = (
    "run.json",
    "report.md",
    "per_slice_metrics.csv",
    "holdout_metrics.csv",
    "classes_per_slice.csv",
    "classes.json",
    "model_sweep.csv",
    "speed.csv",
    "filopodia.csv",
    "filopodia_summary.csv",
    "filopodia_errors.csv",
)


def _holdout(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "holdout_metrics.csv").set_index("method")


# --------------------------------------------------------------------------- outputs


def test_every_output_is_written_and_labelled_simulated(quick_run):
    out, record = quick_run
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert record["data"] == "simulated"
    for name in OUTPUTS:
        if name.endswith(".csv"):
            table = pd.read_csv(out / name)
            if "data" in table:
                assert set(table["data"]) == {"simulated"}, name
    report = (out / "report.md").read_text()
    assert "data: **simulated**" in report
    for section in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)"):
        assert f"## {section}" in report
    print(f"\nquick harness wall time: {record['timings_seconds']['total']:.0f} s")


def test_test_conditions_were_never_trained_on(quick_run):
    from sxtquant.simulate.conditions import TRAINING_RANGES

    _, record = quick_run
    for conditions in record["test_conditions"]:
        acq = conditions["acquisition"]
        for key in ("tilt_max_deg", "blur_fwhm_nm", "dose"):
            lo, hi = TRAINING_RANGES[key]
            assert not lo <= acq[key] <= hi, (key, acq[key])


# --------------------------------------------------------------------------- (a)


def test_semi_supervised_beats_supervised_only(quick_run):
    """Fig. 2A: the median per-slice precision is higher with semi-supervision."""
    out, record = quick_run
    gain = record["semi_vs_supervised"]["precision"]
    per_slice = pd.read_csv(out / "per_slice_metrics.csv")
    semi = per_slice[per_slice["method"] == "semi-supervised"]
    sup = per_slice[per_slice["method"] == "supervised-only"]
    assert len(semi) == len(sup) > 0
    assert np.nanmedian(semi["precision"]) == pytest.approx(gain["median_semi_supervised"])
    print(
        f"\nmedian precision: semi {gain['median_semi_supervised']:.3f}, "
        f"supervised-only {gain['median_supervised_only']:.3f} "
        f"({gain['gain_points']:+.1f} points; paper: >= 14 % higher)"
    )
    assert gain["median_semi_supervised"] > gain["median_supervised_only"]


# --------------------------------------------------------------------------- (b)


def test_network_beats_both_baselines(quick_run):
    out, _ = quick_run
    holdout = _holdout(out)
    net = holdout.loc["semi-supervised", "f1"]
    print("\n" + holdout[["accuracy", "precision", "recall", "f1", "image_accuracy"]].to_string())
    for baseline in harness.BASELINE_METHODS:
        assert net > holdout.loc[baseline, "f1"] + MIN_F1_MARGIN_OVER_BASELINES, baseline


def test_holdout_accuracy_and_image_accuracy_above_thresholds(quick_run):
    out, _ = quick_run
    net = _holdout(out).loc["semi-supervised"]
    assert net["accuracy"] > MIN_NETWORK_ACCURACY
    assert net["image_accuracy"] > MIN_IMAGE_ACCURACY


def test_holdout_f1_above_threshold(quick_run):
    out, _ = quick_run
    assert _holdout(out).loc["semi-supervised", "f1"] > MIN_NETWORK_F1


def test_holdout_counts_are_consistent(quick_run):
    out, record = quick_run
    holdout = _holdout(out)
    shape = record["config"]["benchmark"]["shape"]
    n_test = record["config"]["benchmark"]["n_test"]
    pixels = n_test * math.prod(shape)
    for method, row in holdout.iterrows():
        assert row["tp"] + row["fp"] + row["fn"] + row["tn"] == pixels, method
        assert row["accuracy"] == pytest.approx((row["tp"] + row["tn"]) / pixels)


# --------------------------------------------------------------------------- (c)


def test_expert_classes_add_up_and_use_the_artifact_mask(quick_run):
    out, _ = quick_run
    classes = pd.read_csv(out / "classes_per_slice.csv")
    np.testing.assert_allclose(classes[list(CLASS_KEYS)].sum(axis=1), 100.0, atol=1e-9)
    blocks = json.loads((out / "classes.json").read_text())
    for method in harness.METHODS:
        mine = classes[classes["method"] == method]
        for key in CLASS_KEYS:
            assert blocks["methods"][method]["mean"][key] == pytest.approx(mine[key].mean())
    # the simulated test tomograms have gold fiducials: some false positives fall there
    assert classes["artifact"].max() > 0


# --------------------------------------------------------------------------- (d), (e)


def test_model_sweep_lists_every_preset(quick_run):
    out, _ = quick_run
    sweep = pd.read_csv(out / "model_sweep.csv").set_index("preset")
    assert list(sweep.index) == list(harness.PRESETS)
    assert sweep.loc["paper", "parameters"] == 76_483_502
    assert sweep["parameters"].is_monotonic_increasing
    assert sweep.loc["tiny", "status"] == "run"
    assert np.isfinite(sweep.loc["tiny", "f1"])
    for preset, row in sweep.iterrows():
        if row["status"] != "run":
            assert isinstance(row["reason"], str) and row["reason"], preset


def test_speed_is_measured_and_extrapolated(quick_run):
    out, _ = quick_run
    speed = pd.read_csv(out / "speed.csv")
    assert "tiny" in set(speed["preset"])
    for _, row in speed.iterrows():
        assert row["seconds"] > 0 and row["hardware"]
        throughput = row["slices_timed"] * row["slice_height"] * row["slice_width"] / row["seconds"]
        assert row["paper_volume_seconds"] == pytest.approx(350 * 1324 * 1284 / throughput)


# --------------------------------------------------------------------------- (f)


def test_filopodia_measured_against_analytic_truth(quick_run):
    out, _ = quick_run
    filo = pd.read_csv(out / "filopodia.csv")
    assert len(filo) >= 10
    found = filo[filo["detected"].astype(bool)]
    assert len(found) >= MIN_FILOPODIA_FOUND * len(filo)
    volume = found["volume_nm3"] / found["true_volume_nm3"] - 1
    length = found["length_nm"] / found["true_length_nm"] - 1
    sav = found["surface_to_volume_per_um"] / found["true_surface_to_volume_per_um"] - 1
    print(
        f"\nfilopodia: {len(found)}/{len(filo)} found; max |error| volume "
        f"{volume.abs().max():.3f}, length {length.abs().max():.3f}, SA:V {sav.abs().max():.3f}"
    )
    assert volume.abs().max() < MAX_FILOPODIA_VOLUME_ERROR
    assert length.abs().max() < MAX_FILOPODIA_LENGTH_ERROR
    assert sav.abs().max() < MAX_FILOPODIA_SAV_ERROR
    summary = pd.read_csv(out / "filopodia_summary.csv").set_index("column")
    assert summary.loc["surface_to_volume_per_um", "paper_mean"] == pytest.approx(30.2)
    assert summary.loc["surface_to_volume_per_um", "n"] == len(found)


# --------------------------------------------------------------------------- CLI


def _evaluation_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "evaluation", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def test_report_is_rebuilt_from_the_tables(quick_run, tmp_path):
    out, _ = quick_run
    copy = tmp_path / "results"
    copy.mkdir()
    for name in OUTPUTS:
        if name != "report.md":
            (copy / name).write_bytes((out / name).read_bytes())
    result = _evaluation_cli("report", "--out", str(copy))
    assert result.returncode == 0, result.stderr
    assert (copy / "report.md").read_text() == (out / "report.md").read_text()


def test_cli_rejects_a_missing_data_folder(tmp_path):
    result = _evaluation_cli("run", "--data", str(tmp_path / "absent"), "--out", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "absent" in result.stderr and "error" in result.stderr
    assert not (tmp_path / "report.md").exists()


def test_cli_sweep_takes_known_presets_once_in_order(tmp_path):
    from evaluation.__main__ import _parser

    args = _parser().parse_args(["run", "--quick", "--sweep", "small, tiny,small"])
    assert args.sweep == ("small", "tiny")
    result = _evaluation_cli("run", "--quick", "--sweep", "tiny,huge", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--sweep" in result.stderr and "tiny,huge" in result.stderr
    assert not (tmp_path / "report.md").exists()


def test_figures_are_drawn_from_the_outputs(quick_run, tmp_path):
    from paper_figures.__main__ import main

    out, _ = quick_run
    assert main(["--results", str(out), "--out", str(tmp_path)]) == 0
    for stem in ("fig2a", "fig2e", "fig3b", "figs7a"):
        for suffix in ("png", "pdf"):
            assert (tmp_path / f"{stem}.{suffix}").stat().st_size > 1000


# --------------------------------------------------------------------------- real data


def _real_data() -> Path | None:
    from evaluation.__main__ import _real_data_folder

    return _real_data_folder()


@pytest.mark.slow
def test_real_data_holdout(tmp_path_factory):
    folder = _real_data()
    if folder is None:
        from sxtquant.io.fetch import data_dir

        pytest.skip(
            "the paper's data (refubium-37222, doi 10.17169/refubium-37222) is not present "
            f"in the training layout under {data_dir()}/refubium-37222 "
            "(labeled/images, labeled/labels, unlabeled/images); see `sxtquant fetch "
            "refubium-37222`"
        )
    out = tmp_path_factory.mktemp("real")
    config = harness.quick_config("tiny", threads=2, device="cpu")
    record = harness.run(config, out, data=folder, quiet=True)
    assert record["data"] == "real"
    holdout = _holdout(out)
    for baseline in harness.BASELINE_METHODS:
        assert holdout.loc["semi-supervised", "f1"] > holdout.loc[baseline, "f1"]
