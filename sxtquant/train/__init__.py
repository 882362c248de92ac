"""Training the network: configuration, data, losses, steps, the loop and its checkpoints."""

from sxtquant.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "sxtquant.core.device": ("DEVICES", "resolve_device"),
        "config": ("PRESETS", "SIZE_MULTIPLE", "TrainConfig"),
        "data": (
            "TrainingData",
            "load_training_data",
            "split_slices",
            "label_target",
            "augment",
            "CropStream",
        ),
        "loop": (
            "LOG_COLUMNS",
            "TRAIN_STATE",
            "TrainResult",
            "save_training_checkpoint",
            "load_training_state",
            "write_log",
            "unsupervised_schedule",
            "train",
        ),
        "losses": (
            "HUBER_DELTA",
            "SSIM_WINDOW",
            "SSIM_SIGMA",
            "SSIM_K1",
            "SSIM_K2",
            "gaussian_window",
            "ssim",
            "huber",
            "image_loss",
        ),
        "steps": ("frozen", "supervised_step", "unsupervised_step", "validate"),
    },
)
