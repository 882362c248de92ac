"""sxtquant: segmentation and quantification of cryo-soft X-ray tomograms.

The package follows one data flow, each stage in its own module::

    io -> (simulate) -> infer -> postprocess -> objects -> morphology / mesh

with ``metrics`` beside it. Arrays are numpy arrays in (z, y, x) order and
lengths are in nanometres. Importing :mod:`sxtquant` is cheap: torch and the
other heavy dependencies are imported by the modules that need them.
"""

__version__ = "0.1.0"

from sxtquant.errors import InputError

__all__ = ["InputError", "__version__"]
