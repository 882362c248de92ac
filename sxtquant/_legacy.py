"""The module paths of sxtquant 0.1's flat layout, kept working for user code.

Before the stage packages, every stage was one module (``sxtquant.model``,
``sxtquant.infer``, ``sxtquant.morphology``...). ``import sxtquant.morphology`` still
works: a finder installed by ``sxtquant/__init__.py`` answers these names. An old path
that became one new module *is* that module (``sxtquant.morphology`` is
:mod:`sxtquant.quantify.morphology`); one whose contents were split is a small module
that looks each name up in the new modules, in order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old module -> the modules that now hold its names
MOVED: dict[str, tuple[str, ...]] = {
    "sxtquant.errors": ("sxtquant.core.errors",),
    "sxtquant.utils": ("sxtquant.core.progress", "sxtquant.core.voxels"),
    "sxtquant.fetch": ("sxtquant.io.fetch",),
    "sxtquant.shapes": ("sxtquant.simulate.shapes",),
    "sxtquant.model": (
        "sxtquant.nn.config",
        "sxtquant.nn.layers",
        "sxtquant.nn.network",
        "sxtquant.nn.inference",
        "sxtquant.nn.checkpoint",
    ),
    "sxtquant.fastinfer": ("sxtquant.nn.fastform",),
    "sxtquant.infer": ("sxtquant.nn.predict", "sxtquant.nn.tiling"),
    "sxtquant.convert": ("sxtquant.nn.keras",),
    "sxtquant.postprocess": ("sxtquant.quantify.postprocess",),
    "sxtquant.objects": ("sxtquant.quantify.objects",),
    "sxtquant.morphology": ("sxtquant.quantify.morphology",),
    "sxtquant.filopodia": ("sxtquant.quantify.filopodia", "sxtquant.report.filopodia_plot"),
    "sxtquant.mesh": ("sxtquant.quantify.mesh", "sxtquant.report.render"),
    "sxtquant.metrics": (
        "sxtquant.evaluate.metrics",
        "sxtquant.evaluate.classes",
        "sxtquant.evaluate.scoring",
    ),
    "sxtquant.baselines": ("sxtquant.evaluate.baselines",),
    "sxtquant.report": (
        "sxtquant.report.figures",
        "sxtquant.evaluate.matching",
        "sxtquant.report.html",
    ),
    "sxtquant.batch": (
        "sxtquant.scale.batch",
        "sxtquant.scale.schedulers",
        "sxtquant.scale.records",
        "sxtquant.cli.options",
    ),
    "sxtquant.blockwise": ("sxtquant.scale.blocks", "sxtquant.scale.block_objects"),
    "sxtquant.commands": ("sxtquant.cli", "sxtquant.cli.options"),
    **{
        f"sxtquant.commands.{verb}": (f"sxtquant.cli.{verb}",)
        for verb in (
            "convert",
            "demo",
            "evaluate",
            "fetch",
            "info",
            "mesh",
            "quantify",
            "segment",
            "simulate",
            "train",
        )
    },
}


class _Loader(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...]):
        self.targets = targets

    def create_module(self, spec):
        if len(self.targets) == 1:
            module = importlib.import_module(self.targets[0])
            self.spec = module.__spec__
            return module
        return None  # a fresh module, filled in by exec_module

    def exec_module(self, module) -> None:
        if len(self.targets) == 1:
            # the import system gave the module the old name's spec: give it back its own
            module.__spec__ = self.spec
            module.__loader__ = self.spec.loader
            return
        targets = self.targets
        module.__doc__ = f"Old path of {', '.join(targets)} (see sxtquant._legacy)."

        def __getattr__(name: str):
            for target in targets:
                value = getattr(importlib.import_module(target), name, _MISSING)
                if value is not _MISSING:
                    return value
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

        module.__getattr__ = __getattr__
        module.__path__ = []  # a package, so that old submodule paths resolve too


_MISSING = object()


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        targets = MOVED.get(fullname)
        if targets is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Loader(targets))


def install() -> None:
    """Answer the old module paths (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())


__all__ = ["MOVED", "install"]
