"""sxtquant: segmentation and quantification of cryo-soft X-ray tomograms.

One subpackage per pipeline stage, data flowing one way (``docs/architecture.md``)::

    io -> simulate -> nn -> quantify -> evaluate -> train -> scale -> pipeline -> report -> cli

:mod:`sxtquant.io` reads and writes files, :mod:`sxtquant.simulate` makes tomograms
with known truth, :mod:`sxtquant.nn` is the network and its tiled inference,
:mod:`sxtquant.quantify` turns membranes into objects and numbers,
:mod:`sxtquant.evaluate` scores segmentations, :mod:`sxtquant.train` trains the
network, :mod:`sxtquant.scale` runs batches and huge volumes on Dask,
:mod:`sxtquant.pipeline` chains segment -> objects -> filopodia for one tomogram,
:mod:`sxtquant.report` draws figures and pages, and :mod:`sxtquant.cli` is the
``sxtquant`` command. :mod:`sxtquant.core` holds what they share. Arrays are numpy
arrays in (z, y, x) order and lengths are in nanometres. Importing :mod:`sxtquant` is
cheap: torch and the other heavy dependencies are imported by the modules that need them.
"""

import os

# On a shared CPU, OpenMP threads that spin while waiting steal the cores from each
# other and from other processes (2-2.5x slower under load on 2 cores); passive
# waiting costs microseconds per layer. Read when torch loads, so it applies whenever
# sxtquant is imported before torch; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from sxtquant import _legacy
from sxtquant.core.errors import InputError

_legacy.install()

__all__ = ["InputError", "__version__"]
