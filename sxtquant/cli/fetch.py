"""sxtquant fetch: download a data set or weight file of the data manifest (checksum-verified).

The entries are those of data_manifest.yaml (see them with --list). Files go to
DATA_DIR/<folder>/, where DATA_DIR is --dest, else $SXTQUANT_DATA, else the user
cache (e.g. ~/.cache/sxtquant); the evaluation harness looks in the same place.
Every download is checked against the manifest's SHA-256 where it has one (a file
that does not match is deleted); where it has none, the checksum of what was
downloaded is written beside the file as NAME.sha256. An interrupted download is
resumed from where it stopped when the command is run again.

Without network access, or for data sets with no direct file address, the error
names the address to download from by hand and the folder to put the files in.

Examples:
  sxtquant fetch --list
  sxtquant fetch weights-2021-05 --dest /data/sxt
"""

from __future__ import annotations

import argparse

HELP = "download a data set or weight file of the data manifest (checksum-verified)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `sxtquant fetch`."""
    parser.add_argument("name", nargs="?", metavar="NAME", help="entry of the data manifest")
    parser.add_argument(
        "--dest",
        metavar="DIR",
        help="data folder (default: $SXTQUANT_DATA, else the user cache folder)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the entries of the manifest, their size and whether they are present",
    )
    parser.add_argument(
        "--manifest",
        metavar="YAML",
        help="another data manifest (default: data_manifest.yaml of sxtquant)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="times an interrupted transfer is resumed before giving up (default: 2)",
    )


def run(args: argparse.Namespace) -> int:
    from sxtquant.core.errors import InputError
    from sxtquant.io import fetch

    if args.list:
        _print_list(fetch, args)
        return 0
    if args.name is None:
        raise InputError("fetch", "give the NAME of a data set (see 'sxtquant fetch --list')")
    if args.retries < 0:
        raise InputError("--retries", f"must be >= 0, got {args.retries}")
    for path in fetch.fetch(args.name, args.dest, manifest=args.manifest, retries=args.retries):
        print(path)
    return 0


def _print_list(fetch, args: argparse.Namespace) -> None:
    resources = fetch.load_manifest(args.manifest)
    print(f"data folder: {fetch.data_dir(args.dest)}")
    for name, resource in resources.items():
        present = fetch.locate(name, args.dest, manifest=args.manifest) is not None
        size = "size unknown" if resource.size is None else f"{resource.size / 1e9:.2f} GB"
        how = "download" if resource.files else "by hand"
        state = "present" if present else "missing"
        about = resource.description
        about = about if len(about) <= 60 else about[:59] + "…"
        print(f"{name:<18} {state:<8} {how:<9} {size:<13} {about}")
