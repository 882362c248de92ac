"""Classical baselines: filter features on analytic images, Otsu and the random forest."""

from __future__ import annotations

import numpy as np
import pytest

from sxtquant.evaluate.baselines import (
    FEATURES_PER_SIGMA,
    OtsuBaseline,
    RandomForestBaseline,
    feature_names,
    filter_features,
)
from sxtquant.evaluate.metrics import pixel_metrics


def _column(name: str, sigma: float, sigmas) -> int:
    return feature_names(sigmas).index(f"{name}@{sigma:g}")


def _interior(a: np.ndarray, margin: int = 20) -> np.ndarray:
    return a[margin:-margin, margin:-margin]


def test_feature_layout():
    sigmas = (1.0, 2.0)
    features = filter_features(np.zeros((8, 9)), sigmas)
    assert features.shape == (8, 9, 1 + len(FEATURES_PER_SIGMA) * 2)
    assert features.dtype == np.float32
    assert len(feature_names(sigmas)) == features.shape[-1]


def test_features_of_a_constant_image():
    sigmas = (1.0, 3.0)
    features = filter_features(np.full((40, 50), 7.0), sigmas)
    for s in sigmas:
        np.testing.assert_allclose(features[..., _column("gaussian", s, sigmas)], 7.0, rtol=1e-6)
        for name in FEATURES_PER_SIGMA[1:]:
            # sampled Gaussian-derivative kernels sum to zero only approximately
            np.testing.assert_allclose(features[..., _column(name, s, sigmas)], 0.0, atol=7e-3)


def test_hessian_eigenvalues_of_a_quadratic():
    # f = 3 y² - x²: Hessian diag(6, -2) everywhere, also after Gaussian smoothing
    # (within the 2 % of scipy's sampled derivative kernels at sigma = 1).
    # (small values near the centre: the kernels' sampling error scales with f itself)
    y, x = np.mgrid[-15:16, -15:16].astype(float)
    sigmas = (1.0, 2.0)
    features = filter_features(3 * y**2 - x**2, sigmas)
    for s in sigmas:
        h1 = _interior(features[..., _column("hessian_eigenvalue_1", s, sigmas)], 11)
        h2 = _interior(features[..., _column("hessian_eigenvalue_2", s, sigmas)], 11)
        log = _interior(features[..., _column("laplacian_of_gaussian", s, sigmas)], 11)
        np.testing.assert_allclose(h1, 6.0, rtol=0.02)
        np.testing.assert_allclose(h2, -2.0, rtol=0.02)
        np.testing.assert_allclose(log, 4.0, rtol=0.02)


def test_gradient_and_structure_tensor_of_a_ramp():
    # f = 0.5 x: gradient (0, 0.5), structure tensor eigenvalues 0.25 and 0.
    y, x = np.mgrid[0:60, 0:60].astype(float)
    sigmas = (1.5,)
    features = filter_features(0.5 * x + 0 * y, sigmas)
    grad = _interior(features[..., _column("gradient_magnitude", 1.5, sigmas)])
    t1 = _interior(features[..., _column("structure_tensor_eigenvalue_1", 1.5, sigmas)])
    t2 = _interior(features[..., _column("structure_tensor_eigenvalue_2", 1.5, sigmas)])
    np.testing.assert_allclose(grad, 0.5, rtol=0.02)
    np.testing.assert_allclose(t1, 0.25, rtol=0.04)
    np.testing.assert_allclose(t2, 0.0, atol=1e-6)


def test_bad_feature_input():
    with pytest.raises(ValueError, match="2D"):
        filter_features(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="sigmas"):
        filter_features(np.zeros((4, 4)), (0.0,))


def _membranes(rng, n=4, size=64, contrast=3.0, noise=1.0):
    """Slices with thin (2 px) curved bright lines on a smoothly varying background."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    truth, images = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(20, 44), rng.uniform(20, 44), rng.uniform(10, 18)
        d = np.hypot(y - cy, x - cx)
        t = np.abs(d - r) < 1.0
        background = 0.8 * np.sin(x / 9 + rng.uniform(0, 6)) + 0.02 * y
        images.append(background + contrast * t + noise * rng.normal(size=t.shape))
        truth.append(t)
    return np.stack(images), np.stack(truth)


def test_otsu_finds_bright_and_dark_membranes(rng):
    images, truth = _membranes(rng, contrast=8.0, noise=0.3)
    bright = OtsuBaseline().fit(images, truth)
    assert bright.polarity == "bright"
    prob = bright.predict_proba(images)
    assert prob.dtype == np.float32 and set(np.unique(prob)) <= {0.0, 1.0}
    assert pixel_metrics(prob, truth)["recall"] > 0.95
    dark = OtsuBaseline().fit(-images, truth)
    assert dark.polarity == "dark"
    np.testing.assert_array_equal(dark.predict_proba(-images), prob)


def test_otsu_threshold_of_two_levels():
    volume = np.zeros((1, 10, 10))
    volume[0, :, :3] = 10.0
    otsu = OtsuBaseline(polarity="bright")
    # 30 % of pixels at 10, 70 % at 0: standardised levels -0.655 and 1.528
    low, high = (np.array([0.0, 10.0]) - 3.0) / np.sqrt(0.21 * 100)
    assert low <= otsu.threshold(volume) < high
    np.testing.assert_array_equal(otsu.predict_proba(volume)[0] > 0, volume[0] > 0)


def test_random_forest_beats_otsu_on_noisy_membranes(rng):
    images, truth = _membranes(rng, n=6, contrast=2.0, noise=0.8)
    train_x, train_y, test_x, test_y = images[:4], truth[:4], images[4:], truth[4:]
    forest = RandomForestBaseline(sigmas=(0.7, 1.0, 2.0, 4.0), n_estimators=30, seed=1)
    prob = forest.fit(train_x, train_y).predict_proba(test_x)
    assert prob.shape == test_y.shape and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    rf = pixel_metrics(prob, test_y, threshold=0.5)
    otsu = pixel_metrics(OtsuBaseline().fit(train_x, train_y).predict_proba(test_x), test_y)
    assert rf["f1"] > 0.6
    assert rf["f1"] > otsu["f1"] + 0.1


def test_random_forest_is_seeded(rng):
    images, truth = _membranes(rng, n=2)
    kwargs = {"sigmas": (1.0, 2.0), "n_estimators": 5, "samples_per_class": 300}
    a = RandomForestBaseline(seed=3, **kwargs).fit(images, truth).predict_proba(images)
    b = RandomForestBaseline(seed=3, **kwargs).fit(images, truth).predict_proba(images)
    np.testing.assert_array_equal(a, b)


def test_random_forest_bad_input(rng):
    images, truth = _membranes(rng, n=2)
    forest = RandomForestBaseline(sigmas=(1.0,), n_estimators=2)
    with pytest.raises(RuntimeError, match="fit"):
        forest.predict_proba(images)
    with pytest.raises(ValueError, match="no membrane"):
        forest.fit(images, np.zeros_like(truth))
    with pytest.raises(ValueError, match="label slices"):
        forest.fit(images, truth[:1])
    with pytest.raises(ValueError, match="NaN"):
        forest.fit(np.full_like(images, np.nan), truth)
    with pytest.raises(ValueError, match="n_estimators"):
        RandomForestBaseline(n_estimators=0)
