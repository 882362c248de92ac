"""Exceptions that the command line turns into one clear message and exit code 2."""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad user input: a file or option value that sxtquant cannot use.

    Parameters
    ----------
    source : str or path-like
        The file (or option) at fault, shown first in the message.
    problem : str
        What is wrong with it, in words a user can act on.

    Examples
    --------
    >>> str(InputError("cell.mrc", "volume contains NaN values"))
    'cell.mrc: volume contains NaN values'
    """

    def __init__(self, source: str | os.PathLike, problem: str):
        self.source = os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class NotReadyError(RuntimeError):
    """A verb or feature whose implementation has not landed yet."""
