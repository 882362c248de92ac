"""Progress bars that ``--quiet`` silences (tqdm on stderr), and a timer of named stages."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence

from tqdm.auto import tqdm

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (``True``) or restore (``False``) every progress bar of sxtquant."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    """Whether progress bars are silenced."""
    return _QUIET


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A tqdm progress bar on stderr that honours :func:`set_quiet`.

    Takes the keyword arguments of :class:`tqdm.tqdm` (``desc``, ``total``, ``unit``...).
    """
    kwargs.setdefault("disable", _QUIET)
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


class StageTimer:
    """Times named stages and shows which one runs (a tqdm bar, silenced by ``--quiet``).

    ``with timer("segment"): ...`` records the seconds of the block in ``timer.seconds``.
    """

    def __init__(self, names: Sequence[str], *, desc: str = "stages", show: bool = True):
        self.seconds: dict[str, float] = {}
        self._bar = progress(
            total=len(names),
            desc=desc,
            unit="stage",
            position=0,
            **({} if show else {"disable": True}),
        )

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._bar.set_postfix_str(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
