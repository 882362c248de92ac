"""sxtquant demo: end-to-end demonstration: simulate, segment, quantify, report."""

from __future__ import annotations

import argparse

from sxtquant.errors import NotReadyError

HELP = "end-to-end demonstration: simulate, segment, quantify, report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant demo`."""


def run(args: argparse.Namespace) -> int:
    raise NotReadyError("the 'demo' verb is not implemented yet (issue #7)")
