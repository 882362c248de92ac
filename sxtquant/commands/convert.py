"""sxtquant convert: convert the reference implementation's Keras weights to an sxtquant model."""

from __future__ import annotations

import argparse

from sxtquant.errors import NotReadyError

HELP = "convert the reference implementation's Keras weights to an sxtquant model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant convert`."""


def run(args: argparse.Namespace) -> int:
    raise NotReadyError("the 'convert' verb is not implemented yet (issue #8)")
