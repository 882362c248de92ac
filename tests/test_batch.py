"""Batches of tomograms (sxtquant.scale.batch): inputs, schedulers, a LocalCluster of 2 worker
processes giving the in-process results, failures reported, killed workers retried,
reruns that skip what is up to date."""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sxtquant import io, scale
from sxtquant.core.errors import InputError
from sxtquant.quantify.morphology import COLUMNS
from sxtquant.scale.measurement import QuantifySpec, quantify_job
from sxtquant.scale.segmentation import SegmentSpec, segment_file
from tests.conftest import assert_user_error

distributed = pytest.importorskip("distributed")

STEMS = ("t1", "t2", "t3")
VOXEL = 9.8


# --------------------------------------------------------------------------- inputs


def test_expand_inputs(tmp_path):
    folder = tmp_path / "session"
    for name in ("t10.mrc", "t2.mrc", "t1.probability.tif", "t1.mask.tif"):
        io.write_volume(folder / name, np.zeros((2, 4, 4), np.uint8), 10.0)
    io.write_volume(folder / "t3.ome.zarr", np.zeros((2, 4, 4), np.uint8), 10.0)
    (folder / "notes.txt").write_text("not a volume")
    (folder / ".t4.mrc.partial-1").write_text("unfinished")
    slices = tmp_path / "slices"  # a folder of 2D TIFF slices is one volume
    for z in range(3):
        io.write_volume(slices / f"s{z}.tif", np.zeros((1, 4, 4), np.uint8))

    found = scale.expand_inputs([folder])
    assert [p.name for p in found.paths] == [
        "t1.mask.tif", "t1.probability.tif", "t2.mrc", "t3.ome.zarr", "t10.mrc",
    ]  # fmt: skip
    assert found.expanded and found.collection
    masks = scale.expand_inputs([folder], skip=(".probability",))
    assert "t1.probability.tif" not in [p.name for p in masks.paths]
    pattern = scale.expand_inputs([str(folder / "t*.mrc"), folder / "t2.mrc"])
    assert [p.name for p in pattern.paths] == ["t2.mrc", "t10.mrc"]  # no duplicate
    one = scale.expand_inputs([folder / "t2.mrc"])
    assert one.paths == (folder / "t2.mrc",) and not one.collection
    assert scale.expand_inputs([slices]).paths == (slices,)
    assert scale.expand_inputs([folder / "t3.ome.zarr"]).paths == (folder / "t3.ome.zarr",)
    with pytest.raises(InputError, match="no such file"):
        scale.expand_inputs([folder / "absent.mrc"])
    with pytest.raises(InputError, match="matches no volume"):
        scale.expand_inputs([str(folder / "*.rec")])


@pytest.mark.parametrize(
    ("text", "kind", "workers", "address"),
    [
        (None, "in-process", None, None),
        ("in-process", "in-process", None, None),
        ("local", "local", None, None),
        ("local:3", "local", 3, None),
        ("tcp://10.1.2.3:8786", "address", None, "tcp://10.1.2.3:8786"),
        ("tls://scheduler.example.org:8786", "address", None, "tls://scheduler.example.org:8786"),
    ],
)
def test_parse_scheduler(text, kind, workers, address):
    spec = scale.parse_scheduler(text)
    assert (spec.kind, spec.workers, spec.address) == (kind, workers, address)


