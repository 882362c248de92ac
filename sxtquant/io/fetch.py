"""Download the data sets and weight files of ``data_manifest.yaml``, checksum-verified.

Files go to ``DATA_DIR/<folder>/<name>``; ``DATA_DIR`` is the ``dest`` argument, else
``$SXTQUANT_DATA``, else the user cache (``pooch.os_cache("sxtquant")``). The
evaluation harness looks in the same place (:func:`locate`), so a file downloaded
by hand and put there is found as well.

Downloads go through :func:`pooch.retrieve` with :class:`ResumableHTTPDownloader`,
which keeps the bytes received so far in ``<name>.part`` and asks only for the rest
(an HTTP ``Range`` request) when run again, checks the SHA-256 (and size) against
the manifest, and only then gives the file its final name: a file whose checksum
does not match is deleted, never left under the final name. Where the manifest has
no checksum, the one computed is written to ``<name>.sha256`` (``sha256sum``
format) beside the file.

Examples
--------
>>> from sxtquant import fetch
>>> sorted(fetch.load_manifest())  # doctest: +SKIP
['empiar-10416', 'empiar-11392', 'refubium-37222', 'weights-2021-05', 'weights-2023-02']
>>> fetch.fetch("weights-2021-05")  # doctest: +SKIP
[PosixPath('/home/me/.cache/sxtquant/weights/weights_semisupervised_2021_05.h5')]
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sxtquant.core.errors import InputError
from sxtquant.core.progress import progress

MANIFEST_PATH = Path(__file__).resolve().parents[1] / "data" / "data_manifest.yaml"
"""The manifest shipped with the package (a link to ``data_manifest.yaml`` at the top of the
source tree, copied into wheels as package data)."""

DATA_ENV = "SXTQUANT_DATA"
"""Environment variable naming the data folder."""

RESOURCE_KEYS = (
    "description",
    "landing_page",
    "format",
    "size",
    "licence",
    "used_for",
    "folder",
    "files",
)
FILE_KEYS = ("name", "url", "size", "sha256")

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file of a resource."""

    name: str
    url: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class Resource:
    """One entry of the data manifest (see the comments at the top of the manifest)."""

    name: str
    description: str
    landing_page: str
    format: str
    size: int | None
    licence: str
    used_for: str
    folder: str
    files: tuple[RemoteFile, ...]


class ChecksumError(InputError):
    """A downloaded file whose SHA-256 (or size) differs from the manifest's."""


# --------------------------------------------------------------------------- manifest


def validate_manifest(data: Mapping, *, source: str | os.PathLike = "data manifest") -> dict:
    """Check a parsed manifest and return its resources as :class:`Resource` objects.

    Parameters
    ----------
    data : mapping
        The parsed YAML: ``{"version": 1, "resources": {name: entry, ...}}``.
    source : str or path-like
        Named in error messages.

    Returns
    -------
    dict of str to Resource

    Raises
    ------
    InputError
        A missing key, a checksum that is not 64 lowercase hex digits, a size that is
        not a positive integer or null, a URL that is not http(s), a folder that is
        not a plain relative path, or a file name that is not a plain name.
    """

    def fail(where: str, problem: str):
        raise InputError(source, f"{where}: {problem}")

    def check_size(where: str, size) -> int | None:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            fail(where, f"size must be a positive number of bytes or null, got {size!r}")
        return size

    def check_url(where: str, url) -> str:
        if not isinstance(url, str) or not re.match(r"^https?://", url):
            fail(where, f"expected an http(s) address, got {url!r}")
        return url

    if not isinstance(data, Mapping) or not isinstance(data.get("resources"), Mapping):
        fail("top level", "expected a mapping with a 'resources' mapping")
    resources = {}
    for name, entry in data["resources"].items():
        if not isinstance(entry, Mapping):
            fail(name, "expected a mapping")
        missing = [key for key in RESOURCE_KEYS if key not in entry]
        if missing:
            fail(name, f"missing keys {', '.join(missing)}")
        folder = entry["folder"]
        if (
            not isinstance(folder, str)
            or not folder
            or Path(folder).is_absolute()
            or ".." in Path(folder).parts
        ):
            fail(name, f"folder must be a relative path inside the data folder, got {folder!r}")
        if not isinstance(entry["files"], list):
            fail(name, "files must be a list (empty where they are downloaded by hand)")
        files = []
        for i, item in enumerate(entry["files"]):
            where = f"{name}, file {i + 1}"
            if not isinstance(item, Mapping):
                fail(where, "expected a mapping")
            missing = [key for key in FILE_KEYS if key not in item]
            if missing:
                fail(where, f"missing keys {', '.join(missing)}")
            if not isinstance(item["name"], str) or Path(item["name"]).name != item["name"]:
                fail(where, f"name must be a plain file name, got {item['name']!r}")
            sha = item["sha256"]
            if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
                fail(where, f"sha256 must be 64 lowercase hex digits or null, got {sha!r}")
            files.append(
                RemoteFile(
                    name=item["name"],
                    url=check_url(where, item["url"]),
                    size=check_size(where, item["size"]),
                    sha256=sha,
                )
            )
        resources[str(name)] = Resource(
            name=str(name),
            description=" ".join(str(entry["description"]).split()),
            landing_page=check_url(name, entry["landing_page"]),
            format=str(entry["format"]),
            size=check_size(name, entry["size"]),
            licence=str(entry["licence"]),
            used_for=" ".join(str(entry["used_for"]).split()),
            folder=folder,
            files=tuple(files),
        )
    return resources


