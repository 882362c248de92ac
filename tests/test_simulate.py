"""The cryo-SXT simulator: phantom geometry, forward model, reconstruction, CLI contract."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage

from sxtquant import simulate as sim
from sxtquant.io.volumes import read_volume
from sxtquant.simulate.tomography import _Projector
from tests.conftest import assert_user_error

VOXEL = 9.8
KNOWN_CLASSES = set(sim.CLASSES)


def _voxel_volumes(phantom: sim.Phantom) -> dict[int, float]:
    """Voxel volume (nm³) of each object's closed surface: its label plus its descendants."""
    table = phantom.table
    counts = np.bincount(phantom.objects.ravel(), minlength=int(table["label"].max()) + 1)
    total: dict[int, int] = {}
    # parents have smaller labels than their children: accumulate from the last label
    for row in table.sort_values("label", ascending=False).itertuples():
        children = table.loc[table["parent"] == row.label, "label"]
        total[row.label] = counts[row.label] + sum(total[c] for c in children)
    return {k: n * VOXEL**3 for k, n in total.items()}


@pytest.fixture(scope="module")
def phantom() -> sim.Phantom:
    return sim.make_phantom((64, 192, 192), VOXEL, seed=7)


def test_phantom_is_deterministic():
    a = sim.make_phantom((24, 80, 80), VOXEL, seed=3)
    b = sim.make_phantom((24, 80, 80), VOXEL, seed=3)
    c = sim.make_phantom((24, 80, 80), VOXEL, seed=4)
    np.testing.assert_array_equal(a.lac, b.lac)
    np.testing.assert_array_equal(a.objects, b.objects)
    np.testing.assert_array_equal(a.membranes, b.membranes)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert not np.array_equal(a.lac, c.lac)


def test_simulation_is_deterministic():
    acq = sim.Acquisition(sirt_iterations=4)
    a = sim.simulate_tomogram((24, 48, 48), VOXEL, seed=11, acquisition=acq)
    b = sim.simulate_tomogram((24, 48, 48), VOXEL, seed=11, acquisition=acq)
    np.testing.assert_array_equal(a.tomogram, b.tomogram)
    np.testing.assert_array_equal(a.artifacts, b.artifacts)
    assert a.tomogram.dtype == np.float32 and a.tomogram.shape == (24, 48, 48)


def test_phantom_contents(phantom):
    table = phantom.table
    assert list(table.columns[:2]) == ["label", "class"]
    assert set(table["class"]) <= KNOWN_CLASSES
    for cls in ("plasma_membrane", "filopodium", "mitochondrion", "vesicle", "fiducial"):
        assert (table["class"] == cls).any(), cls
    labels = set(np.unique(phantom.objects)) - {0}
    assert labels == set(table["label"])
    assert phantom.lac.dtype == np.float32 and phantom.objects.dtype == np.uint16
    # gold is the densest material, ice the lightest
    gold = np.isin(phantom.objects, table.loc[table["class"] == "fiducial", "label"])
    assert phantom.lac[gold].mean() > 5
    assert phantom.lac[phantom.objects == 0].min() >= sim.LAC_PER_UM["ice"] - 1e-6


def test_voxel_volume_matches_analytic_volume(phantom):
    table = phantom.table
    measured = _voxel_volumes(phantom)
    smallest = table[["radius_nm", "semi_axis_c_nm"]].min(axis=1)
    checked = 0
    for row, r_min in zip(table.itertuples(), smallest, strict=True):
        if r_min < 5 * VOXEL:
            continue
        rel = measured[row.label] / row.volume_nm3 - 1
        assert abs(rel) < 0.03, (row.label, row[2], rel)
        checked += 1
    assert checked >= 10


def test_filopodia_geometry(phantom):
    filo = phantom.table[phantom.table["class"] == "filopodium"]
    assert len(filo) >= 2
    assert filo["diameter_nm"].between(80, 180).all()
    assert (filo["length_nm"] >= 300).all() and (filo["length_nm"] <= 2000 + 180).all()
    for col in ("radius_nm", "volume_nm3", "surface_area_nm2", "centre_x_nm", "orientation_z"):
        assert filo[col].notna().all(), col
    # each filopodium is one connected piece that touches the cell body
    cell = phantom.table.loc[phantom.table["class"] == "plasma_membrane", "label"].iloc[0]
    body = ndimage.binary_dilation(phantom.objects == cell)
    for label in filo["label"]:
        mask = phantom.objects == label
        assert ndimage.label(mask)[1] == 1
        assert (mask & body).any()


