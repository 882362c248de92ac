"""Classical membrane-segmentation baselines, to put the network's scores in context.

Two methods a cell biologist would reach for before a deep network, both trained on
(or tuned with) the same labelled slices as the network and both returning a
membrane *probability* (Z, Y, X) float32 in [0, 1], so :mod:`sxtquant.evaluate.metrics`
scores them exactly as it scores the network (positive where > 0.9):

- :class:`OtsuBaseline` -- one global Otsu threshold on the per-slice standardised
  intensities of the volume being segmented. The labelled slices only decide the
  polarity (are membranes brighter or darker than their surroundings?). Its output
  is hard (0 or 1): a threshold has no confidence.
- :class:`RandomForestBaseline` -- a pixel classifier on a stack of standard filter
  responses at several scales, what ilastik's pixel classification does:
  Gaussian smoothing, Laplacian of Gaussian, Gaussian gradient magnitude, the two
  Hessian eigenvalues and the two structure-tensor eigenvalues (see
  :func:`filter_features`), classified by a seeded scikit-learn
  :class:`~sklearn.ensemble.RandomForestClassifier` trained on a class-balanced
  seeded sample of labelled pixels. The probability is the forest's vote share.

Both standardise every slice (mean 0, SD 1) first, as the network's input is.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> truth = np.zeros((2, 32, 32), bool)
>>> truth[:, 10:12, :] = True
>>> images = rng.normal(size=truth.shape) + 4 * truth
>>> otsu = OtsuBaseline().fit(images, truth)
>>> otsu.polarity
'bright'
>>> forest = RandomForestBaseline(sigmas=(1.0,), n_estimators=10).fit(images, truth)
>>> forest.predict_proba(images).shape
(2, 32, 32)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_SIGMAS",
    "FEATURES_PER_SIGMA",
    "OtsuBaseline",
    "RandomForestBaseline",
    "feature_names",
    "filter_features",
]

#: Scales (pixels) of the filter features: ilastik's default scales from 0.7 to 10.
DEFAULT_SIGMAS: tuple[float, ...] = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)

#: The features computed at every scale, in the order of :func:`filter_features`.
FEATURES_PER_SIGMA: tuple[str, ...] = (
    "gaussian",
    "laplacian_of_gaussian",
    "gradient_magnitude",
    "hessian_eigenvalue_1",
    "hessian_eigenvalue_2",
    "structure_tensor_eigenvalue_1",
    "structure_tensor_eigenvalue_2",
)

Polarity = Literal["auto", "bright", "dark"]


# --------------------------------------------------------------------------- helpers


def _as_slices(volume: np.ndarray | Sequence[np.ndarray], name: str) -> list[np.ndarray]:
    """A (Z, Y, X) array, a (Y, X) array or a sequence of 2D slices -> list of 2D float64."""
    if isinstance(volume, np.ndarray):
        if volume.ndim == 2:
            volume = volume[np.newaxis]
        if volume.ndim != 3:
            raise ValueError(f"{name} must be (Z, Y, X) or (Y, X), got shape {volume.shape}")
    slices = [np.asarray(s, dtype=np.float64) for s in volume]
    if not slices:
        raise ValueError(f"{name} has no slices")
    for s in slices:
        if s.ndim != 2 or s.size == 0:
            raise ValueError(f"{name}: every slice must be a non-empty 2D array, got {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{name} contains NaN or infinite values")
    return slices


def _standardize(image: np.ndarray) -> np.ndarray:
    sd = image.std()
    return (image - image.mean()) / (sd if sd > 0 else 1.0)


def _eigenvalues_2x2(a: np.ndarray, b: np.ndarray, d: np.ndarray):
    """Eigenvalues of the symmetric matrices [[a, b], [b, d]], larger first."""
    half_trace = 0.5 * (a + d)
    root = np.sqrt(0.25 * (a - d) ** 2 + b * b)
    return half_trace + root, half_trace - root


def feature_names(sigmas: Sequence[float] = DEFAULT_SIGMAS) -> list[str]:
    """Names of the columns of :func:`filter_features`: ``raw``, then ``<feature>@<sigma>``."""
    return ["raw"] + [f"{f}@{s:g}" for s in sigmas for f in FEATURES_PER_SIGMA]


def filter_features(image: np.ndarray, sigmas: Sequence[float] = DEFAULT_SIGMAS) -> np.ndarray:
    """Standard pixel-classification features of one 2D slice, at several scales.

    At every scale σ (pixels): the Gaussian-smoothed image, the Laplacian of
    Gaussian, the Gaussian gradient magnitude, the two eigenvalues of the Hessian
    of the Gaussian-smoothed image (larger first), and the two eigenvalues of the
    structure tensor (gradients at the inner scale σ/2, averaged over a Gaussian
    window of σ). Image borders are mirrored.

    Parameters
    ----------
    image : (Y, X) ndarray
        One slice; it is used as given (standardise it first if it should be).
    sigmas : sequence of float
        Scales in pixels, each > 0.

    Returns
    -------
    (Y, X, 1 + 7 * len(sigmas)) ndarray of float32
        Column order as :func:`feature_names`: the raw image, then the seven
        features of :data:`FEATURES_PER_SIGMA` for each scale in turn.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image must be 2D (y, x), got shape {image.shape}")
    if not sigmas or any(not (s > 0 and math.isfinite(s)) for s in sigmas):
        raise ValueError(f"sigmas must be positive numbers, got {tuple(sigmas)}")
    out = np.empty((*image.shape, 1 + len(FEATURES_PER_SIGMA) * len(sigmas)), dtype=np.float32)
    out[..., 0] = image
    column = 1
    mode = "mirror"
    for s in sigmas:
        hyy = ndimage.gaussian_filter(image, s, order=(2, 0), mode=mode)
        hxx = ndimage.gaussian_filter(image, s, order=(0, 2), mode=mode)
        hxy = ndimage.gaussian_filter(image, s, order=(1, 1), mode=mode)
        h1, h2 = _eigenvalues_2x2(hyy, hxy, hxx)
        inner = 0.5 * s
        gy = ndimage.gaussian_filter(image, inner, order=(1, 0), mode=mode)
        gx = ndimage.gaussian_filter(image, inner, order=(0, 1), mode=mode)
        jyy = ndimage.gaussian_filter(gy * gy, s, mode=mode)
        jxx = ndimage.gaussian_filter(gx * gx, s, mode=mode)
        jxy = ndimage.gaussian_filter(gx * gy, s, mode=mode)
        t1, t2 = _eigenvalues_2x2(jyy, jxy, jxx)
        for feature in (
            ndimage.gaussian_filter(image, s, mode=mode),
            hyy + hxx,  # Laplacian of Gaussian
            ndimage.gaussian_gradient_magnitude(image, s, mode=mode),
            h1,
            h2,
            t1,
            t2,
        ):
            out[..., column] = feature
            column += 1
    return out


