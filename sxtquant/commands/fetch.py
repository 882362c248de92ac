"""sxtquant fetch: download a data set or weight file of the data manifest (checksum-verified)."""

from __future__ import annotations

import argparse

from sxtquant.errors import NotReadyError

HELP = "download a data set or weight file of the data manifest (checksum-verified)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant fetch`."""


def run(args: argparse.Namespace) -> int:
    raise NotReadyError("the 'fetch' verb is not implemented yet (issue #6)")
