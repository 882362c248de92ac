"""A cryo-SXT simulator with exact ground truth: cell, tilt series, reconstruction."""

from sxtquant.core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "cell": (
            "LAC_PER_UM",
            "CLASSES",
            "BILAYER_NM",
            "PERINUCLEAR_SPACE_NM",
            "CellContent",
            "Phantom",
        ),
        "conditions": (
            "TRAINING_RANGES",
            "HELD_OUT_RANGES",
            "sample_conditions",
            "conditions_dict",
        ),
        "files": ("write_dataset", "write_previews", "write_simulation"),
        "phantom": ("make_phantom",),
        "regions": ("region_masks", "region_labels"),
        "shapes": (
            "ellipse_perimeter",
            "ellipsoid_surface_area",
            "random_rotation",
            "Section",
            "Shape",
            "Ellipsoid",
            "Sphere",
            "Capsule",
            "Cylinder",
            "place",
            "digitize",
            "paint",
            "section_truth",
        ),
        "tomogram": ("Simulation", "artifact_mask", "simulate_tomogram"),
        "tomography": ("Acquisition", "TiltSeries", "tilt_angles", "acquire", "reconstruct"),
    },
)