# --------------------------------------------------------------------------- Otsu


class OtsuBaseline:
    """A global Otsu threshold on the standardised intensities of each volume.

    Parameters
    ----------
    polarity : {"auto", "bright", "dark"}
        Whether membranes are the pixels above (``bright``) or below (``dark``) the
        threshold; ``auto`` lets :meth:`fit` decide from the labelled slices (the
        side whose pixels are labelled membrane more often, i.e. the better F1).
    bins : int
        Histogram bins of the Otsu threshold.

    Attributes
    ----------
    polarity : {"bright", "dark"} or "auto"
        After :meth:`fit`, the polarity in use.
    """

    def __init__(self, *, polarity: Polarity = "auto", bins: int = 256):
        if polarity not in ("auto", "bright", "dark"):
            raise ValueError(f"polarity must be 'auto', 'bright' or 'dark', got {polarity!r}")
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        self.polarity: str = polarity
        self.bins = int(bins)

    def threshold(self, volume: np.ndarray | Sequence[np.ndarray]) -> float:
        """The Otsu threshold of the per-slice standardised intensities of ``volume``."""
        from skimage.filters import threshold_otsu

        values = np.concatenate([_standardize(s).ravel() for s in _as_slices(volume, "volume")])
        if values.min() == values.max():
            return float(values.min())
        return float(threshold_otsu(values, nbins=self.bins))

    def _masks(self, volume, threshold: float, polarity: str) -> list[np.ndarray]:
        slices = [_standardize(s) for s in _as_slices(volume, "volume")]
        return [s > threshold if polarity == "bright" else s < threshold for s in slices]

    def fit(self, images, labels) -> OtsuBaseline:
        """Choose the polarity (when ``auto``) from labelled slices.

        Parameters
        ----------
        images : (Z, Y, X) ndarray or sequence of (Y, X) ndarray
            Raw labelled slices.
        labels : same shapes
            Membrane labels, > 0 = membrane.

        Returns
        -------
        self
        """
        if self.polarity != "auto":
            return self
        truth = [np.asarray(t) > 0 for t in labels]
        images = _as_slices(images, "images")
        if len(truth) != len(images):
            raise ValueError(f"{len(images)} images but {len(truth)} label slices")
        threshold = self.threshold(images)
        best, best_f1 = "bright", -1.0
        for polarity in ("bright", "dark"):
            masks = self._masks(images, threshold, polarity)
            tp = sum(int(np.count_nonzero(m & t)) for m, t in zip(masks, truth, strict=True))
            predicted = sum(int(np.count_nonzero(m)) for m in masks)
            actual = sum(int(np.count_nonzero(t)) for t in truth)
            f1 = 2 * tp / (predicted + actual) if predicted + actual else 0.0
            if f1 > best_f1:
                best, best_f1 = polarity, f1
        self.polarity = best
        return self

    def predict_proba(self, volume) -> np.ndarray:
        """Membrane "probability" of every pixel: 1 on the membrane side of the threshold, else 0.

        Parameters
        ----------
        volume : (Z, Y, X) ndarray or sequence of (Y, X) ndarray
            Raw intensities; the threshold is computed on this volume itself.

        Returns
        -------
        (Z, Y, X) ndarray of float32, values 0 or 1
        """
        polarity = "bright" if self.polarity == "auto" else self.polarity
        masks = self._masks(volume, self.threshold(volume), polarity)
        return np.stack(masks).astype(np.float32)


