"""sxtquant mesh: surface meshes of the objects of a mask (STL, PLY, OBJ, GLB, VTK)."""

from __future__ import annotations

import argparse

from sxtquant.errors import NotReadyError

HELP = "surface meshes of the objects of a mask (STL, PLY, OBJ, GLB, VTK)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant mesh`."""


def run(args: argparse.Namespace) -> int:
    raise NotReadyError("the 'mesh' verb is not implemented yet (issue #5)")
