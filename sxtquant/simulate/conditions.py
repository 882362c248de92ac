"""The acquisition and cell conditions of training and held-out test tomograms."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Literal

import numpy as np

from sxtquant.simulate.cell import CellContent
from sxtquant.simulate.tomography import Acquisition

#: Condition ranges the training set draws from. ``sample_conditions(split="test")``
#: draws from outside them, so a held-out test set probes conditions never trained on.
TRAINING_RANGES = {
    "tilt_max_deg": (62.0, 70.0),
    "blur_fwhm_nm": (20.0, 32.0),
    "dose": (1000.0, 5000.0),
    "organelle_density": (0.6, 1.6),
    "filopodia": (2, 10),
    "cytoplasm_lac": (0.22, 0.30),
    "jitter_px": (0.0, 0.5),
}


#: The held-out conditions: narrower tilt range (±58–60°), Diamond-B24-like blur
#: (≈ 40 nm), half the dose or less, more misalignment.
HELD_OUT_RANGES = {
    "tilt_max_deg": (58.0, 60.0),
    "blur_fwhm_nm": (38.0, 42.0),
    "dose": (500.0, 950.0),
    "organelle_density": (0.6, 1.6),
    "filopodia": (2, 10),
    "cytoplasm_lac": (0.22, 0.30),
    "jitter_px": (0.5, 0.8),
}


#: The broad acquisition ranges a model meant for any beamline trains on
#: (``labeled_conditions="broad"``, labelled and unlabelled alike): tilt ranges from
#: ±55° to ±70° with the range shifted by up to 5°, blur from 20 to 50 nm, a dose from
#: a fifth to four times the default (log-uniform), misalignment up to 1 pixel, and
#: half the tomograms with a finite depth of focus. They contain the held-out ranges:
#: a model trained on them meets new cells, not new conditions, in the held-out set.
BROAD_RANGES = {
    "tilt_max_deg": (55.0, 70.0),
    "tilt_offset_deg": (-5.0, 5.0),
    "blur_fwhm_nm": (20.0, 50.0),
    "dose": (400.0, 8000.0),
    "jitter_px": (0.0, 1.0),
    "depth_of_focus_nm": (2000.0, 8000.0),
    "organelle_density": (0.4, 1.8),
    "filopodia": (2, 10),
    "cytoplasm_lac": (0.20, 0.32),
}


def _broad_conditions(rng: np.random.Generator) -> tuple[Acquisition, CellContent]:
    r = BROAD_RANGES
    content = CellContent(
        organelle_density=float(rng.uniform(*r["organelle_density"])),
        filopodia=int(rng.integers(r["filopodia"][0], r["filopodia"][1] + 1)),
        cytoplasm_lac=float(rng.uniform(*r["cytoplasm_lac"])),
    )
    tilt = float(np.round(rng.uniform(*r["tilt_max_deg"])))
    lo, hi = r["dose"]
    focus = float(rng.uniform(*r["depth_of_focus_nm"]))
    acq = Acquisition(
        tilt_max_deg=tilt,
        tilt_offset_deg=float(np.round(rng.uniform(*r["tilt_offset_deg"]))),
        blur_fwhm_nm=float(rng.uniform(*r["blur_fwhm_nm"])),
        dose=float(np.exp(rng.uniform(math.log(lo), math.log(hi)))),
        jitter_px=float(rng.uniform(*r["jitter_px"])),
        depth_of_focus_nm=focus if rng.random() < 0.5 else None,
    )
    return acq, content


def sample_conditions(
    rng: np.random.Generator,
    split: Literal["labeled", "unlabeled", "test"] = "unlabeled",
    *,
    labeled_conditions: Literal["standard", "varied", "broad"] = "standard",
) -> tuple[Acquisition, CellContent]:
    """Draw the acquisition and cell content of one tomogram of a training/test set.

    Parameters
    ----------
    rng : numpy Generator
    split : {"labeled", "unlabeled", "test"}
        ``labeled``: the standard conditions (±65°, 25 nm blur, default dose), only the
        cell content varies, like the few expert-labelled tomograms of the paper (with
        ``labeled_conditions="varied"``: drawn from :data:`TRAINING_RANGES` too).
        ``unlabeled``: every condition drawn from :data:`TRAINING_RANGES`, so the
        unlabelled data covers conditions the labels don't.
        ``test``: drawn from :data:`HELD_OUT_RANGES`, disjoint from the training
        ranges in tilt range, blur, dose and jitter.
    labeled_conditions : {"standard", "varied"}
        The acquisition of ``labeled`` tomograms: all at the standard conditions, or
        each drawn from the training ranges like the unlabelled ones (labels taken
        under several microscopes' conditions), or, with ``broad``, labelled and
        unlabelled tomograms drawn from :data:`BROAD_RANGES`.

    Returns
    -------
    (Acquisition, CellContent)
    """
    if split not in ("labeled", "unlabeled", "test"):
        raise ValueError(f"split must be labeled, unlabeled or test, got {split!r}")
    if labeled_conditions not in ("standard", "varied", "broad"):
        raise ValueError(
            f"labeled_conditions must be standard, varied or broad, got {labeled_conditions!r}"
        )
    if labeled_conditions == "broad" and split != "test":
        return _broad_conditions(rng)
    ranges = HELD_OUT_RANGES if split == "test" else TRAINING_RANGES
    content = CellContent(
        organelle_density=float(rng.uniform(*ranges["organelle_density"])),
        filopodia=int(rng.integers(ranges["filopodia"][0], ranges["filopodia"][1] + 1)),
        cytoplasm_lac=float(rng.uniform(*ranges["cytoplasm_lac"])),
    )
    if split == "labeled" and labeled_conditions == "standard":
        return Acquisition(), content
    lo, hi = ranges["dose"]
    acq = Acquisition(
        tilt_max_deg=float(np.round(rng.uniform(*ranges["tilt_max_deg"]))),
        blur_fwhm_nm=float(rng.uniform(*ranges["blur_fwhm_nm"])),
        dose=float(np.exp(rng.uniform(math.log(lo), math.log(hi)))),
        jitter_px=float(rng.uniform(*ranges["jitter_px"])),
    )
    return acq, content


def conditions_dict(acquisition: Acquisition, content: CellContent) -> dict:
    """The conditions of a tomogram as plain JSON-ready dicts."""
    return {"acquisition": asdict(acquisition), "content": asdict(content)}