@pytest.mark.parametrize("text", ["local:0", "locale", "tcp://host", "10.0.0.1:8786", "x.json"])
def test_bad_scheduler_is_refused(text):
    with pytest.raises(InputError, match="--scheduler"):
        scale.parse_scheduler(text)


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Three simulated tomograms (8 x 96 x 96, 9.8 nm) and a corrupt file, in one folder."""
    from sxtquant.simulate.tomogram import simulate_tomogram
    from sxtquant.simulate.tomography import Acquisition

    folder = tmp_path_factory.mktemp("session")
    sim = simulate_tomogram((24, 96, 96), VOXEL, seed=5, acquisition=Acquisition(sirt_iterations=4))
    for i, stem in enumerate(STEMS):
        io.write_volume(folder / f"{stem}.mrc", sim.tomogram[8 * i : 8 * i + 8], VOXEL)
    (folder / "corrupt.mrc").write_bytes(b"\x01this is no MRC file" * 20)
    return folder


@pytest.fixture(scope="module")
def spec(inputs):
    """The shipped model, with a threshold that puts about 10 % of t1 in the mask whatever
    that model makes of these small simulations: masks worth comparing."""
    from sxtquant.nn.predict import predict_slices
    from sxtquant.scale.blocks import cached_model

    probability = predict_slices(cached_model("default"), io.read_volume(inputs / "t1.mrc").data)
    threshold = round(float(np.quantile(probability, 0.9)), 4)
    identity = scale.model_identity("default")
    return SegmentSpec(model="default", model_identity=identity, threshold=threshold)


def segment_jobs(folder: Path, out: Path, spec, names=STEMS, func=segment_file, extra=()):
    return [
        scale.Job(str(folder / f"{n}.mrc"), func, (*extra, folder / f"{n}.mrc", out, spec))
        for n in names
    ]


@pytest.fixture(scope="module")
def reference(inputs, spec, tmp_path_factory):
    """The in-process run: segment the three tomograms, then quantify their masks."""
    out = tmp_path_factory.mktemp("in_process")
    outcomes = scale.run_jobs(segment_jobs(inputs, out, spec), echo=False)
    assert [o.status for o in outcomes] == ["ok"] * 3
    masks = [out / f"{n}.mask.tif" for n in STEMS]
    tables = scale.run_jobs([scale.Job(str(m), quantify_job, (m, QuantifySpec())) for m in masks])
    table = pd.concat([o.result.value["table"] for o in tables], ignore_index=True)
    return out, table


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


def assert_same_outputs(out: Path, expected: Path, names=STEMS) -> None:
    for stem in names:
        for kind in ("probability", "mask"):
            got = io.read_volume(out / f"{stem}.{kind}.tif")
            want = io.read_volume(expected / f"{stem}.{kind}.tif")
            np.testing.assert_array_equal(got.data, want.data)
            assert got.voxel_size_nm == pytest.approx(want.voxel_size_nm)


@pytest.fixture(scope="module")
def cluster_run(inputs, spec, client, tmp_path_factory):
    """The three tomograms and the corrupt file segmented on the cluster."""
    out = tmp_path_factory.mktemp("cluster")
    jobs = segment_jobs(inputs, out, spec, names=("t1", "corrupt", "t2", "t3"))
    return out, scale.run_jobs(jobs, client, echo=False)


# --------------------------------------------------------------------------- on a cluster


def test_cluster_gives_the_in_process_results(cluster_run, reference, client):
    out, outcomes = cluster_run
    ref_out, ref_table = reference
    assert [o.status for o in outcomes] == ["ok", "failed", "ok", "ok"]
    assert_same_outputs(out, ref_out)
    mask = np.asarray(io.read_volume(out / "t2.mask.tif").data)
    assert 0.01 < (mask == 255).mean() < 0.5  # there is something to compare

    masks = [out / f"{n}.mask.tif" for n in STEMS]
    jobs = [scale.Job(str(m), quantify_job, (m, QuantifySpec())) for m in masks]
    tables = scale.run_jobs(jobs, client, echo=False)
    table = pd.concat([o.result.value["table"] for o in tables], ignore_index=True)
    assert list(table.columns) == ["tomogram", *COLUMNS, *batch_columns()]
    assert sorted(set(table["tomogram"])) == list(STEMS)
    pd.testing.assert_frame_equal(
        table.drop(columns="source"), ref_table.drop(columns="source"), check_exact=True
    )


def batch_columns():
    from sxtquant.cli.quantify import TIDY_COLUMNS

    return TIDY_COLUMNS


def test_a_corrupt_file_is_reported_and_the_others_complete(cluster_run, tmp_path, capsys):
    out, outcomes = cluster_run
    failed = outcomes[1]
    assert failed.input.endswith("corrupt.mrc") and failed.status == "failed"
    assert "corrupt.mrc" in failed.error and "cannot read as mrc" in failed.error
    for stem in STEMS:
        assert (out / f"{stem}.mask.tif").is_file() and (out / f"{stem}.sxtquant.json").is_file()
    assert not (out / "corrupt.mask.tif").exists()

    code = scale.report(outcomes, tmp_path / scale.SUMMARY_FILE)
    assert code == 1
    summary = pd.read_csv(tmp_path / scale.SUMMARY_FILE)
    assert list(summary.columns) == ["input", "status", "error", "seconds"]
    assert summary["status"].tolist() == ["ok", "failed", "ok", "ok"]
    assert (summary["seconds"] >= 0).all()
    printed = capsys.readouterr()
    assert "3 ok, 0 skipped (up to date), 1 failed" in printed.out
    assert "1 of 4 inputs failed" in printed.err


def _segment_or_die(marker: Path, *args, **kwargs):
    """Kill the worker process the first time (as the OOM killer would), then work."""
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return segment_file(*args, **kwargs)


def test_a_killed_worker_still_gives_complete_results(inputs, spec, client, reference, tmp_path):
    marker = tmp_path / "killed-once"
    jobs = segment_jobs(inputs, tmp_path, spec, func=_segment_or_die, extra=(marker,))
    outcomes = scale.run_jobs(jobs, client, echo=False)
    assert marker.exists()  # a worker did die
    assert [o.status for o in outcomes] == ["ok"] * 3
    assert_same_outputs(tmp_path, reference[0])


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_rerun_skips_what_is_up_to_date_and_redoes_the_rest(
    inputs, spec, cluster_run, client, tmp_path
):
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(inputs, src)
    shutil.copytree(cluster_run[0], out)  # records name outputs relative to their folder
    before = _mtimes(out)
    outcomes = scale.run_jobs(segment_jobs(src, out, spec), client, echo=False)
    assert [o.status for o in outcomes] == ["skipped"] * 3
    assert _mtimes(out) == before  # nothing written, not even the records

    # a changed input, a missing output, other options: redone; the rest skipped
    io.write_volume(src / "t2.mrc", np.asarray(io.read_volume(src / "t1.mrc").data), VOXEL)
    (out / "t3.mask.tif").unlink()
    outcomes = scale.run_jobs(segment_jobs(src, out, spec), client, echo=False)
    assert [o.status for o in outcomes] == ["skipped", "ok", "ok"]
    after = _mtimes(out)
    assert after["t1.mask.tif"] == before["t1.mask.tif"]
    assert after["t2.mask.tif"] != before["t2.mask.tif"]
    redone = np.asarray(io.read_volume(out / "t2.probability.tif").data)
    first = np.asarray(io.read_volume(cluster_run[0] / "t1.probability.tif").data)
    np.testing.assert_array_equal(redone, first)  # t2 now holds t1's tomogram
    stricter = SegmentSpec(**{**spec.__dict__, "threshold": 0.95})
    outcomes = scale.run_jobs(segment_jobs(src, out, stricter, names=("t1",)), echo=False)
    assert outcomes[0].status == "ok"


# --------------------------------------------------------------------------- command line


def test_cli_batch_on_a_local_cluster(run_cli, inputs, spec, reference, tmp_path):
    out = tmp_path / "seg"
    threshold = str(spec.threshold)
    result = run_cli(
        "segment", inputs, "-o", out, "--scheduler", "local:2", "--threshold", threshold, "--quiet"
    )
    assert result.returncode == 1, result.stderr  # the corrupt file failed
    assert "1 of 4 inputs failed" in result.stderr and "Traceback" not in result.stderr
    summary = pd.read_csv(out / scale.SUMMARY_FILE)
    names = summary["input"].map(lambda p: Path(p).name)
    statuses = dict(zip(names, summary["status"], strict=True))
    assert statuses == {"corrupt.mrc": "failed", "t1.mrc": "ok", "t2.mrc": "ok", "t3.mrc": "ok"}
    assert_same_outputs(out, reference[0])

    # one tidy table of every mask in the folder (the probabilities are left out; the
    # reference measures the masks themselves, so the region files beside them are not used)
    table_path = tmp_path / "objects.csv"
    result = run_cli("quantify", out, "-o", table_path, "--quiet", "--no-regions")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(table_path)
    parquet = pd.read_parquet(tmp_path / "objects.parquet")
    pd.testing.assert_frame_equal(parquet, table, check_exact=False, rtol=1e-12)
    assert list(table.columns) == ["tomogram", *COLUMNS, *batch_columns()]
    expected = reference[1].drop(columns="source").reset_index(drop=True)
    pd.testing.assert_frame_equal(table.drop(columns="source"), expected, rtol=1e-12)
    np.testing.assert_allclose(table[list(batch_columns()[:3])], VOXEL)
    summary = pd.read_csv(tmp_path / "objects.batch_summary.csv")
    assert summary["status"].tolist() == ["ok"] * 3

    # nothing changed: the rerun does nothing
    before = _mtimes(tmp_path)
    result = run_cli("quantify", out, "-o", table_path, "--quiet", "--no-regions")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    after = _mtimes(tmp_path)
    assert after["objects.csv"] == before["objects.csv"]
    assert after["objects.parquet"] == before["objects.parquet"]


def test_cli_single_mask_table_is_unchanged(run_cli, reference, tmp_path):
    result = run_cli("quantify", reference[0] / "t1.mask.tif", "-o", tmp_path / "t1.csv")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "t1.csv")
    assert list(table.columns) == list(COLUMNS)  # no tomogram column, no parquet
    assert not (tmp_path / "t1.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.csv"]


@pytest.mark.parametrize("verb", ["segment", "quantify"])
@pytest.mark.parametrize(
    ("option", "value"),
    [("--scheduler", "bogus"), ("--scheduler", "local:0"), ("--block-slices", "0"),
     ("--retries", "-1")],
)  # fmt: skip
def test_cli_bad_batch_options_exit_2(run_cli, inputs, tmp_path, verb, option, value):
    out = tmp_path / ("out" if verb == "segment" else "t.csv")
    result = run_cli(verb, inputs / "t1.mrc", "-o", out, option, value)
    assert_user_error(result, option)
    assert not out.exists()
