"""The network: architecture, presets, checkpoints, inference forms, tiled prediction, Keras."""

from sxtquant.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "checkpoint": (
            "CONFIG_FILE",
            "WEIGHTS_FILE",
            "METADATA_FILE",
            "SHIPPED_MODELS_DIR",
            "SHIPPED_MODELS",
            "save_checkpoint",
            "resolve_model_path",
            "load_model",
        ),
        "config": ("KERAS_BN_EPS", "KERAS_BN_MOMENTUM", "ModelConfig", "PRESETS"),
        "fastform": ("CL", "onednn_available", "FastSXTNet"),
        "inference": ("prepare_for_inference",),
        "keras": (
            "KerasWeight",
            "sha256_of",
            "keras_weight_map",
            "infer_config",
            "load_keras_weights",
        ),
        "layers": (
            "SamePadConv2d",
            "SameConvTranspose2d",
            "Bottleneck",
            "Activation",
            "ResidualBlock",
            "Encoder",
            "NeckPath",
            "Neck",
            "Decoder",
        ),
        "network": (
            "SXTNet",
            "build_model",
            "count_parameters",
            "flops_per_tile",
            "flops_per_pixel",
            "standardize_slices",
        ),
        "predict": (
            "head_names",
            "iter_head_slices",
            "predict_heads",
            "iter_label_slices",
            "iter_probability_slices",
            "predict_slices",
            "predict_volume",
        ),
        "tiling": (
            "DEFAULT_TILE",
            "DEFAULT_OVERLAP",
            "DEFAULT_BATCH_SIZE",
            "tile_starts",
            "tile_window",
            "check_axes",
            "reflect_index",
        ),
    },
)
