"""The network a training run starts from: a preset with the run's input slices and heads,
or a trained model to fine-tune (``--init``), checked against the run's options."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from sxtquant.core.errors import InputError
from sxtquant.nn.checkpoint import load_model
from sxtquant.nn.config import PRESETS as MODEL_PRESETS
from sxtquant.nn.config import REGIONS
from sxtquant.train.config import TrainConfig


def model_config_of(config: TrainConfig, preset: str | None = None):
    """The network a run trains: the preset, with the run's input slices and heads."""
    return dataclasses.replace(
        MODEL_PRESETS[preset or config.preset],
        in_slices=config.in_slices,
        regions=REGIONS if config.regions else (),
    )


def training_options(preset: str, in_slices: int, regions: bool) -> str:
    """The `sxtquant train` options that build such a network:
    '--preset P [--in-slices K] [--regions]'."""
    options = f"--preset {preset}"
    if in_slices > 1:
        options += f" --in-slices {in_slices}"
    return options + (" --regions" if regions else "")


def _kind_of(config: TrainConfig) -> str:
    """'' for the 2D membrane-only network, else its input slices and heads, for messages."""
    if config.in_slices == 1 and not config.regions:
        return ""
    return f" with {config.in_slices} input slice(s){' and region heads' if config.regions else ''}"


def initial_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """The trained model ``config.init`` to fine-tune; it must be a ``config.preset`` network
    with the run's input slices and heads."""
    model = load_model(config.init, device=device)

    def is_preset(preset) -> bool:  # the batch-norm momentum is a training setting
        wanted = model_config_of(config, preset)
        return dataclasses.replace(model.config, bn_momentum=wanted.bn_momentum) == wanted

    if not is_preset(config.preset):
        raise InputError(
            config.init,
            f"is not a {config.preset} network{_kind_of(config)}" + _fine_tune_hint(model, config),
        )
    return model


def _fine_tune_hint(model: nn.Module, config: TrainConfig) -> str:
    """'; fine-tune it with --preset P [--in-slices K] [--regions]' for the options that fit
    ``model`` (empty when no preset does), and the shipped 2D model for a 2D run."""
    own = model.config
    for name, preset in MODEL_PRESETS.items():
        wanted = dataclasses.replace(
            preset, in_slices=own.in_slices, regions=own.regions, bn_momentum=own.bn_momentum
        )
        if wanted == own:
            options = training_options(name, own.in_slices, bool(own.regions))
            break
    else:
        return ""
    hint = f"; fine-tune it with {options}"
    if (own.in_slices > 1 or own.regions) and config.in_slices == 1 and not config.regions:
        hint += " (3D stacks; with --regions, region labels too), or start from membrane-2d"
        hint += " (the shipped 2D membrane-only model) for membrane labels on single slices"
    return hint
