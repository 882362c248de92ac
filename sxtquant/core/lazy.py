"""Lazy re-exports for the stage packages: a name is imported when first used.

``from sxtquant.nn import load_model`` imports :mod:`sxtquant.nn.checkpoint` (and
torch) then, not when :mod:`sxtquant.nn` itself is imported, so the command line's
``--help`` and the torch-free modules of a package stay fast to import.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence


def lazy_exports(
    package: str, table: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` of a package that re-exports these names.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    table : mapping
        Submodule name (relative to the package, or absolute: ``sxtquant.x.y``) -> the
        names it exports.

    Examples
    --------
    In ``sxtquant/nn/__init__.py``::

        __getattr__, __dir__, __all__ = lazy_exports(__name__, {"checkpoint": ["load_model"]})
    """
    where = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        absolute = module if module.startswith("sxtquant.") else f"{package}.{module}"
        value = getattr(importlib.import_module(absolute), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(where) | set(vars(sys.modules[package])))

    return __getattr__, __dir__, sorted(where)
