"""Sidecar records: what made an output set, so reruns skip what is done."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def file_sha256(path: str | os.PathLike, *, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 (hex) of a file, or of a folder (OME-Zarr, TIFF slices): of every file
    below it, with its relative path, in sorted order."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            digest.update(bytes.fromhex(file_sha256(file, chunk_bytes=chunk_bytes)))
        return digest.hexdigest()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def model_identity(name_or_path: str | os.PathLike) -> dict:
    """The model as a record holds it: ``name`` (as given), ``path`` (checkpoint folder)
    and ``sha256`` (of its config and weights together).

    Raises
    ------
    InputError
        Unknown model name or not a checkpoint folder.
    """
    from sxtquant.nn.checkpoint import CONFIG_FILE, WEIGHTS_FILE, resolve_model_path

    folder = resolve_model_path(name_or_path)
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        digest.update(name.encode() + b"\0" + bytes.fromhex(file_sha256(folder / name)))
    return {
        "name": os.fspath(name_or_path),
        "path": str(folder.resolve()),
        "sha256": digest.hexdigest(),
    }


def _normalised(obj) -> Any:
    """``obj`` as it reads back from JSON (tuples -> lists...), for comparing."""
    return json.loads(json.dumps(obj, default=str))


def record_matches(
    record_path: str | os.PathLike,
    *,
    inputs: Sequence[str | os.PathLike],
    outputs: Sequence[str | os.PathLike],
    identity: Mapping[str, Any],
) -> bool:
    """Whether the sidecar record says that ``outputs`` are complete and up to date.

    True only if the record exists and holds ``identity`` (command, model, options),
    every input still has the SHA-256 it had, and every output exists with the
    SHA-256 it was written with.
    """
    record_path = Path(record_path)
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return False
    if record.get("identity") != _normalised(dict(identity)):
        return False
    try:
        if [e["sha256"] for e in record["inputs"]] != [file_sha256(p) for p in inputs]:
            return False
        written = {e["path"]: e["sha256"] for e in record["outputs"]}
        for out in outputs:
            name = _relative(out, record_path.parent)
            if name not in written or not Path(out).exists():
                return False
            if file_sha256(out) != written[name]:
                return False
    except (OSError, KeyError, TypeError):
        return False
    return True


def _relative(path: str | os.PathLike, folder: Path) -> str:
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(folder)).as_posix()
    except ValueError:
        return os.path.abspath(path)


def write_record(
    record_path: str | os.PathLike,
    *,
    inputs: Sequence[str | os.PathLike],
    outputs: Sequence[str | os.PathLike],
    identity: Mapping[str, Any],
    seconds: float | None = None,
) -> Path:
    """Write the sidecar record of an output set (JSON, atomically).

    It holds the SHA-256 and size of every input and output, ``identity`` (the
    command, the model's name, path and checksum, the options that decide the
    result), the sxtquant version, the time it was written and the seconds the
    work took. Outputs are named relative to the record's folder.
    """
    from datetime import datetime, timezone

    from sxtquant import __version__
    from sxtquant.io.files import write_json

    record_path = Path(record_path)
    record = {
        "sxtquant_version": __version__,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds,
        "identity": _normalised(dict(identity)),
        "inputs": [
            {"path": os.path.abspath(p), "sha256": file_sha256(p), "bytes": _size(p)}
            for p in inputs
        ],
        "outputs": [
            {"path": _relative(p, record_path.parent), "sha256": file_sha256(p), "bytes": _size(p)}
            for p in outputs
        ],
    }
    return write_json(record, record_path)


def _size(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
