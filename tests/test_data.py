"""Data directory: manifest verification and fetch (from a directory and over loopback HTTP)."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trustray.data import DataDir, DataError, fetch, sha256_file

PREFIX = "decodingtrust/fairness/fairness_data/gt_labels_adult_0_200"  # 3 small files


@contextlib.contextmanager
def _serve(root: Path, handler_cls: type[SimpleHTTPRequestHandler] = SimpleHTTPRequestHandler) -> Iterator[str]:
    handler = functools.partial(handler_cls, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class _Truncating(_Quiet):
    """Announces the full length but sends only half of the body, then closes."""

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if path.name == "MANIFEST.json" or not path.is_file():
            return super().do_GET()
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def shared_url(data_dir: DataDir) -> Iterator[str]:
    with _serve(data_dir.root, _Quiet) as url:
        yield url


def _small_bundle(src: DataDir, dest: Path) -> list[dict]:
    """A copy of the PREFIX files with their own MANIFEST.json."""
    entries = [e for e in json.loads((src.root / "MANIFEST.json").read_text()) if e["path"].startswith(PREFIX)]
    for e in entries:
        (dest / e["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src.root / e["path"], dest / e["path"])
    (dest / "MANIFEST.json").write_text(json.dumps(entries))
    return entries


def test_verify_shared_subset(data_dir: DataDir) -> None:
    assert data_dir.verify("decodingtrust/fairness") == 42


def test_verify_names_the_bad_file(tmp_path: Path, data_dir: DataDir) -> None:
    entries = _small_bundle(data_dir, tmp_path)
    d = DataDir(tmp_path)
    assert d.verify() == len(entries) == 3
    bad = tmp_path / entries[1]["path"]
    bad.write_bytes(bad.read_bytes()[:-1] + b"X")  # same size, different content
    with pytest.raises(DataError, match=f"{entries[1]['path']}: sha256 mismatch"):
        d.verify()
    bad.unlink()
    with pytest.raises(DataError, match=f"{entries[1]['path']}: missing"):
        d.verify()


def test_fetch_over_http_verifies_and_is_idempotent(tmp_path: Path, shared_url: str, data_dir: DataDir) -> None:
    report = fetch(shared_url, tmp_path, only=PREFIX)
    assert len(report.copied) == 3 and not report.kept
    assert DataDir(tmp_path).verify(PREFIX) == 3
    assert not list(tmp_path.rglob(".*.part"))
    again = fetch(shared_url, tmp_path, only=PREFIX)
    assert not again.copied and len(again.kept) == 3


def test_fetch_from_directory(tmp_path: Path, data_dir: DataDir) -> None:
    report = fetch(data_dir.root, tmp_path / "d", only=PREFIX)
    assert len(report.copied) == 3
    assert DataDir(tmp_path / "d").verify(PREFIX) == 3


def test_checksum_mismatch_keeps_the_good_file(tmp_path: Path, data_dir: DataDir) -> None:
    mirror, dest = tmp_path / "mirror", tmp_path / "dest"
    entries = _small_bundle(data_dir, mirror)
    fetch(mirror, dest)
    target = entries[0]["path"]
    good = sha256_file(dest / target)
    # The mirror's manifest now claims a different file than the good one we hold.
    tampered = [dict(e) for e in entries]
    tampered[0]["sha256"] = "0" * 64
    (mirror / "MANIFEST.json").write_text(json.dumps(tampered))
    with pytest.raises(DataError, match=f"{target}: sha256 mismatch"):
        with _serve(mirror, _Quiet) as url:
            fetch(url, dest)
    assert sha256_file(dest / target) == good
    assert not list(dest.rglob(".*.part"))


def test_corrupt_and_partial_downloads_never_replace_a_good_file(tmp_path: Path, data_dir: DataDir) -> None:
    mirror, dest = tmp_path / "mirror", tmp_path / "dest"
    entries = _small_bundle(data_dir, mirror)
    target = entries[0]["path"]
    fetch(mirror, dest)
    good_bytes = (dest / target).read_bytes()
    # Damage the local copy of one file so fetch has to download it again.
    (dest / target).write_bytes(good_bytes[:10])
    # 1) the mirror serves a corrupt body: the (damaged) local file is left as it was, no temp left
    (mirror / target).write_bytes(b"corrupt" + good_bytes[7:])
    with pytest.raises(DataError, match=target):
        with _serve(mirror, _Quiet) as url:
            fetch(url, dest)
    assert (dest / target).read_bytes() == good_bytes[:10]
    # 2) a good file and a truncated transfer: the good file survives
    shutil.copyfile(data_dir.root / target, mirror / target)
    (dest / target).write_bytes(good_bytes)
    (dest / entries[1]["path"]).unlink()  # forces a download that gets truncated
    with pytest.raises(DataError, match=entries[1]["path"]):
        with _serve(mirror, _Truncating) as url:
            fetch(url, dest)
    assert (dest / target).read_bytes() == good_bytes
    assert not (dest / entries[1]["path"]).exists()
    assert not list(dest.rglob(".*.part"))


def test_fetch_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MANIFEST.json"):
        fetch(tmp_path, tmp_path / "x")
    (tmp_path / "MANIFEST.json").write_text(json.dumps([{"path": "../evil", "bytes": 1, "sha256": "0" * 64}]))
    with pytest.raises(DataError, match="unsafe path"):
        fetch(tmp_path, tmp_path / "x")
    (tmp_path / "MANIFEST.json").write_text("[]")
    with pytest.raises(DataError, match="no file in MANIFEST.json starts with 'nope'"):
        fetch(tmp_path, tmp_path / "x", only="nope")
