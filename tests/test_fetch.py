"""`sxtquant fetch` and sxtquant.io.fetch against a local HTTP server on 127.0.0.1 only.

The server serves one file from memory, honours ``Range: bytes=N-`` requests, and
can drop the connection after a number of bytes on its first request (an
interrupted transfer). No test contacts any other host.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
import yaml

from sxtquant.core.errors import InputError
from sxtquant.io import fetch
from tests.conftest import assert_user_error

PAYLOAD = bytes(range(256)) * 1024 + b"the end"  # 262 151 bytes
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_HEAD(self):
        self._respond(body=False)

    def do_GET(self):
        self._respond(body=True)

    def _respond(self, *, body: bool):
        server = self.server
        server.requests.append(dict(self.headers))
        if self.path != "/files/data.bin":
            self.send_error(404)
            return
        payload = server.payload
        start = 0
        wanted = self.headers.get("Range")
        if wanted and server.honour_range:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not body:
            return
        chunk = payload[start:]
        if server.drop_after is not None:
            chunk = chunk[: server.drop_after]
            server.drop_after = None  # only the first transfer is cut
            self.wfile.write(chunk)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(chunk)


@pytest.fixture
def server():
    """A threaded HTTP server on 127.0.0.1; ``server.url`` is the file's address."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.payload = PAYLOAD
    httpd.drop_after = None
    httpd.honour_range = True
    httpd.requests = []
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/files/data.bin"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/files/data.bin"  # nothing listens there now


def _manifest(path: Path, url: str, sha256: str | None, *, size: int | None = None) -> Path:
    entry = {
        "description": "a small test file",
        "landing_page": "http://127.0.0.1/",
        "format": "bytes",
        "size": size,
        "licence": "none",
        "used_for": "tests",
        "folder": "small",
        "files": [{"name": "data.bin", "url": url, "size": size, "sha256": sha256}],
    }
    manual = {**entry, "folder": "manual", "files": []}
    path.write_text(yaml.safe_dump({"version": 1, "resources": {"small": entry, "manual": manual}}))
    return path


# --------------------------------------------------------------------------- manifest


def test_shipped_manifest_is_valid():
    resources = fetch.load_manifest()
    expected = {
        "weights-2021-05",
        "weights-2023-02",
        "refubium-37222",
        "empiar-11392",
        "empiar-10416",
    }
    assert expected <= set(resources)
    raw = yaml.safe_load(fetch.MANIFEST_PATH.read_text())["resources"]
    for name, entry in raw.items():
        assert set(fetch.RESOURCE_KEYS) <= set(entry), name
        for item in entry["files"]:
            assert set(fetch.FILE_KEYS) <= set(item), name
    weights = resources["weights-2021-05"].files[0]
    assert weights.url == (
        "https://ftp.mi.fu-berlin.de/pub/cmb-data/deep_sxt/weights_semisupervised_2021_05.h5"
    )
    assert "10.17169/refubium-37222" in resources["refubium-37222"].landing_page


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda e: e.pop("licence"), "missing keys licence"),
        (lambda e: e["files"][0].pop("sha256"), "missing keys sha256"),
        (lambda e: e["files"][0].update(sha256="abc"), "sha256 must be"),
        (lambda e: e["files"][0].update(size=-3), "size must be"),
        (lambda e: e["files"][0].update(url="ftp.example/x"), "http(s)"),
        (lambda e: e.update(folder="../outside"), "folder must be"),
        (lambda e: e["files"][0].update(name="sub/data.bin"), "plain file name"),
    ],
)
def test_manifest_validation_rejects(tmp_path, change, fragment):
    raw = yaml.safe_load(_manifest(tmp_path / "m.yaml", "http://127.0.0.1/x", None).read_text())
    change(raw["resources"]["small"])
    with pytest.raises(InputError, match="small") as info:
        fetch.validate_manifest(raw)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- downloads


def test_download_with_checksum(server, tmp_path):
    manifest = _manifest(tmp_path / "m.yaml", server.url, PAYLOAD_SHA256, size=len(PAYLOAD))
    dest = tmp_path / "data"
    assert fetch.locate("small", dest, manifest=manifest) is None
    (path,) = fetch.fetch("small", dest, manifest=manifest)
    assert path == dest / "small" / "data.bin"
    assert path.read_bytes() == PAYLOAD
    assert not (dest / "small" / "data.bin.part").exists()
    assert not (dest / "small" / "data.bin.sha256").exists()  # the manifest knows it
    assert fetch.locate("small", dest, manifest=manifest) == dest / "small"
    # a second call finds the file and downloads nothing
    count = len(server.requests)
    assert fetch.fetch("small", dest, manifest=manifest) == [path]
    assert len(server.requests) == count


def test_unknown_checksum_is_recorded(server, tmp_path):
    manifest = _manifest(tmp_path / "m.yaml", server.url, None)
    (path,) = fetch.fetch("small", tmp_path / "data", manifest=manifest)
    assert path.read_bytes() == PAYLOAD
    record = path.with_name("data.bin.sha256").read_text()
    assert record == f"{PAYLOAD_SHA256}  data.bin\n"


def test_checksum_mismatch(server, tmp_path):
    wrong = "0" * 64
    manifest = _manifest(tmp_path / "m.yaml", server.url, wrong)
    dest = tmp_path / "data"
    with pytest.raises(fetch.ChecksumError) as info:
        fetch.fetch("small", dest, manifest=manifest, retries=0)
    assert wrong in str(info.value) and PAYLOAD_SHA256 in str(info.value)
    assert isinstance(info.value, InputError)
    assert sorted(p.name for p in (dest / "small").iterdir()) == []  # nothing left behind


