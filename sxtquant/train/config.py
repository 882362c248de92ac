"""The settings of a training run, as one frozen config."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from sxtquant.core.defaults import THRESHOLD
from sxtquant.core.device import DEVICES

PRESETS = ("tiny", "small", "base", "paper")  # the presets of sxtquant.nn.config
SIZE_MULTIPLE = 16  # the network pools four times


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (saved with every checkpoint).

    Parameters
    ----------
    preset : {"tiny", "small", "base", "paper"}
        Network width (:func:`sxtquant.nn.network.build_model`); ``paper`` is the reference.
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    steps_per_epoch : int
        Supervised steps per epoch.
    batch_size : int
        Crops per step (supervised and unsupervised steps alike).
    crop : int
        Side of the square training crops in pixels; a multiple of 16.
    lr : float
        Adam learning rate (the paper: 1e-4; 1e-3 and above fails to train).
    image_loss_weight : float
        Weight of the image loss in the supervised step's loss. The reference
        implementation gives the image term 0.01 against 0.99 for the label term.
    unsupervised_ratio : float
        Unsupervised steps per supervised step (1.0: strict alternation; 0.5: one
        unsupervised step after every second supervised step).
    patience : int
        Stop when the validation loss has not improved for this many epochs;
        0 never stops early.
    validation_fraction : float
        Fraction of the labelled slices held out for validation (split by slice).
    seed : int
        Seeds the weight initialisation, the split and every crop and flip.
    supervised_only : bool
        Train the U-Net branch (encoder + label decoder) on labelled data alone.
    device : {"auto", "cpu", "cuda"}
        ``auto`` takes CUDA when available.
    num_workers : int or None
        Data-loading processes; ``None``: 0 on CPU, up to 8 on CUDA.
    threshold : float
        Decision threshold on the probability (tanh + 1) / 2 for the validation
        pixel metrics; a pixel is positive when its probability is > threshold.
    membrane_weight : float
        Weight of membrane pixels against background pixels in the label loss (1: the
        paper's plain Huber loss). Thin membranes are a few percent of the pixels; a
        weight of 2-5 makes a short run learn them sooner, at some cost in precision.
    bn_momentum : float or None
        Batch-norm momentum (PyTorch convention) of a new network; ``None`` keeps the
        reference's Keras default (0.01), whose running statistics take thousands of
        steps to settle. Short CPU runs train better with 0.1 (PyTorch's default).
    init : str or None
        Start from the weights of this trained model (a checkpoint folder or a shipped
        model name such as ``default``) instead of a random initialisation: fine-tuning.
        Its architecture must be the ``preset``'s; ``bn_momentum`` is then the model's.
        A resumed run continues from its own checkpoint and ignores ``init``.
    in_slices : int
        Adjacent z slices the network sees (odd; 1 = the paper's 2D network, 5 or 7 =
        2.5D context); needs the slices' neighbours (3D stacks) in the training data.
    dice_weight : float
        Weight of a soft Dice loss added to the Huber loss of every label head (0: the
        paper's Huber loss alone). Thin, rare classes -- membranes, organelle interiors
        -- then cannot settle at "background everywhere"; 1 is nnU-Net's balance.
    regions : bool
        Also train the region heads (cell interior, organelle interior) on the data's
        ``labeled/regions`` (nested targets, one tanh head each, Huber loss).
    """

    preset: Literal["tiny", "small", "base", "paper"] = "paper"
    epochs: int = 50
    steps_per_epoch: int = 200
    batch_size: int = 8
    crop: int = 256
    lr: float = 1e-4
    image_loss_weight: float = 0.01
    unsupervised_ratio: float = 1.0
    patience: int = 10
    validation_fraction: float = 0.1
    seed: int = 0
    supervised_only: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int | None = None
    threshold: float = THRESHOLD
    bn_momentum: float | None = None
    membrane_weight: float = 1.0
    init: str | None = None
    in_slices: int = 1
    regions: bool = False
    dice_weight: float = 0.0

    def __post_init__(self):
        problems = []
        if not (self.dice_weight >= 0 and math.isfinite(self.dice_weight)):
            problems.append(f"dice_weight must be >= 0, got {self.dice_weight}")
        if self.in_slices < 1 or self.in_slices % 2 == 0:
            problems.append(f"in_slices must be an odd number >= 1, got {self.in_slices}")
        if self.preset not in PRESETS:
            problems.append(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.device not in DEVICES:
            problems.append(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name in ("epochs", "steps_per_epoch", "batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.crop < SIZE_MULTIPLE or self.crop % SIZE_MULTIPLE:
            problems.append(f"crop must be a positive multiple of 16, got {self.crop}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr must be a positive number, got {self.lr}")
        if not (self.image_loss_weight >= 0 and math.isfinite(self.image_loss_weight)):
            problems.append(f"image_loss_weight must be >= 0, got {self.image_loss_weight}")
        if not (self.unsupervised_ratio >= 0 and math.isfinite(self.unsupervised_ratio)):
            problems.append(f"unsupervised_ratio must be >= 0, got {self.unsupervised_ratio}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if self.patience < 0:
            problems.append(f"patience must be >= 0, got {self.patience}")
        if not 0 < self.validation_fraction < 1:
            problems.append(
                f"validation_fraction must be between 0 and 1, got {self.validation_fraction}"
            )
        if self.num_workers is not None and self.num_workers < 0:
            problems.append(f"num_workers must be >= 0, got {self.num_workers}")
        if not 0 <= self.threshold < 1:
            problems.append(f"threshold must be in [0, 1), got {self.threshold}")
        if not (self.membrane_weight > 0 and math.isfinite(self.membrane_weight)):
            problems.append(f"membrane_weight must be > 0, got {self.membrane_weight}")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            problems.append(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        """A JSON-able dict of the fields (``in_slices``, ``regions`` and ``dice_weight``
        only when they differ from the paper's default, so older records read the same)."""
        values = dataclasses.asdict(self)
        for name in ("in_slices", "regions", "dice_weight"):
            if values[name] == _DEFAULTS[name]:
                del values[name]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The config of :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
