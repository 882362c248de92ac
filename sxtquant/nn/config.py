"""The architecture of the two-headed network as a frozen config; the presets."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The filled-region heads a network may have besides the membrane.
REGIONS = ("cell", "organelles")

# Keras BatchNormalization defaults used by the reference (epsilon 1e-3, momentum 0.99).
KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # PyTorch convention: 1 - Keras momentum


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the two-headed network; a preset is one of these.

    Parameters
    ----------
    width : int
        m, the number of filters of the first encoder stage (paper: 64). Encoder
        stages have ``[m, m, 2m, 4m, 8m]`` filters, the neck ``16m``, the decoders
        ``[8m, 4m, 2m, m, m]``.
    n_stages : int
        Pooling stages of the encoder (and up-sampling stages of each decoder);
        input sizes must be multiples of ``2 ** n_stages``.
    kernel_size : int
        k of the k x k convolution inside every encoder/decoder bottleneck.
    neck_kernel_sizes : tuple of int
        One parallel neck path per kernel size (paper: 1, 2, 3).
    neck_depth : int
        Bottleneck + batch norm + ReLU layers per neck path.
    neck_width_factor : int
        Neck filters = ``neck_width_factor * width`` (paper: 16).
    encoder_blocks, image_decoder_blocks, label_decoder_blocks : int
        Residual blocks per stage (paper: 1, 1, 2).
    block_depth : int
        Bottlenecks per residual block (paper: 2).
    bn_eps, bn_momentum : float
        Batch-norm epsilon and (PyTorch-convention) momentum; Keras' defaults.
    in_slices : int
        k, the adjacent z slices the network sees as input channels (2.5D context;
        odd, the centre one is segmented; 1 = the paper's 2D network).
    regions : tuple of str
        Filled-region heads besides the membrane, in order, out of :data:`REGIONS`
        (``cell``: the cytoplasm side of the plasma membrane, filopodia and organelles
        included; ``organelles``: inside an organelle). Empty = the paper's one head.

    The two extensions change only the first convolution's input channels and the
    last convolution's output channels; ``paper`` and the other presets keep both
    off, and :meth:`to_dict` leaves them out when off, so configs written before they
    existed read back unchanged.
    """

    width: int = 64
    n_stages: int = 4
    kernel_size: int = 3
    neck_kernel_sizes: tuple[int, ...] = (1, 2, 3)
    neck_depth: int = 4
    neck_width_factor: int = 16
    encoder_blocks: int = 1
    image_decoder_blocks: int = 1
    label_decoder_blocks: int = 2
    block_depth: int = 2
    bn_eps: float = KERAS_BN_EPS
    bn_momentum: float = KERAS_BN_MOMENTUM
    in_slices: int = 1
    regions: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "neck_kernel_sizes", tuple(int(k) for k in self.neck_kernel_sizes))
        object.__setattr__(self, "regions", tuple(str(r) for r in self.regions))
        positive = {
            "width": self.width,
            "n_stages": self.n_stages,
            "kernel_size": self.kernel_size,
            "neck_depth": self.neck_depth,
            "neck_width_factor": self.neck_width_factor,
            "encoder_blocks": self.encoder_blocks,
            "image_decoder_blocks": self.image_decoder_blocks,
            "label_decoder_blocks": self.label_decoder_blocks,
            "block_depth": self.block_depth,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if not self.neck_kernel_sizes or min(self.neck_kernel_sizes) < 1:
            raise ValueError(
                f"ModelConfig.neck_kernel_sizes must be positive, got {self.neck_kernel_sizes!r}"
            )
        if not (self.bn_eps > 0 and 0 <= self.bn_momentum <= 1):
            raise ValueError("ModelConfig.bn_eps must be > 0 and bn_momentum in [0, 1]")
        k = self.in_slices
        if not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0:
            raise ValueError(f"ModelConfig.in_slices must be a positive odd integer, got {k!r}")
        unknown = [r for r in self.regions if r not in REGIONS]
        if unknown or len(set(self.regions)) != len(self.regions):
            raise ValueError(
                f"ModelConfig.regions must be distinct names out of {', '.join(REGIONS)}, "
                f"got {self.regions!r}"
            )

    # -- derived sizes
    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (``2 ** n_stages``)."""
        return 2**self.n_stages

    @property
    def encoder_filters(self) -> tuple[int, ...]:
        """Filters of the initial block and of each encoder stage: ``[m, m, 2m, 4m, ...]``."""
        m = self.width
        return (m, *(m * 2**i for i in range(self.n_stages)))

    @property
    def decoder_filters(self) -> tuple[int, ...]:
        """Filters of each decoder stage, then of the final bottleneck: ``[8m, 4m, 2m, m, m]``."""
        return (*reversed(self.encoder_filters[1:]), self.width)

    @property
    def neck_filters(self) -> int:
        return self.neck_width_factor * self.width

    @property
    def heads(self) -> tuple[str, ...]:
        """The label decoder's output channels, in order: ``membrane``, then the regions."""
        return ("membrane", *self.regions)

    @property
    def is_reference(self) -> bool:
        """Whether this is the reference paper's kind of network (2D input, one head)."""
        return self.in_slices == 1 and not self.regions

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists); ``in_slices``/``regions`` only when set."""
        out = dataclasses.asdict(self)
        out["neck_kernel_sizes"] = list(self.neck_kernel_sizes)
        out["regions"] = list(self.regions)
        if self.in_slices == 1:
            del out["in_slices"]
        if not self.regions:
            del out["regions"]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**dict(data))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    def to_reference_dict(self) -> dict[str, Any]:
        """The same network as a config dict of the reference implementation.

        The layout of ``network_params/model_config_*.json`` in deep_sxt, so that
        the reference can build this very architecture (for example to generate
        test fixtures for the weight converter).

        Raises
        ------
        ValueError
            For a 2.5D or region-aware config, which the reference cannot build.
        """
        if not self.is_reference:
            raise ValueError(
                "the reference implementation has 1 input slice and 1 head; this config has "
                f"{self.in_slices} slices and heads {', '.join(self.heads)}"
            )
        k = self.kernel_size
        ks = [k] * (self.n_stages + 1)
        common = {
            "activation": {"type": "relu"},
            "dropout": {"active": False},
            "batch_norm": {"active": True},
        }

        def decoder(blocks: int, skips: bool) -> dict[str, Any]:
            return {
                "kernel_sizes": list(ks),
                "n_stages": self.n_stages,
                "n_blocks": blocks,
                "block_depth": self.block_depth,
                "add_instead_of_concat": False,
                "use_skip_connections": skips,
                "n_filters": list(self.decoder_filters),
                **common,
            }

        return {
            "pooling": None,
            "m_f": self.width,
            "add_instead_of_concat_after_neck": False,
            "encoder": {
                "kernel_sizes": list(ks),
                "n_stages": self.n_stages,
                "n_blocks": self.encoder_blocks,
                "block_depth": self.block_depth,
                "add_instead_of_concat": False,
                "n_filters": list(self.encoder_filters),
                **common,
            },
            "neck": {
                "kernel_sizes": list(self.neck_kernel_sizes),
                "depth": self.neck_depth,
                "n_filters": self.neck_filters,
                **common,
            },
            "decoder_image": decoder(self.image_decoder_blocks, False),
            "decoder_label": decoder(self.label_decoder_blocks, True),
        }

    @classmethod
    def from_reference_dict(cls, ref: Mapping[str, Any]) -> ModelConfig:
        """Read a reference config (deep_sxt JSON layout) into a :class:`ModelConfig`.

        Raises
        ------
        ValueError
            If the reference config uses a feature this re-implementation does not
            have (additive skips, per-stage kernel sizes, other activations, dropout,
            filter counts that do not follow ``m, m, 2m, ...``).
        """
        try:
            m = int(ref["m_f"])
            enc, neck = ref["encoder"], ref["neck"]
            dimg, dlbl = ref["decoder_image"], ref["decoder_label"]
            n_stages = int(enc["n_stages"])
            kernel_sizes = {int(k) for part in (enc, dimg, dlbl) for k in part["kernel_sizes"]}
            config = cls(
                width=m,
                n_stages=n_stages,
                kernel_size=kernel_sizes.pop() if len(kernel_sizes) == 1 else -1,
                neck_kernel_sizes=tuple(int(k) for k in neck["kernel_sizes"]),
                neck_depth=int(neck["depth"]),
                neck_width_factor=int(neck["n_filters"]) // m,
                encoder_blocks=int(enc["n_blocks"]),
                image_decoder_blocks=int(dimg["n_blocks"]),
                label_decoder_blocks=int(dlbl["n_blocks"]),
                block_depth=int(enc["block_depth"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a reference model config: missing or bad {exc}") from exc
        problems = []
        pooling = ref.get("pooling") or {"type": "max_pooling", "factor": 2}
        if pooling != {"type": "max_pooling", "factor": 2}:
            problems.append(f"pooling {pooling}")
        if ref.get("add_instead_of_concat_after_neck"):
            problems.append("add_instead_of_concat_after_neck")
        if list(enc["n_filters"]) != list(config.encoder_filters):
            problems.append(f"encoder n_filters {enc['n_filters']}")
        if int(neck["n_filters"]) != config.neck_filters:
            problems.append(f"neck n_filters {neck['n_filters']}")
        for name, part, skips in (("decoder_image", dimg, False), ("decoder_label", dlbl, True)):
            if list(part["n_filters"]) != list(config.decoder_filters):
                problems.append(f"{name} n_filters {part['n_filters']}")
            if int(part["n_stages"]) != n_stages or int(part["block_depth"]) != config.block_depth:
                problems.append(f"{name} n_stages/block_depth")
            if bool(part.get("use_skip_connections")) != skips:
                problems.append(f"{name} use_skip_connections")
        for name, part in (("encoder", enc), ("neck", neck), ("decoder_image", dimg),
                           ("decoder_label", dlbl)):  # fmt: skip
            if part.get("add_instead_of_concat"):
                problems.append(f"{name} add_instead_of_concat")
            if (part.get("activation") or {}).get("type") != "relu":
                problems.append(f"{name} activation {part.get('activation')}")
            if (part.get("dropout") or {}).get("active"):
                problems.append(f"{name} dropout")
            if not (part.get("batch_norm") or {}).get("active", False):
                problems.append(f"{name} without batch norm")
        if problems:
            raise ValueError("reference config not supported: " + "; ".join(problems))
        return config


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(width=64),
    "base": ModelConfig(width=32),
    "small": ModelConfig(width=16),
    "tiny": ModelConfig(width=8),
}


def _as_config(preset_or_config: str | ModelConfig | Mapping[str, Any]) -> ModelConfig:
    if isinstance(preset_or_config, ModelConfig):
        return preset_or_config
    if isinstance(preset_or_config, str):
        try:
            return PRESETS[preset_or_config]
        except KeyError:
            raise ValueError(
                f"unknown model preset {preset_or_config!r}; choose one of {', '.join(PRESETS)}"
            ) from None
    if isinstance(preset_or_config, Mapping):
        return ModelConfig.from_dict(preset_or_config)
    raise TypeError(f"expected a preset name or a ModelConfig, got {type(preset_or_config)!r}")
