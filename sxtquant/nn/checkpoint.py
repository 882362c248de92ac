"""Checkpoint folders: config.json + weights.pt; the shipped models."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sxtquant.core.errors import InputError
from sxtquant.io.files import atomic_output
from sxtquant.nn.config import PRESETS, ModelConfig
from sxtquant.nn.network import SXTNet

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "metadata.json"
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
SHIPPED_MODELS = ("default", "membrane-2d")


def save_checkpoint(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a self-describing checkpoint folder.

    ``folder/config.json`` (the :class:`ModelConfig`), ``folder/weights.pt``
    (the state dict, with batch-norm statistics, saved with :func:`torch.save`)
    and, when given, ``folder/metadata.json``. Files are written to temporary
    names and renamed, so a crash leaves no half-written checkpoint file.

    Returns
    -------
    Path
        The folder.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError("save_checkpoint needs a model built by build_model (with a .config)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(folder / CONFIG_FILE) as tmp:
        tmp.write_text(config.to_json() + "\n")
    with atomic_output(folder / WEIGHTS_FILE) as tmp:
        torch.save(state, tmp)
    if metadata is not None:
        with atomic_output(folder / METADATA_FILE) as tmp:
            tmp.write_text(json.dumps(dict(metadata), indent=2, default=str) + "\n")
    return folder


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint folder of a shipped model name or a path.

    Raises
    ------
    InputError
        Unknown name, missing folder, or a folder that is not a checkpoint.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if text in SHIPPED_MODELS and not path.exists():
        folder = SHIPPED_MODELS_DIR / text
        if not (folder / CONFIG_FILE).is_file():
            raise InputError(
                text,
                "the shipped model is not installed in this copy of sxtquant "
                f"(expected {folder}); train one with 'sxtquant train', or convert the "
                "published weights with 'sxtquant convert', and pass its folder with --model",
            )
        return folder
    if text in PRESETS and not path.exists():
        raise InputError(
            text,
            "is an untrained architecture preset, not a trained model; pass a checkpoint "
            "folder (from 'sxtquant train' or 'sxtquant convert') or a shipped model name "
            f"({', '.join(SHIPPED_MODELS)})",
        )
    if not path.exists():
        raise InputError(
            text,
            "no such model: neither a checkpoint folder nor a shipped model name "
            f"({', '.join(SHIPPED_MODELS)})",
        )
    if path.is_file() and path.name in (CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent
    if not path.is_dir():
        raise InputError(
            text, f"not a checkpoint folder (expected {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise InputError(text, f"not a checkpoint folder: {name} is missing")
    return path


def load_model(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu") -> SXTNet:
    """Load a trained network, in eval mode.

    Parameters
    ----------
    name_or_path : str or path
        A checkpoint folder written by :func:`save_checkpoint` (``config.json`` +
        ``weights.pt``) or the name of a model shipped inside the package
        (``default``). Architecture presets (``paper``...) are untrained and not loadable.
    device : str or torch.device

    Raises
    ------
    InputError
        Unknown name, missing or malformed checkpoint, weights that do not fit the config.
    """
    folder = resolve_model_path(name_or_path)
    source = os.fspath(name_or_path)
    try:
        config = ModelConfig.from_json((folder / CONFIG_FILE).read_text())
    except (ValueError, TypeError) as exc:
        raise InputError(folder / CONFIG_FILE, f"not a valid model config: {exc}") from None
    model = SXTNet(config)
    try:
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or truncated file
        raise InputError(folder / WEIGHTS_FILE, f"cannot read weights: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(
            source, f"weights do not fit its config: {' '.join(first[:3])[:400]}"
        ) from None
    return model.to(device).eval()
