"""The reference paper's numbers, in one place (harness, report and figures read them)."""

#: The reference paper's numbers (Dyhr et al., PNAS 120(24) e2209938120, 2023).
PAPER = {
    "semi_vs_supervised_median_precision_gain_pct": 14.0,  # Fig. 2A, "at least 14 %"
    "holdout_accuracy": 0.97,
    "holdout_precision": 0.74,
    "holdout_image_accuracy": 0.80,  # "> 80 %"
    "classes_mean": {
        "true_positive": 69.8,
        "false_negative": 27.7,
        "false_positive": 1.3,
        "artifact": 1.2,
    },
    "classes_sd": {
        "true_positive": 10.4,
        "false_negative": 10.8,
        "false_positive": 2.2,
        "artifact": 2.1,
    },
    "speed_slices": 350,
    "speed_slice_shape": (1324, 1284),
    "speed_seconds": 300.0,  # "< 5 min"
    "speed_hardware": "NVIDIA RTX 3090",
    "sweep_parameters": (1_000_000, 76_483_502),  # Fig. S7A, 1 M to 76 M
}