def load_manifest(path: str | os.PathLike | None = None) -> dict:
    """Read and validate the data manifest (default: :data:`MANIFEST_PATH`).

    Returns
    -------
    dict of str to Resource
    """
    import yaml

    path = Path(path) if path is not None else MANIFEST_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no such file (the data manifest)") from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML: {exc}") from None
    return validate_manifest(data, source=path)


def get_resource(name: str, manifest: str | os.PathLike | None = None) -> Resource:
    """The manifest entry ``name``; an unknown name is an :class:`InputError` listing the known."""
    resources = load_manifest(manifest)
    if name not in resources:
        raise InputError(name, f"unknown data set; known: {', '.join(sorted(resources))}")
    return resources[name]


# --------------------------------------------------------------------------- where


def data_dir(dest: str | os.PathLike | None = None) -> Path:
    """The data folder: ``dest``, else ``$SXTQUANT_DATA``, else the user cache."""
    if dest is not None:
        return Path(dest).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    import pooch

    return Path(pooch.os_cache("sxtquant"))


def resource_dir(resource: Resource, dest: str | os.PathLike | None = None) -> Path:
    """The folder where the files of ``resource`` are (or go)."""
    return data_dir(dest) / resource.folder


def locate(
    name: str,
    dest: str | os.PathLike | None = None,
    *,
    manifest: str | os.PathLike | None = None,
) -> Path | None:
    """Where the harness finds resource ``name``, or ``None`` when it is absent.

    Present means: every file of the entry is in its folder (downloaded, or put
    there by hand); for an entry without a file list (downloaded by hand), the
    folder exists and holds at least one file. Checksums are not re-checked here
    (that is :func:`fetch`'s job), so a look-up is instant even for large files.

    Returns
    -------
    Path or None
        The resource's folder.
    """
    resource = get_resource(name, manifest)
    folder = resource_dir(resource, dest)
    if resource.files:
        present = all((folder / f.name).is_file() for f in resource.files)
    else:
        present = folder.is_dir() and any(
            p.is_file() and not p.name.endswith(".part") for p in folder.rglob("*")
        )
    return folder if present else None


# --------------------------------------------------------------------------- download


class ResumableHTTPDownloader:
    """A pooch downloader that resumes an interrupted transfer with an HTTP Range request.

    The bytes received so far are kept in ``part_path``; a later call asks the
    server only for the rest (``Range: bytes=N-``) and appends them. A server that
    ignores the Range header (answers 200) is read again from the start. Once the
    transfer is complete the SHA-256 (and size) are checked when known; a mismatch
    deletes the partial file and raises :class:`ChecksumError`. Otherwise the
    bytes move to pooch's output file, which pooch renames to the final name.

    Parameters
    ----------
    part_path : path-like
        Where the partial download is kept between calls.
    sha256 : str, optional
        Expected SHA-256 in hex.
    size : int, optional
        Expected size in bytes.
    timeout : float
        Seconds to wait for the server to connect or send data.

    Attributes
    ----------
    last_sha256 : str or None
        SHA-256 of the last completed download.
    """

    def __init__(
        self,
        part_path: str | os.PathLike,
        *,
        sha256: str | None = None,
        size: int | None = None,
        timeout: float = 30.0,
    ):
        self.part_path = Path(part_path)
        self.sha256 = sha256
        self.size = size
        self.timeout = timeout
        self.last_sha256: str | None = None

    def __call__(self, url: str, output_file, pooch_instance=None, check_only: bool = False):
        import requests

        if check_only:
            response = requests.head(url, allow_redirects=True, timeout=self.timeout)
            return response.ok
        offset = self.part_path.stat().st_size if self.part_path.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if response.status_code == 416:  # nothing left to send: the part is complete
                total = _content_range_total(response.headers.get("Content-Range"))
                if total != offset:  # or it is not: start over
                    self.part_path.unlink()
                    return self(url, output_file, pooch_instance)
            else:
                response.raise_for_status()
                if response.status_code != 206:
                    offset = 0  # the server ignored the Range header
                length = response.headers.get("Content-Length")
                total = offset + int(length) if length is not None else self.size
                self._receive(response, offset, total)
        self._verify(url)
        os.replace(self.part_path, output_file)

    def _receive(self, response, offset: int, total: int | None) -> None:
        mode = "ab" if offset else "wb"
        with (
            open(self.part_path, mode) as part,
            progress(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=self.part_path.name.removesuffix(".part"),
            ) as bar,
        ):
            for chunk in response.iter_content(chunk_size=_CHUNK):
                part.write(chunk)
                bar.update(len(chunk))
        if total is not None and self.part_path.stat().st_size < total:
            import requests

            raise requests.exceptions.ChunkedEncodingError(
                f"the transfer ended after {self.part_path.stat().st_size} of {total} bytes"
            )

    def _verify(self, url: str) -> None:
        digest = _sha256_of(self.part_path)
        received = self.part_path.stat().st_size
        if self.size is not None and received != self.size:
            self.part_path.unlink()
            raise ChecksumError(
                url, f"size mismatch: expected {self.size} bytes, received {received}"
            )
        if self.sha256 is not None and digest != self.sha256:
            self.part_path.unlink()
            raise ChecksumError(
                url,
                f"SHA-256 mismatch: expected {self.sha256}, got {digest}; the file was deleted",
            )
        self.last_sha256 = digest


