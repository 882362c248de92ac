"""sxtquant segment: segment membranes in tomograms with the network (probability + mask)."""

from __future__ import annotations

import argparse

from sxtquant.errors import NotReadyError

HELP = "segment membranes in tomograms with the network (probability + mask)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant segment`."""


def run(args: argparse.Namespace) -> int:
    raise NotReadyError("the 'segment' verb is not implemented yet (issue #4)")
