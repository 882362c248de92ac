"""The losses of the paper's protocol: Huber and 1 - SSIM."""

from __future__ import annotations

import torch
import torch.nn.functional as F

HUBER_DELTA = 0.1
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """A normalised 1D Gaussian window of ``size`` taps (float64)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float | torch.Tensor,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
) -> torch.Tensor:
    """Mean structural similarity of each image pair, Gaussian-weighted (Wang et al. 2004).

    Local statistics use a separable Gaussian window (``window`` px, σ = ``sigma``),
    population (not sample) covariances, and only window positions fully inside the
    image ("valid"), as TensorFlow's ``tf.image.ssim`` and scikit-image's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)`` do.

    Parameters
    ----------
    x, y : (N, 1, H, W) tensors
        H and W at least ``window``.
    data_range : float or (N,) tensor
        Dynamic range of the images (max − min possible value).

    Returns
    -------
    (N,) tensor
        SSIM per image, 1 for identical images; differentiable.
    """
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(
            f"expected two (N, 1, H, W) tensors of one shape, got {x.shape}, {y.shape}"
        )
    g = gaussian_window(window, sigma).to(device=x.device, dtype=x.dtype)
    gy, gx = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def blur(a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(a, gy), gx)

    stats = blur(torch.cat([x, y, x * x, y * y, x * y], dim=0))
    mx, my, mxx, myy, mxy = stats.chunk(5, dim=0)
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    data_range = torch.as_tensor(data_range, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


def huber(
    prediction: torch.Tensor,
    target: torch.Tensor,
    delta: float = HUBER_DELTA,
    *,
    membrane_weight: float = 1.0,
):
    """Mean Huber loss (quadratic below ``delta``, linear above), as Keras' ``Huber``.

    With ``membrane_weight`` != 1, membrane pixels (target > 0) weigh that much more
    than background pixels and the loss is the weighted mean.
    """
    if membrane_weight == 1.0:
        return F.huber_loss(prediction, target, delta=delta)
    weight = torch.where(target > 0, float(membrane_weight), 1.0)
    loss = F.huber_loss(prediction, target, delta=delta, reduction="none")
    return (weight * loss).sum() / weight.sum()


def soft_dice_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1.0):
    """1 − soft Dice per channel, averaged over channels, of tanh outputs and ±1 targets.

    Probabilities ``(tanh + 1) / 2`` against ``target > 0``, pooled over the batch and
    the pixels of each channel (nnU-Net's batch Dice); ``eps`` smooths empty channels.
    Unlike a per-pixel loss it does not let a thin, rare class (membranes, a few
    percent of the pixels) settle at "background everywhere".
    """
    p = (prediction.float() + 1) / 2
    t = (target > 0).float()
    dims = (0, *range(2, p.ndim))
    both = (p * t).sum(dims)
    total = p.sum(dims) + t.sum(dims)
    return (1 - (2 * both + eps) / (total + eps)).mean()


def image_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Huber(δ = 0.1) + (1 − SSIM) between the reconstruction and its target image.

    SSIM's data range is each target's own max − min (a standardised crop spans a few
    units; using its own range keeps the SSIM constants in proportion).
    """
    reconstruction, target = reconstruction.float(), target.float()
    data_range = (target.amax(dim=(1, 2, 3)) - target.amin(dim=(1, 2, 3))).clamp_min(1e-3)
    similarity = ssim(reconstruction, target, data_range=data_range.detach())
    return huber(reconstruction, target) + (1 - similarity).mean()
