"""Scoring segmentations: pixel metrics, expert classes, baselines, matching against truth,
bootstrap intervals."""

from sxtquant.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "baselines": (
            "DEFAULT_SIGMAS",
            "FEATURES_PER_SIGMA",
            "Polarity",
            "feature_names",
            "filter_features",
            "OtsuBaseline",
            "RandomForestBaseline",
        ),
        "classes": ("expert_classes", "summarize_classes"),
        "intervals": (
            "LEVEL",
            "PIXEL_COUNTS",
            "SAMPLES",
            "TOLERANCE_COUNTS",
            "Resampling",
            "bootstrap_weights",
            "count_intervals",
            "paired_count_intervals",
            "paired_tomogram_interval",
            "pixel_scores",
            "tolerance_scores",
            "tomogram_interval",
        ),
        "matching": (
            "FilopodiumQuantity",
            "FILOPODIUM_QUANTITIES",
            "match_filopodia",
            "matching_summary",
        ),
        "metrics": (
            "DEFAULT_THRESHOLD",
            "CLASS_KEYS",
            "PIXEL_KEYS",
            "binarize",
            "slice_counts",
            "pixel_metrics",
            "per_slice_metrics",
            "tolerance_metrics",
            "image_accuracy_per_slice",
            "image_accuracy",
        ),
        "scoring": ("evaluate", "evaluate_files"),
    },
)