# --------------------------------------------------------------------------- random forest


class RandomForestBaseline:
    """An ilastik-style random-forest pixel classifier on multi-scale filter features.

    Parameters
    ----------
    sigmas : sequence of float
        Feature scales in pixels (:func:`filter_features`).
    n_estimators : int
        Trees in the forest.
    max_depth : int or None
        Depth limit of every tree (``None``: grown until pure or ``min_samples_leaf``).
    min_samples_leaf : int
        Smallest leaf.
    samples_per_class : int
        Labelled pixels drawn (without replacement, seeded) for each of the two
        classes, membrane and background, from all labelled slices together --
        like the sparse annotations an ilastik user draws. All of a class's pixels
        are used when there are fewer.
    seed : int
        Seeds the pixel sample and the forest.
    n_jobs : int or None
        Processes of the forest (scikit-learn's ``n_jobs``).
    """

    def __init__(
        self,
        *,
        sigmas: Sequence[float] = DEFAULT_SIGMAS,
        n_estimators: int = 100,
        max_depth: int | None = 20,
        min_samples_leaf: int = 2,
        samples_per_class: int = 20000,
        seed: int = 0,
        n_jobs: int | None = None,
    ):
        if n_estimators < 1:
            raise ValueError(f"n_estimators must be at least 1, got {n_estimators}")
        if samples_per_class < 1:
            raise ValueError(f"samples_per_class must be at least 1, got {samples_per_class}")
        self.sigmas = tuple(float(s) for s in sigmas)
        filter_features(np.zeros((2, 2)), self.sigmas)  # validates the scales
        self.n_estimators = int(n_estimators)
        self.max_depth = max_depth
        self.min_samples_leaf = int(min_samples_leaf)
        self.samples_per_class = int(samples_per_class)
        self.seed = int(seed)
        self.n_jobs = n_jobs
        self.forest = None

    def features(self, image: np.ndarray) -> np.ndarray:
        """Features of one raw slice (standardised first): (Y, X, F) float32."""
        return filter_features(_standardize(np.asarray(image, dtype=np.float64)), self.sigmas)

    def fit(self, images, labels) -> RandomForestBaseline:
        """Train the forest on a class-balanced sample of labelled pixels.

        Parameters
        ----------
        images : (Z, Y, X) ndarray or sequence of (Y, X) ndarray
            Raw labelled slices (slices may differ in size).
        labels : same shapes
            Membrane labels, > 0 = membrane.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If images and labels differ in number or shape, or the labels hold only
            one class.
        """
        from sklearn.ensemble import RandomForestClassifier

        images = _as_slices(images, "images")
        truth = [np.asarray(t) > 0 for t in labels]
        if len(truth) != len(images):
            raise ValueError(f"{len(images)} images but {len(truth)} label slices")
        for i, (image, t) in enumerate(zip(images, truth, strict=True)):
            if image.shape != t.shape:
                raise ValueError(f"slice {i}: image shape {image.shape} != label {t.shape}")
        rng = np.random.default_rng([self.seed, 0xF0E57])
        # Choose the sampled pixels first (flat indices over all slices), then compute
        # the features slice by slice and keep only those rows.
        sizes = np.array([t.size for t in truth])
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        flat_truth = np.concatenate([t.ravel() for t in truth])
        chosen = []
        for cls in (True, False):
            where = np.flatnonzero(flat_truth == cls)
            if where.size == 0:
                raise ValueError(
                    "the labels hold no " + ("membrane" if cls else "background") + " pixel"
                )
            n = min(self.samples_per_class, where.size)
            chosen.append(rng.choice(where, size=n, replace=False))
        chosen = np.sort(np.concatenate(chosen))
        x_rows, y_rows = [], []
        for i, image in enumerate(images):
            in_slice = chosen[(chosen >= offsets[i]) & (chosen < offsets[i + 1])] - offsets[i]
            if in_slice.size == 0:
                continue
            features = self.features(image).reshape(-1, len(feature_names(self.sigmas)))
            x_rows.append(features[in_slice])
            y_rows.append(truth[i].ravel()[in_slice])
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.seed,
            n_jobs=self.n_jobs,
        )
        forest.fit(np.concatenate(x_rows), np.concatenate(y_rows))
        self.forest = forest
        return self

    def predict_proba(self, volume) -> np.ndarray:
        """Membrane probability of every pixel (the forest's vote share), slice by slice.

        Parameters
        ----------
        volume : (Z, Y, X) ndarray or sequence of (Y, X) ndarray of one size
            Raw intensities.

        Returns
        -------
        (Z, Y, X) ndarray of float32 in [0, 1]
        """
        if self.forest is None:
            raise RuntimeError("fit the random forest before predicting")
        slices = _as_slices(volume, "volume")
        member = list(self.forest.classes_).index(True)
        out = []
        for image in slices:
            features = self.features(image).reshape(image.size, -1)
            out.append(self.forest.predict_proba(features)[:, member].reshape(image.shape))
        return np.clip(np.stack(out), 0.0, 1.0).astype(np.float32)
