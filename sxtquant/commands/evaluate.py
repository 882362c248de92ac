"""sxtquant evaluate: pixel metrics and expert-comparison classes of a prediction against truth."""

from __future__ import annotations

import argparse

from sxtquant.errors import NotReadyError

HELP = "pixel metrics and expert-comparison classes of a prediction against truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant evaluate`."""


def run(args: argparse.Namespace) -> int:
    raise NotReadyError("the 'evaluate' verb is not implemented yet (issue #6)")
