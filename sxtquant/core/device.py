"""Where the network runs: ``auto``, ``cpu``, ``cuda`` (or ``cuda:N``).

Importing this module does not load torch (the command line reads :data:`DEVICES`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "resolve_device"]

#: The device choices every verb offers.
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as :class:`torch.device`.

    Raises
    ------
    ValueError
        ``cuda`` asked for but not available, or an unknown device string.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    text = str(device).lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but no CUDA device is available")
    return dev
