"""Atomic output and the small files: tables, JSON, text, figures."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    On any error the temporary file (or folder) is removed and ``path`` is left as it
    was, so no half-written output ever appears under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if tmp.is_dir():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
    else:
        os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_table(table, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame as CSV (or Parquet for ``.parquet``), atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        if path.suffix.lower() == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
    return path


def json_text(obj) -> str:
    """Indented JSON text of ``obj`` with NaN/inf written as null and numpy scalars as numbers."""
    return json.dumps(_nan_to_none(obj), indent=2) + "\n"


def write_json(obj, path: str | os.PathLike) -> Path:
    """Write JSON (indented, NaN written as null), atomically."""
    return write_text(json_text(obj), path)


def _nan_to_none(obj):
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, np.generic):
        return _nan_to_none(obj.item())
    return obj


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (HTML, Markdown...), atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def save_figure(figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure (format from the suffix: .png, .pdf, .svg), atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path