def _content_range_total(header: str | None) -> int | None:
    match = re.match(r"bytes \S+/(\d+)", header or "")
    return int(match.group(1)) if match else None


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    remote: RemoteFile,
    folder: str | os.PathLike,
    *,
    retries: int = 2,
    timeout: float = 30.0,
) -> Path:
    """Download one file into ``folder`` (resuming, checksum-verified); return its path.

    A file already there is kept when its checksum matches the manifest (or the
    manifest has none) and downloaded again when it does not.

    Parameters
    ----------
    remote : RemoteFile
        The file's name, URL, expected size and SHA-256.
    folder : path-like
        Where it goes.
    retries : int
        How many times an interrupted transfer is resumed before giving up; the
        partial file stays, so running again resumes too.
    timeout : float
        Seconds to wait for the server.

    Raises
    ------
    ChecksumError
        The downloaded file's SHA-256 or size differs from the manifest's.
    InputError
        The server cannot be reached or the transfer keeps failing; the message
        names the URL to download by hand and the folder to put the file in.
    """
    import pooch
    import requests

    folder = Path(folder)
    target = folder / remote.name
    downloader = ResumableHTTPDownloader(
        folder / f"{remote.name}.part", sha256=remote.sha256, size=remote.size, timeout=timeout
    )
    known_hash = f"sha256:{remote.sha256}" if remote.sha256 else None
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)  # sxtquant reports itself
    try:
        for attempt in range(retries + 1):
            try:
                pooch.retrieve(
                    remote.url, known_hash, fname=remote.name, path=folder, downloader=downloader
                )
                break
            except requests.exceptions.RequestException as exc:
                # Resume only a transfer that had started; an unreachable server or an
                # HTTP error (404...) fails at once.
                started = downloader.part_path.is_file() and downloader.part_path.stat().st_size
                if attempt == retries or not started or isinstance(exc, requests.HTTPError):
                    raise _by_hand(remote, folder, exc) from None
                time.sleep(min(attempt + 1, 5))
    finally:
        logger.setLevel(level)
    if downloader.last_sha256 is not None and remote.sha256 is None:
        _write_sidecar(target, downloader.last_sha256)
    return target


def _by_hand(remote: RemoteFile, folder: Path, exc: Exception) -> InputError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if len(reason) > 200:
        reason = reason[:200] + "..."
    if (folder / remote.name).exists():  # pooch only downloads over a file that mismatches
        reason += f"; the {remote.name} already there does not match the manifest's SHA-256"
    return InputError(
        remote.url,
        f"download failed ({reason}). Download it by hand from {remote.url} and put it in "
        f"{folder}{os.sep} as {remote.name}; sxtquant finds it there. A partial download "
        f"is kept and resumed when you run the command again.",
    )


def _write_sidecar(path: Path, digest: str) -> None:
    from sxtquant.io.files import write_text

    write_text(f"{digest}  {path.name}\n", path.with_name(path.name + ".sha256"))


def fetch(
    name: str,
    dest: str | os.PathLike | None = None,
    *,
    manifest: str | os.PathLike | None = None,
    retries: int = 2,
    timeout: float = 30.0,
) -> list[Path]:
    """Download resource ``name`` of the data manifest; return the paths of its files.

    Parameters
    ----------
    name : str
        The entry's name (``sxtquant fetch --list`` shows them).
    dest : path-like, optional
        The data folder (default ``$SXTQUANT_DATA`` or the user cache); files go to
        its sub-folder named by the entry's ``folder``.
    manifest : path-like, optional
        Another manifest file (default: :data:`MANIFEST_PATH`).
    retries, timeout
        See :func:`download_file`.

    Raises
    ------
    InputError
        Unknown name; a download that fails (naming the URL and the folder to put
        the file in by hand); a checksum mismatch; an entry that can only be
        downloaded by hand and is not there yet (naming the page and the folder).
    """
    resource = get_resource(name, manifest)
    folder = resource_dir(resource, dest)
    if not resource.files:
        if locate(name, dest, manifest=manifest) is None:
            raise InputError(
                name,
                f"this data set is downloaded by hand: get it from {resource.landing_page} "
                f"and put its files in {folder}{os.sep}; sxtquant finds them there",
            )
        return sorted(p for p in folder.rglob("*") if p.is_file())
    return [download_file(f, folder, retries=retries, timeout=timeout) for f in resource.files]
