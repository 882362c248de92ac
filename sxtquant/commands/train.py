"""sxtquant train: train the two-headed network semi-supervised (or supervised only)."""

from __future__ import annotations

import argparse

from sxtquant.errors import NotReadyError

HELP = "train the two-headed network semi-supervised (or supervised only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant train`."""


def run(args: argparse.Namespace) -> int:
    raise NotReadyError("the 'train' verb is not implemented yet (issue #4)")