def test_membranes_on_every_membranous_class(phantom):
    table = phantom.table
    for cls, rows in table.groupby("class"):
        mask = np.isin(phantom.objects, rows["label"])
        near = ndimage.binary_dilation(mask, iterations=1) & phantom.membranes
        if cls == "fiducial":  # gold beads are not membranes
            assert not (mask & phantom.membranes).any()
        else:
            assert near.any(), cls
    # shells are thin: the membranes cover a small fraction of the cell
    assert 0 < phantom.membranes.mean() < 0.2


def test_projector_matches_skimage_radon():
    from skimage.transform import radon

    n = 64
    yy, xx = np.mgrid[:n, :n]
    image = ((yy - 20) ** 2 + (xx - 40) ** 2 < 64).astype(np.float32)
    image[30:40, 10:20] = 0.5
    angles = np.arange(-60.0, 61.0, 10.0)
    ours = _Projector(n, n, n, angles).forward(image.reshape(-1, 1)).reshape(len(angles), n)
    ref = radon(image, angles, circle=False)
    off = (ref.shape[0] - n) // 2
    ref = ref[off : off + n].T
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(ours.sum(axis=1), ref.sum(axis=1), rtol=0.02)


def _sphere_elongation(tilt_max: float) -> float:
    """Ratio of the z to the x extent (second moments) of a reconstructed ball."""
    Z, Y, X = 48, 8, 64
    z, y, x = np.mgrid[:Z, :Y, :X]
    lac = np.full((Z, Y, X), sim.LAC_PER_UM["ice"], dtype=np.float32)
    lac[(z - 24) ** 2 + (y - 4) ** 2 + (x - 32) ** 2 < 64] = 1.0
    acq = sim.Acquisition(tilt_max_deg=tilt_max, blur_fwhm_nm=0, dose=np.inf)
    series = sim.acquire(lac, 10.0, acq)
    rec = sim.reconstruct(series.data, series.angles_deg, Z, 10.0, iterations=30)
    w = np.clip(rec[:, 4, :] - sim.LAC_PER_UM["ice"], 0, None)
    w[w < 0.3 * w.max()] = 0
    zz, xx = np.mgrid[:Z, :X]
    m = w.sum()
    cz, cx = (w * zz).sum() / m, (w * xx).sum() / m
    return float(np.sqrt((w * (zz - cz) ** 2).sum() / (w * (xx - cx) ** 2).sum()))


def test_missing_wedge_elongates_along_z():
    limited = _sphere_elongation(65.0)
    full = _sphere_elongation(90.0)
    assert limited > 1.15
    assert 0.92 < full < 1.1
    assert limited > full + 0.1


def test_fbp_and_sirt_agree():
    Z, Y, X = 32, 4, 48
    z, _y, x = np.mgrid[:Z, :Y, :X]
    lac = np.full((Z, Y, X), 0.1, dtype=np.float32)
    lac[(z - 16) ** 2 + (x - 24) ** 2 < 49] = 0.6
    series = sim.acquire(lac, 10.0, sim.Acquisition(blur_fwhm_nm=0, dose=np.inf))
    sirt = sim.reconstruct(series.data, series.angles_deg, Z, 10.0, method="sirt")
    fbp = sim.reconstruct(series.data, series.angles_deg, Z, 10.0, method="fbp")
    assert np.corrcoef(sirt.ravel(), fbp.ravel())[0, 1] > 0.9
    # SIRT recovers the LAC scale in the middle of the ball
    assert abs(float(sirt[16, 2, 24]) - 0.6) < 0.15


def test_artifacts_lie_around_gold():
    s = sim.simulate_tomogram(
        (32, 96, 96),
        VOXEL,
        seed=2,
        content=sim.CellContent(fiducials=2, filopodia=1),
        acquisition=sim.Acquisition(sirt_iterations=10),
    )
    gold = np.isin(s.objects, s.table.loc[s.table["class"] == "fiducial", "label"])
    assert gold.any() and s.artifacts[gold].all()
    # streaks reach beyond the beads along x, not over the whole volume
    assert s.artifacts.sum() > 3 * gold.sum()
    assert s.artifacts.mean() < 0.5


def test_noise_and_blur_reduce_fidelity():
    ph = sim.make_phantom((24, 64, 64), VOXEL, seed=5)
    clean = sim.acquire(ph.lac, VOXEL, sim.Acquisition(blur_fwhm_nm=0, dose=np.inf)).data
    noisy = sim.acquire(ph.lac, VOXEL, sim.Acquisition(dose=200), seed=1).data
    assert clean.shape == noisy.shape
    assert np.std(noisy - clean) > 0.02


