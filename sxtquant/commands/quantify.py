"""sxtquant quantify: measure objects of a mask in physical units (nm) into a CSV table."""

from __future__ import annotations

import argparse

from sxtquant.errors import NotReadyError

HELP = "measure objects of a mask in physical units (nm) into a CSV table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant quantify`."""


def run(args: argparse.Namespace) -> int:
    raise NotReadyError("the 'quantify' verb is not implemented yet (issue #5)")