def test_interrupted_transfer_resumes(server, tmp_path):
    manifest = _manifest(tmp_path / "m.yaml", server.url, PAYLOAD_SHA256)
    dest = tmp_path / "data"
    server.drop_after = 100_000
    with pytest.raises(InputError, match="by hand") as info:
        fetch.fetch("small", dest, manifest=manifest, retries=0)
    assert server.url in str(info.value)
    part = dest / "small" / "data.bin.part"
    kept = part.stat().st_size  # what arrived, up to the last whole chunk read
    assert 0 < kept <= 100_000
    assert not (dest / "small" / "data.bin").exists()

    (path,) = fetch.fetch("small", dest, manifest=manifest, retries=0)
    assert path.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.requests[-1].get("Range") == f"bytes={kept}-"


def test_interruption_is_resumed_within_one_call(server, tmp_path):
    manifest = _manifest(tmp_path / "m.yaml", server.url, PAYLOAD_SHA256)
    server.drop_after = 200_000
    (path,) = fetch.fetch("small", tmp_path / "data", manifest=manifest, retries=1)
    assert path.read_bytes() == PAYLOAD
    ranges = [r.get("Range") for r in server.requests]
    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes=")
    assert int(ranges[1].removeprefix("bytes=").rstrip("-")) > 0


def test_server_ignoring_range_starts_over(server, tmp_path):
    manifest = _manifest(tmp_path / "m.yaml", server.url, PAYLOAD_SHA256)
    part = tmp_path / "data" / "small" / "data.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes of another version")
    server.honour_range = False
    (path,) = fetch.fetch("small", tmp_path / "data", manifest=manifest)
    assert path.read_bytes() == PAYLOAD


def test_complete_part_is_not_downloaded_again(server, tmp_path):
    manifest = _manifest(tmp_path / "m.yaml", server.url, PAYLOAD_SHA256)
    part = tmp_path / "data" / "small" / "data.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)  # interrupted after the last byte, before the rename
    (path,) = fetch.fetch("small", tmp_path / "data", manifest=manifest)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1].get("Range") == f"bytes={len(PAYLOAD)}-"


def test_unreachable_server_names_url_and_folder(tmp_path):
    url = _closed_port_url()
    manifest = _manifest(tmp_path / "m.yaml", url, PAYLOAD_SHA256)
    dest = tmp_path / "data"
    with pytest.raises(InputError) as info:
        fetch.fetch("small", dest, manifest=manifest, timeout=5)
    message = str(info.value)
    assert url in message and str(dest / "small") in message and "data.bin" in message
    assert not (dest / "small" / "data.bin").exists()


def test_file_placed_by_hand_is_found_offline(tmp_path):
    manifest = _manifest(tmp_path / "m.yaml", _closed_port_url(), PAYLOAD_SHA256)
    folder = tmp_path / "data" / "small"
    folder.mkdir(parents=True)
    (folder / "data.bin").write_bytes(PAYLOAD)
    assert fetch.locate("small", tmp_path / "data", manifest=manifest) == folder
    assert fetch.fetch("small", tmp_path / "data", manifest=manifest) == [folder / "data.bin"]


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(fetch.DATA_ENV, str(tmp_path / "env"))
    assert fetch.data_dir() == tmp_path / "env"
    assert fetch.data_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_manual_resource(tmp_path):
    manifest = _manifest(tmp_path / "m.yaml", "http://127.0.0.1/x", None)
    with pytest.raises(InputError, match="by hand") as info:
        fetch.fetch("manual", tmp_path / "data", manifest=manifest)
    assert str(tmp_path / "data" / "manual") in str(info.value)
    (tmp_path / "data" / "manual").mkdir(parents=True)
    (tmp_path / "data" / "manual" / "tomogram.mrc").write_bytes(b"x")
    assert fetch.fetch("manual", tmp_path / "data", manifest=manifest) == [
        tmp_path / "data" / "manual" / "tomogram.mrc"
    ]


# --------------------------------------------------------------------------- command line


def test_cli_fetch_and_list(run_cli, server, tmp_path):
    manifest = _manifest(tmp_path / "m.yaml", server.url, PAYLOAD_SHA256)
    dest = tmp_path / "data"
    listed = run_cli("fetch", "--list", "--manifest", manifest, "--dest", dest)
    assert listed.returncode == 0, listed.stderr
    assert "small" in listed.stdout and "missing" in listed.stdout

    result = run_cli("fetch", "small", "--manifest", manifest, "--dest", dest, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(dest / "small" / "data.bin")
    assert result.stderr == ""  # --quiet: no progress bar
    assert (dest / "small" / "data.bin").read_bytes() == PAYLOAD

    listed = run_cli("fetch", "--list", "--manifest", manifest, "--dest", dest)
    assert "present" in listed.stdout


def test_cli_errors(run_cli, tmp_path):
    url = _closed_port_url()
    manifest = _manifest(tmp_path / "m.yaml", url, PAYLOAD_SHA256)
    offline = run_cli("fetch", "small", "--manifest", manifest, "--dest", tmp_path / "data")
    assert_user_error(offline, url, str(tmp_path / "data" / "small"))
    unknown = run_cli("fetch", "nothing", "--manifest", manifest)
    assert_user_error(unknown, "nothing", "unknown data set", "small")
    assert_user_error(run_cli("fetch", "--manifest", manifest), "NAME")