def test_sample_conditions_keep_test_conditions_out_of_training():
    rng = np.random.default_rng(0)
    for _ in range(20):
        train, _ = sim.sample_conditions(rng, "unlabeled")
        test, _ = sim.sample_conditions(rng, "test")
        lo, hi = sim.TRAINING_RANGES["tilt_max_deg"]
        assert lo <= train.tilt_max_deg <= hi and not lo <= test.tilt_max_deg <= hi
        assert test.blur_fwhm_nm > sim.TRAINING_RANGES["blur_fwhm_nm"][1]
        assert test.dose < sim.TRAINING_RANGES["dose"][0]
    labeled, _ = sim.sample_conditions(rng, "labeled")
    assert labeled == sim.Acquisition()
    varied = [
        sim.sample_conditions(rng, "labeled", labeled_conditions="varied")[0] for _ in range(20)
    ]
    for key in ("tilt_max_deg", "blur_fwhm_nm", "dose", "jitter_px"):
        values = [getattr(a, key) for a in varied]
        lo, hi = sim.TRAINING_RANGES[key]
        assert all(lo <= x <= hi for x in values) and len(set(values)) > 1
    with pytest.raises(ValueError, match="labeled_conditions"):
        sim.sample_conditions(rng, "labeled", labeled_conditions="mixed")


def test_broad_conditions_cover_the_broad_ranges_and_contain_the_held_out_ones():
    from sxtquant.simulate.conditions import BROAD_RANGES, HELD_OUT_RANGES

    rng = np.random.default_rng(1)
    draws = [
        sim.sample_conditions(rng, split, labeled_conditions="broad")[0]
        for split in ("labeled", "unlabeled")
        for _ in range(40)
    ]
    for key in ("tilt_max_deg", "tilt_offset_deg", "blur_fwhm_nm", "dose", "jitter_px"):
        values = [getattr(a, key) for a in draws]
        lo, hi = BROAD_RANGES[key]
        assert all(lo <= x <= hi for x in values) and len(set(values)) > 3, key
        if key in HELD_OUT_RANGES and key != "dose":
            held = HELD_OUT_RANGES[key]
            assert lo <= held[0] and held[1] <= hi, key
    focus = [a.depth_of_focus_nm for a in draws]
    assert 0 < sum(f is None for f in focus) < len(focus)
    # the test split keeps the held-out conditions whatever labelled data is drawn
    test, _ = sim.sample_conditions(np.random.default_rng(2), "test", labeled_conditions="broad")
    assert test == sim.sample_conditions(np.random.default_rng(2), "test")[0]


def test_tilt_offset_shifts_the_tilt_range():
    np.testing.assert_array_equal(sim.tilt_angles(60, 2, 5), np.arange(-60, 61, 2) + 5.0)
    np.testing.assert_array_equal(sim.tilt_angles(60, 2), np.arange(-60, 61, 2))
    with pytest.raises(ValueError, match="exceeds 90"):
        sim.Acquisition(tilt_max_deg=70, tilt_offset_deg=25)


