"""Limited-angle tomography: the tilt series (forward model) and its reconstruction."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from sxtquant.core.progress import progress
from sxtquant.simulate.cell import LAC_PER_UM


@dataclass(frozen=True)
class Acquisition:
    """How the tilt series is recorded and reconstructed.

    Attributes
    ----------
    tilt_max_deg : float
        Tilt range ±tilt_max_deg about the y axis (65 by default; 90 = no missing wedge).
    tilt_step_deg : float
        Angular step (1° by default).
    tilt_offset_deg : float
        Shift of the whole tilt range (a stage that tilts from -60° to +70° has
        ``tilt_max_deg=65, tilt_offset_deg=5``): the missing wedge is then asymmetric.
    blur_fwhm_nm : float
        Full width at half maximum of the zone plate's Gaussian point-spread function
        (25 nm; 40 nm is like Diamond B24). 0 disables it.
    depth_of_focus_nm : float or None
        If set, the blur grows with the distance t from the focal plane (the slab's
        mid-plane) along the beam: extra Gaussian sigma ``sigma0 * |t| / depth_of_focus``.
    dose : float
        Incident photons per detector pixel per projection (Poisson noise);
        ``inf`` for noise-free data.
    jitter_px : float
        Standard deviation (pixels) of random per-projection shifts in y and x that the
        reconstruction does not correct (residual misalignment).
    reconstruction : {"sirt", "fbp"}
        Reconstruction algorithm.
    sirt_iterations : int
        SIRT iterations.
    """

    tilt_max_deg: float = 65.0
    tilt_step_deg: float = 1.0
    tilt_offset_deg: float = 0.0
    blur_fwhm_nm: float = 25.0
    depth_of_focus_nm: float | None = None
    dose: float = 2000.0
    jitter_px: float = 0.0
    reconstruction: Literal["sirt", "fbp"] = "sirt"
    sirt_iterations: int = 30

    def __post_init__(self):
        if not 0 < self.tilt_max_deg <= 90:
            raise ValueError(f"tilt_max_deg must be in (0, 90], got {self.tilt_max_deg}")
        if not 0 < self.tilt_step_deg <= self.tilt_max_deg:
            raise ValueError(f"tilt_step_deg must be in (0, tilt_max], got {self.tilt_step_deg}")
        if not abs(self.tilt_offset_deg) + self.tilt_max_deg <= 90:
            raise ValueError(
                f"tilt range {self.tilt_max_deg} ± offset {self.tilt_offset_deg} exceeds 90°"
            )
        if not (self.blur_fwhm_nm >= 0 and math.isfinite(self.blur_fwhm_nm)):
            raise ValueError(f"blur_fwhm_nm must be >= 0, got {self.blur_fwhm_nm}")
        if self.depth_of_focus_nm is not None and not self.depth_of_focus_nm > 0:
            raise ValueError(f"depth_of_focus_nm must be > 0, got {self.depth_of_focus_nm}")
        if not self.dose > 0:
            raise ValueError(f"dose must be > 0 photons per pixel, got {self.dose}")
        if not (self.jitter_px >= 0 and math.isfinite(self.jitter_px)):
            raise ValueError(f"jitter_px must be >= 0, got {self.jitter_px}")
        if self.reconstruction not in ("sirt", "fbp"):
            raise ValueError(f"reconstruction must be 'sirt' or 'fbp', got {self.reconstruction!r}")
        if self.sirt_iterations < 1:
            raise ValueError(f"sirt_iterations must be >= 1, got {self.sirt_iterations}")


@dataclass(frozen=True)
class TiltSeries:
    """Measured line integrals ``-ln(I/I0)``, (n_angles, Y, X) float32, and their angles."""

    data: np.ndarray
    angles_deg: np.ndarray


def tilt_angles(
    tilt_max_deg: float = 65.0, tilt_step_deg: float = 1.0, tilt_offset_deg: float = 0.0
) -> np.ndarray:
    """Tilt angles in degrees, symmetric about the offset: offset - max, ..., offset + max."""
    n = math.floor(tilt_max_deg / tilt_step_deg + 1e-9)
    angles = np.arange(-n, n + 1) * float(tilt_step_deg)
    return angles + float(tilt_offset_deg) if tilt_offset_deg else angles


def _grid_width(Z: int, X: int, angles_deg: np.ndarray) -> int:
    """Width (voxels) of the reconstruction grid that holds every ray of the detector."""
    a = np.deg2rad(np.abs(angles_deg)).max()
    if a < math.radians(80):
        need = X / math.cos(a) + Z * math.tan(a)
    else:  # near 90°: a finite specimen block (the slab model needs an infinite one)
        need = 3 * max(X, Z)
    W = math.ceil(need) + 4
    return W + (W - X) % 2  # same parity as X keeps the field of view centred


class _Projector:
    """Joseph's projector of an x–z slice as a CSR matrix, applied with embedding_bag."""

    def __init__(self, Z: int, W: int, D: int, angles_deg: np.ndarray):
        import scipy.sparse as sp

        # Entries are generated ray by ray (row-major), so the CSR arrays are built
        # directly: per angle an (D, n_steps, 2) block of column indices and weights.
        zc, xc, uc = (Z - 1) / 2, (W - 1) / 2, (D - 1) / 2
        u = np.arange(D) - uc
        cols = []
        for a in np.deg2rad(np.asarray(angles_deg, dtype=float)):
            c, s = math.cos(a), math.sin(a)
            if abs(c) >= abs(s):  # step through z rows, interpolate along x
                zz = np.arange(Z)[None, :]
                pos = (u[:, None] + (zz - zc) * s) / c + xc
                lo = np.floor(pos).astype(np.int64)
                f = (pos - lo).astype(np.float32)
                idx = np.stack([zz * W + lo, zz * W + lo + 1], axis=2)
                ok = np.stack([(lo >= 0) & (lo < W), (lo + 1 >= 0) & (lo + 1 < W)], axis=2)
                w = np.stack([1 - f, f], axis=2) / np.float32(abs(c))
            else:  # step through x columns, interpolate along z
                xx = np.arange(W)[None, :]
                pos = ((xx - xc) * c - u[:, None]) / s + zc
                lo = np.floor(pos).astype(np.int64)
                f = (pos - lo).astype(np.float32)
                idx = np.stack([lo * W + xx, (lo + 1) * W + xx], axis=2)
                ok = np.stack([(lo >= 0) & (lo < Z), (lo + 1 >= 0) & (lo + 1 < Z)], axis=2)
                w = np.stack([1 - f, f], axis=2) / np.float32(abs(s))
            ok &= w > 0
            cols.append((idx.reshape(D, -1), ok.reshape(D, -1), w.reshape(D, -1)))
        counts = np.concatenate([m.sum(axis=1) for _, m, _ in cols])
        indptr = np.concatenate([[0], np.cumsum(counts)])
        indices = np.concatenate([i[m] for i, m, _ in cols])
        data = np.concatenate([w[m] for _, m, w in cols]).astype(np.float32)
        n_rays, n_vox = len(angles_deg) * D, Z * W
        A = sp.csr_matrix((data, indices, indptr), shape=(n_rays, n_vox))
        self.shape = A.shape
        self.Z, self.W, self.D = Z, W, D
        self.matrix = A
        self._fwd = self._bag(A)
        self._back = self._bag(A.T.tocsr())
        ones_v = np.ones(n_vox, dtype=np.float32)
        ones_r = np.ones(n_rays, dtype=np.float32)
        self.row_sum = np.asarray(A @ ones_v).ravel()
        self.col_sum = np.asarray(A.T @ ones_r).ravel()

    @staticmethod
    def _bag(M):
        import torch

        idx_dtype = np.int32 if M.nnz < 2**31 else np.int64
        return (
            torch.from_numpy(M.indices.astype(idx_dtype)),
            torch.from_numpy(M.indptr[:-1].astype(idx_dtype)),
            torch.from_numpy(M.data.astype(np.float32)),
        )

    @staticmethod
    def apply(bag, V):
        """Sparse matrix (as an embedding-bag triple) times a dense torch tensor."""
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            return F.embedding_bag(bag[0], V, bag[1], mode="sum", per_sample_weights=bag[2])

    def forward(self, V: np.ndarray) -> np.ndarray:
        """(Z·W, n) voxel columns -> (n_angles·D, n) ray sums, in voxel lengths."""
        import torch

        V = torch.from_numpy(np.ascontiguousarray(V, dtype=np.float32))
        return self.apply(self._fwd, V).numpy()

    def back(self, P: np.ndarray) -> np.ndarray:
        """The transpose: (n_angles·D, n) -> (Z·W, n)."""
        import torch

        P = torch.from_numpy(np.ascontiguousarray(P, dtype=np.float32))
        return self.apply(self._back, P).numpy()


