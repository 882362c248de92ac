"""The evaluation harness end to end on tiny inputs (``evaluation.harness.smoke_config``).

These tests check the machinery of ``python -m evaluation``: every stage runs, every
table and figure is written and consistent with the others, the claims are scored
from the per-slice tables, the report can be rebuilt from the tables, and bad input
is refused. They assert nothing about how well the tiny networks segment: a few
training steps give numbers that depend on floating-point rounding. The paper's claims,
measured over seeds with intervals, are the evaluation suite (``make evaluate``,
``evaluation/test_harness.py``).
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
from evaluation.claims import CLAIMS, REPRODUCED, score_claims
from sxtquant.evaluate.metrics import CLASS_KEYS

ROOT = Path(__file__).resolve().parent.parent

OUTPUTS = (
    "run.json",
    "report.md",
    "per_slice_metrics.csv",
    "holdout_metrics.csv",
    "classes_per_slice.csv",
    "classes.json",
    "claims.csv",
    "model_sweep.csv",
    "speed.csv",
    "filopodia.csv",
    "filopodia_summary.csv",
    "filopodia_errors.csv",
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    record = harness.run(harness.smoke_config(), out, quiet=True)
    return out, record


def test_every_output_is_written_and_labelled_simulated(smoke):
    out, record = smoke
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
    for section in ("Claims", "(a)", "(b)", "(c)", "(d)", "(e)", "(f)"):
        assert f"## {section}" in report, section


def test_every_method_is_scored_for_every_seed_on_every_test_slice(smoke):
    out, record = smoke
    seeds = tuple(record["config"]["seeds"])
    bench = record["config"]["benchmark"]
    slices = bench["n_test"] * bench["shape"][0]
    per_slice = pd.read_csv(out / "per_slice_metrics.csv")
    for method in harness.METHODS:
        mine = per_slice[per_slice["method"] == method]
        expected = (seeds[0],) if method == "otsu" else seeds
        assert tuple(sorted(set(mine["seed"]))) == expected, method
        assert len(mine) == slices * len(expected), method
        assert not mine.duplicated(["seed", "tomogram", "z"]).any(), method


def test_holdout_rows_are_the_pooled_per_slice_counts(smoke):
    out, record = smoke
    holdout = pd.read_csv(out / "holdout_metrics.csv")
    per_slice = pd.read_csv(out / "per_slice_metrics.csv")
    shape = record["config"]["benchmark"]["shape"]
    pixels = record["config"]["benchmark"]["n_test"] * math.prod(shape)
    assert list(dict.fromkeys(holdout["method"])) == list(harness.METHODS)
    for row in holdout.to_dict("records"):
        mine = per_slice[
            (per_slice["method"] == row["method"]) & (per_slice["seed"] == row["seed"])
        ]
        for key in ("tp", "fp", "fn", "tn"):
            assert row[key] == mine[key].sum(), (row["method"], row["seed"], key)
        assert row["tp"] + row["fp"] + row["fn"] + row["tn"] == pixels
        assert row["accuracy"] == pytest.approx((row["tp"] + row["tn"]) / pixels)


def test_test_conditions_lie_outside_the_training_ranges(smoke):
    from sxtquant.simulate.conditions import TRAINING_RANGES

    _, record = smoke
    for conditions in record["test_conditions"]:
        acq = conditions["acquisition"]
        for key in ("tilt_max_deg", "blur_fwhm_nm", "dose"):
            lo, hi = TRAINING_RANGES[key]
            assert not lo <= acq[key] <= hi, (key, acq[key])


def test_expert_classes_add_up_and_their_summary_matches(smoke):
    out, _ = smoke
    classes = pd.read_csv(out / "classes_per_slice.csv")
    np.testing.assert_allclose(classes[list(CLASS_KEYS)].sum(axis=1), 100.0, atol=1e-9)
    blocks = json.loads((out / "classes.json").read_text())
    for method in set(classes["method"]):
        mine = classes[classes["method"] == method]
        assert blocks["methods"][method]["n_slices"] == len(mine)
        for key in CLASS_KEYS:
            assert blocks["methods"][method]["mean"][key] == pytest.approx(mine[key].mean())


def test_claims_table_is_scored_from_the_per_slice_tables(smoke):
    out, _ = smoke
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims["claim"]) == [c.key for c in CLAIMS]
    again = score_claims(
        pd.read_csv(out / "per_slice_metrics.csv"), pd.read_csv(out / "classes_per_slice.csv")
    )
    for column in ("difference", "ci_low", "ci_high", "better_value", "worse_value"):
        np.testing.assert_allclose(claims[column], again[column], rtol=1e-12, err_msg=column)
    assert (claims["n_seeds"] == 2).all()
    assert (claims["ci_low"] <= claims["ci_high"]).all()
    assert ((claims["ci_low"] > 0) == (claims["verdict"] == REPRODUCED)).all()
    report = (out / "report.md").read_text()
    for row in claims.to_dict("records"):
        assert row["text"] in report and row["verdict"] in report


def test_model_sweep_lists_every_preset(smoke):
    out, _ = smoke
    sweep = pd.read_csv(out / "model_sweep.csv").set_index("preset")
    assert list(sweep.index) == list(harness.PRESETS)
    assert sweep.loc["paper", "parameters"] == 76_483_502
    assert sweep["parameters"].is_monotonic_increasing
    assert sweep.loc["tiny", "status"] == "run"
    for preset, row in sweep.iterrows():
        if row["status"] != "run":
            assert isinstance(row["reason"], str) and row["reason"], preset


def test_speed_is_measured_and_extrapolated(smoke):
    out, _ = smoke
    speed = pd.read_csv(out / "speed.csv")
    assert set(speed["preset"]) == {"tiny"}
    for _, row in speed.iterrows():
        assert row["seconds"] > 0 and row["hardware"]
        throughput = row["slices_timed"] * row["slice_height"] * row["slice_width"] / row["seconds"]
        assert row["paper_volume_seconds"] == pytest.approx(350 * 1324 * 1284 / throughput)


def test_filopodia_are_measured_beside_their_analytic_truth(smoke):
    out, _ = smoke
    filo = pd.read_csv(out / "filopodia.csv")
    assert len(filo) >= 1
    found = filo[filo["detected"].astype(bool)]
    summary = pd.read_csv(out / "filopodia_summary.csv").set_index("column")
    assert summary.loc["surface_to_volume_per_um", "paper_mean"] == pytest.approx(30.2)
    assert summary.loc["surface_to_volume_per_um", "n"] == len(found)
    errors = pd.read_csv(out / "filopodia_errors.csv")
    assert set(errors["n"]) == {len(found)}


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


def test_report_is_rebuilt_from_the_tables(smoke, tmp_path):
    out, _ = smoke
    copy = tmp_path / "results"
    copy.mkdir()
    for name in OUTPUTS:
        if name != "report.md":
            (copy / name).write_bytes((out / name).read_bytes())
    result = _evaluation_cli("report", "--out", str(copy))
    assert result.returncode == 0, result.stderr
    assert (copy / "report.md").read_text() == (out / "report.md").read_text()


def test_figures_are_drawn_from_the_outputs(smoke, tmp_path):
    from paper_figures.__main__ import main

    out, _ = smoke
    assert main(["--results", str(out), "--out", str(tmp_path)]) == 0
    for stem in ("fig2a", "fig2e", "fig3b", "figs7a"):
        for suffix in ("png", "pdf"):
            assert (tmp_path / f"{stem}.{suffix}").stat().st_size > 1000


def _assert_refused(result: subprocess.CompletedProcess, out: Path, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "error" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    assert not (out / "report.md").exists()


def test_cli_rejects_a_missing_data_folder(tmp_path):
    result = _evaluation_cli("run", "--data", str(tmp_path / "absent"), "--out", str(tmp_path))
    _assert_refused(result, tmp_path, "absent")


def test_cli_sweep_takes_known_presets_once_in_order(tmp_path):
    from evaluation.__main__ import _parser

    args = _parser().parse_args(["run", "--quick", "--sweep", "small, tiny,small"])
    assert args.sweep == ("small", "tiny")
    result = _evaluation_cli("run", "--quick", "--sweep", "tiny,huge", "--out", str(tmp_path))
    _assert_refused(result, tmp_path, "--sweep", "tiny,huge")


@pytest.mark.parametrize("text", ["", "0,0", "1,x", "-1"])
def test_cli_seeds_must_be_distinct_non_negative_integers(tmp_path, text):
    result = _evaluation_cli("run", "--quick", "--seeds", text, "--out", str(tmp_path))
    _assert_refused(result, tmp_path, "--seeds")


def test_cli_seeds_reach_the_config():
    from evaluation.__main__ import _parser

    assert _parser().parse_args(["run", "--seeds", "3, 1,4"]).seeds == (3, 1, 4)
    assert harness.quick_config().seeds == (0, 1, 2)
    with pytest.raises(ValueError, match="distinct"):
        harness.quick_config(seeds=(1, 1))
