"""sxtquant simulate: simulate a cryo-SXT tomogram of a cell with exact ground truth."""

from __future__ import annotations

import argparse

from sxtquant.errors import NotReadyError

HELP = "simulate a cryo-SXT tomogram of a cell with exact ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant simulate`."""


def run(args: argparse.Namespace) -> int:
    raise NotReadyError("the 'simulate' verb is not implemented yet (issue #3)")
