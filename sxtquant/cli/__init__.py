"""The ``sxtquant`` command: a thin layer over the library.

Each verb lives in its own module of :mod:`sxtquant.cli`, which defines
``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Heavy
imports (torch, scikit-image...) happen inside ``run`` so that ``--help`` is fast.

Every user error ends the same way: one line ``sxtquant: error: <file>: <problem>``
on stderr, exit code 2, no traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from sxtquant import __version__
from sxtquant.core.errors import InputError, NotReadyError
from sxtquant.core.progress import set_quiet

VERBS = (
    "simulate",
    "segment",
    "quantify",
    "evaluate",
    "train",
    "mesh",
    "fetch",
    "convert",
    "demo",
    "info",
)

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other sxtquant error."""

    def error(self, message: str):
        hint = f" (see '{self.prog} --help')"
        sys.stderr.write(f"sxtquant: error: {message}{hint}\n")
        sys.exit(EXIT_USAGE)


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else False
    parser.add_argument("--quiet", action="store_true", default=default, help="no progress bars")
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="show the full traceback when something fails",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``sxtquant`` command with every verb registered."""
    parser = _Parser(
        prog="sxtquant",
        description=(
            "Segment cryo-soft X-ray tomograms with a semi-supervised deep network and "
            "measure the objects in physical units (nm). Axis order is (z, y, x)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"sxtquant {__version__}")
    _add_common(parser, suppress=False)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for verb in VERBS:
        module = importlib.import_module(f"sxtquant.cli.{verb}")
        verb_parser = sub.add_parser(
            verb,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_common(verb_parser, suppress=True)
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    try:
        return int(args._run(args) or 0)
    except (InputError, NotReadyError) as exc:
        return _fail(exc, debug=args.debug)
    except OSError as exc:  # disk full, permission denied... name the file
        where = exc.filename if exc.filename is not None else "sxtquant"
        return _fail(InputError(where, exc.strerror or str(exc)), debug=args.debug)
    except MemoryError as exc:
        problem = "not enough memory; try a smaller --tile or --batch-size"
        return _fail(InputError(args.verb, problem), debug=args.debug, cause=exc)
    except KeyboardInterrupt:
        sys.stderr.write("sxtquant: interrupted\n")
        return 130


def _fail(exc: Exception, *, debug: bool, cause: BaseException | None = None) -> int:
    if debug:
        traceback.print_exception(cause or exc)
    sys.stderr.write(f"sxtquant: error: {exc}\n")
    return EXIT_USAGE