@pytest.mark.parametrize(
    "kwargs",
    [{"tilt_max_deg": 0}, {"dose": 0}, {"reconstruction": "art"}, {"blur_fwhm_nm": -1}],
)
def test_bad_acquisition_is_rejected(kwargs):
    with pytest.raises(ValueError):
        sim.Acquisition(**kwargs)


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "cell"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sxtquant",
            "simulate",
            str(out),
            "--shape",
            "32",
            "96",
            "96",
            "--seed",
            "5",
            "--sirt-iterations",
            "8",
            "--preview",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def test_cli_writes_the_contract(cli_output):
    out = cli_output
    tomo = read_volume(out / "tomogram.mrc")
    assert tomo.data.dtype == np.float32 and tomo.shape == (32, 96, 96)
    for name, dtype in (
        ("membranes.tif", np.uint8),
        ("objects.tif", np.uint16),
        ("artifacts.tif", np.uint8),
    ):
        vol = read_volume(out / name)
        assert vol.data.dtype == dtype, name
        assert vol.shape == (32, 96, 96), name
        assert vol.voxel_size_nm == pytest.approx((VOXEL,) * 3, rel=1e-4), name
        if dtype == np.uint8:
            assert set(np.unique(vol.data)) <= {0, 255}, name
    assert tomo.voxel_size_nm == pytest.approx((VOXEL,) * 3, rel=1e-4)
    table = pd.read_csv(out / "objects.csv")
    assert list(table.columns[:2]) == ["label", "class"]
    for col in (
        "centre_z_nm",
        "centre_y_nm",
        "centre_x_nm",
        "volume_nm3",
        "surface_area_nm2",
        "orientation_z",
        "radius_nm",
        "parent",
    ):
        assert col in table.columns, col
    assert set(table["class"]) <= KNOWN_CLASSES
    labels = read_volume(out / "objects.tif").data
    assert sorted(table["label"]) == sorted(set(np.unique(labels)) - {0})
    assert table["label"].is_unique
    assert read_volume(out / "membranes.tif").data.any()
    info = json.loads((out / "simulation.json").read_text())
    assert info["seed"] == 5 and info["voxel_size_nm"] == VOXEL
    for png in ("preview_xy.png", "preview_xz.png"):
        assert (out / png).stat().st_size > 1000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial files


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--shape", "0", "96", "96"], "--shape"),
        (["--shape", "32", "-4", "96"], "--shape"),
        (["--voxel-size", "-1"], "--voxel-size"),
        (["--voxel-size", "nan"], "--voxel-size"),
        (["--tilt-max", "120"], "tilt"),
        (["--dose", "0"], "dose"),
    ],
)
def test_cli_rejects_bad_input(run_cli, tmp_path, args, fragment):
    result = run_cli("simulate", tmp_path / "out", *args)
    assert_user_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_cli_dataset_layout(run_cli, tmp_path):
    out = tmp_path / "ds"
    options = ["--labeled-tomograms", "1", "--unlabeled-tomograms", "2", "--test-tomograms", "1"]
    options += ["--shape", "16", "48", "48", "--slice-step", "4", "--seed", "3", "--quiet"]
    result = run_cli("simulate", "--dataset", out, *options)
    assert result.returncode == 0, result.stderr
    info = json.loads((out / "dataset.json").read_text())
    assert info["seed"] == 3 and info["voxel_size_nm"] == VOXEL
    splits = [t["split"] for t in info["tomograms"]]
    assert splits == ["labeled", "unlabeled", "unlabeled", "test"]
    for t in info["tomograms"]:
        assert {"name", "split", "acquisition", "content"} <= set(t)
    images = sorted((out / "labeled" / "images").glob("*.tif"))
    labels = sorted((out / "labeled" / "labels").glob("*.tif"))
    assert [p.name for p in images] == [p.name for p in labels]
    assert [p.name for p in images] == [f"labeled000_z{z:04d}.tif" for z in (0, 4, 8, 12)]
    image = tifffile.imread(images[1])
    label = tifffile.imread(labels[1])
    assert image.dtype == np.float32 and image.shape == (48, 48)
    assert label.dtype == np.uint8 and set(np.unique(label)) <= {0, 255}
    assert len(list((out / "unlabeled" / "images").glob("unlabeled001_z*.tif"))) == 4
    assert not (out / "unlabeled" / "labels").exists()
    assert len(list((out / "test" / "labels").glob("*.tif"))) == 4
    # conditions of the unlabelled tomograms differ from the labelled one's
    acqs = [t["acquisition"] for t in info["tomograms"]]
    assert acqs[1] != acqs[0] and acqs[2] != acqs[0]

    # labels under varied conditions: the labelled acquisition moves into the training
    # ranges, and the held-out test tomogram stays the same, slice for slice
    varied = tmp_path / "varied"
    again = run_cli("simulate", "--dataset", varied, *options, "--labeled-conditions", "varied")
    assert again.returncode == 0, again.stderr
    info_varied = json.loads((varied / "dataset.json").read_text())
    labeled = info_varied["tomograms"][0]["acquisition"]
    assert labeled != acqs[0]
    lo, hi = sim.TRAINING_RANGES["blur_fwhm_nm"]
    assert lo <= labeled["blur_fwhm_nm"] <= hi
    assert info_varied["tomograms"][3] == info["tomograms"][3]
    for path in sorted((out / "test" / "images").glob("*.tif")):
        np.testing.assert_array_equal(
            tifffile.imread(varied / "test" / "images" / path.name), tifffile.imread(path)
        )


def test_depth_of_focus_and_jitter_blur_the_projections():
    ph = sim.make_phantom((24, 64, 64), VOXEL, seed=5)
    base = sim.Acquisition(dose=np.inf)
    sharp = sim.acquire(ph.lac, VOXEL, base).data
    defocus = sim.acquire(ph.lac, VOXEL, sim.Acquisition(dose=np.inf, depth_of_focus_nm=50)).data
    jitter = sim.acquire(ph.lac, VOXEL, sim.Acquisition(dose=np.inf, jitter_px=1.0)).data
    # same total absorption, less detail
    np.testing.assert_allclose(defocus.mean(), sharp.mean(), rtol=0.02)
    gradient = [float(np.abs(np.diff(d, axis=2)).mean()) for d in (sharp, defocus)]
    assert gradient[1] < gradient[0]
    assert not np.allclose(jitter, sharp)