@lru_cache(maxsize=4)
def _projector(Z: int, W: int, D: int, angles: tuple[float, ...]) -> _Projector:
    return _Projector(Z, W, D, np.asarray(angles))


def _block_rows(Z: int, W: int, n_rays: int, budget_bytes: int = 256 << 20) -> int:
    per_row = 4 * (3 * Z * W + 3 * n_rays)
    return int(max(1, min(128, budget_bytes // per_row)))


def _project(
    lac: np.ndarray,
    angles_deg: np.ndarray,
    pad_value: float,
    v_um: float,
    *,
    rows: slice | None = None,
) -> np.ndarray:
    """Line integrals (n_angles, Y, X) of a (Z, Y, X) volume padded in x with ``pad_value``.

    With ``rows``, only those z rows of the slab are projected (the rest count as empty).
    """
    Z, Y, X = lac.shape
    W = _grid_width(Z, X, angles_deg)
    op = _projector(Z, W, X, tuple(float(a) for a in angles_deg))
    left = (W - X) // 2
    out = np.empty((len(angles_deg), Y, X), dtype=np.float32)
    step = _block_rows(Z, W, op.shape[0])
    for y0 in progress(range(0, Y, step), desc="projecting", unit="block"):
        y1 = min(Y, y0 + step)
        V = np.full((Z, W, y1 - y0), pad_value, dtype=np.float32)
        V[:, left : left + X, :] = lac[:, y0:y1, :].transpose(0, 2, 1)
        if rows is not None:
            V[: rows.start] = 0
            V[rows.stop :] = 0
        P = op.forward(V.reshape(Z * W, -1)) * np.float32(v_um)
        out[:, y0:y1, :] = P.reshape(len(angles_deg), X, -1).transpose(0, 2, 1)
    return out


def _gaussian2d(img: np.ndarray, sigma_px: float) -> np.ndarray:
    from scipy import ndimage

    if sigma_px <= 0:
        return img
    return ndimage.gaussian_filter(img, (0, sigma_px, sigma_px), mode="nearest", truncate=3.0)


def acquire(
    lac: np.ndarray,
    voxel_size_nm: float,
    acquisition: Acquisition | None = None,
    *,
    seed: int | np.random.Generator | None = 0,
) -> TiltSeries:
    """Record a tilt series of a LAC volume.

    The specimen is a slab of the volume's thickness that continues in x as ice beyond
    the field of view. Each projection is ``I = PSF * (I0 exp(-∫ LAC dl))`` with Poisson
    noise at ``I0 = dose``; with a depth of focus, parts of the specimen far from the
    focal plane are blurred more (applied to the line integrals of depth bands, a
    weak-absorption approximation).

    Parameters
    ----------
    lac : (Z, Y, X) ndarray
        Linear absorption coefficients in µm⁻¹.
    voxel_size_nm : float
    acquisition : Acquisition, optional
    seed : int or numpy Generator
        Noise and jitter.

    Returns
    -------
    TiltSeries
        ``data`` (n_angles, Y, X) float32: measured ``-ln(I / I0)``.
    """
    from scipy import ndimage

    acq = acquisition or Acquisition()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    v = float(voxel_size_nm)
    angles = tilt_angles(acq.tilt_max_deg, acq.tilt_step_deg, acq.tilt_offset_deg)
    ice = LAC_PER_UM["ice"]
    sigma0 = acq.blur_fwhm_nm / (2 * math.sqrt(2 * math.log(2))) / v
    if acq.depth_of_focus_nm is None:
        line = _project(lac, angles, ice, v / 1000)
    else:
        line = _project_depth_bands(lac, angles, ice, v, sigma0, acq.depth_of_focus_nm)
    intensity = np.exp(-line, dtype=np.float32)
    del line
    intensity = _gaussian2d(intensity, sigma0)
    if math.isfinite(acq.dose):
        counts = rng.poisson(intensity * np.float32(acq.dose)).astype(np.float32)
        intensity = np.maximum(counts, 0.5) / np.float32(acq.dose)
    if acq.jitter_px > 0:
        shifts = rng.normal(0, acq.jitter_px, size=(len(angles), 2))
        for k in range(len(angles)):
            intensity[k] = ndimage.shift(intensity[k], shifts[k], order=1, mode="nearest")
    data = -np.log(np.maximum(intensity, 1e-6))
    return TiltSeries(data=data.astype(np.float32, copy=False), angles_deg=angles)


def _project_depth_bands(lac, angles, pad_value, v, sigma0, dof_nm, n_bands: int = 5):
    """Projections where each depth band of the slab gets its own defocus blur.

    The bands are layers of the slab (z ranges); a layer at height t from the focal
    (mid-)plane gets an extra Gaussian sigma ``sigma0 * |t| / dof``. The lateral
    defocus of a tilted specimen (the ``x sin(angle)`` term) is neglected.
    """
    Z = lac.shape[0]
    edges = np.linspace(0, Z, n_bands + 1).round().astype(int)
    total = None
    for z0, z1 in itertools.pairwise(edges):
        if z1 <= z0:
            continue
        t_nm = abs(0.5 * (z0 + z1 - 1) - (Z - 1) / 2) * v
        band = _project(lac, angles, pad_value, v / 1000, rows=slice(int(z0), int(z1)))
        band = _gaussian2d(band, sigma0 * t_nm / dof_nm)
        total = band if total is None else total + band
    return total


def _ramp_filter(P: np.ndarray, D: int) -> np.ndarray:
    """Ram-Lak filter (designed in the spatial domain, Kak & Slaney) with a Hann window,
    along axis 1 of (n_angles, D, n)."""
    n = max(64, int(2 ** math.ceil(math.log2(2 * D))))
    k = np.concatenate([np.arange(1, n // 2 + 1, 2), np.arange(n // 2 - 1, 0, -2)])
    h = np.zeros(n)
    h[0] = 0.25
    h[1::2] = -1 / (np.pi * k) ** 2
    filt = 2 * np.real(np.fft.fft(h))
    freq = np.fft.fftfreq(n)
    filt *= 0.5 + 0.5 * np.cos(2 * np.pi * freq)  # Hann
    padded = np.zeros((P.shape[0], n, P.shape[2]), dtype=np.float32)
    padded[:, :D] = P
    out = np.real(np.fft.ifft(np.fft.fft(padded, axis=1) * filt[None, :, None], axis=1))
    return out[:, :D].astype(np.float32)


def reconstruct(
    tilt_series: np.ndarray,
    angles_deg: Sequence[float],
    thickness: int,
    voxel_size_nm: float,
    *,
    method: Literal["sirt", "fbp"] = "sirt",
    iterations: int = 30,
) -> np.ndarray:
    """Reconstruct a tomogram slice-wise in x–z planes (tilt axis y).

    Parameters
    ----------
    tilt_series : (n_angles, Y, X) ndarray
        Line integrals ``-ln(I / I0)``.
    angles_deg : sequence of float
        Tilt angles in degrees.
    thickness : int
        Z, the number of slices to reconstruct (the specimen slab's thickness).
    voxel_size_nm : float
    method : {"sirt", "fbp"}
    iterations : int
        SIRT iterations.

    Returns
    -------
    (Z, Y, X) ndarray of float32
        LAC in µm⁻¹. The grid is wider than the field of view (it holds every ray),
        then cropped to the X columns the detector sees at 0°.
    """
    if method not in ("sirt", "fbp"):
        raise ValueError(f"method must be 'sirt' or 'fbp', got {method!r}")
    data = np.asarray(tilt_series, dtype=np.float32)
    angles = np.asarray(angles_deg, dtype=float)
    n_a, Y, X = data.shape
    if n_a != len(angles):
        raise ValueError(f"{n_a} projections but {len(angles)} angles")
    Z = int(thickness)
    W = _grid_width(Z, X, angles)
    op = _projector(Z, W, X, tuple(float(a) for a in angles))
    left = (W - X) // 2
    v_um = float(voxel_size_nm) / 1000
    import torch

    out = np.empty((Z, Y, X), dtype=np.float32)
    R = torch.from_numpy(
        np.where(op.row_sum > 0, 1 / np.maximum(op.row_sum, 1e-12), 0).astype(np.float32)
    )[:, None]
    C = torch.from_numpy(
        np.where(op.col_sum > 0, 1 / np.maximum(op.col_sum, 1e-12), 0).astype(np.float32)
    )[:, None]
    step = _block_rows(Z, W, op.shape[0])
    bar = progress(total=Y, desc=f"reconstructing ({method})", unit="row")
    for y0 in range(0, Y, step):
        y1 = min(Y, y0 + step)
        b = np.ascontiguousarray(data[:, y0:y1, :].transpose(0, 2, 1)).reshape(n_a * X, -1)
        if method == "fbp":
            q = _ramp_filter(b.reshape(n_a, X, -1), X).reshape(n_a * X, -1)
            d_theta = math.radians(abs(angles[1] - angles[0])) if n_a > 1 else 1.0
            x = torch.from_numpy(op.back(q) * np.float32(d_theta))
        else:
            bt = torch.from_numpy(b)
            x = torch.zeros((Z * W, y1 - y0), dtype=torch.float32)
            with torch.no_grad():
                for _ in range(iterations):
                    r = bt - op.apply(op._fwd, x)
                    r.mul_(R)
                    x.addcmul_(op.apply(op._back, r), C)
        vol = x.numpy().reshape(Z, W, -1)[:, left : left + X, :] / np.float32(v_um)
        out[:, y0:y1, :] = vol.transpose(0, 2, 1)
        bar.update(y1 - y0)
    bar.close()
    return out
