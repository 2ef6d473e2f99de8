"""The benchmark data directory: resolution, typed readers and the prompt constants.

Layout and MANIFEST.json are those of the shared data bundle (see the project README).
Nothing here unpickles anything.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from trustray.paths import default_data_dir


class DataError(RuntimeError):
    """A data file is missing, unreadable or does not match its manifest entry."""


MANIFEST = "MANIFEST.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestEntry:
    """One file of the bundle: its path relative to the root, size and sha256."""

    path: str
    bytes: int
    sha256: str


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def parse_manifest(raw: bytes | str, origin: str) -> list[ManifestEntry]:
    """Entries of a MANIFEST.json body; a malformed manifest raises DataError naming ``origin``."""
    try:
        doc = json.loads(raw)
        entries = [ManifestEntry(str(e["path"]), int(e["bytes"]), str(e["sha256"]).lower()) for e in doc]
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, ValueError) as e:
        raise DataError(f"{origin}: not a valid {MANIFEST} ({e})") from e
    for e in entries:
        # Paths come from a possibly remote manifest: never let one escape the destination.
        if e.path.startswith(("/", "\\")) or ".." in Path(e.path).parts:
            raise DataError(f"{origin}: unsafe path {e.path!r} in {MANIFEST}")
    return entries


def _select(entries: list[ManifestEntry], only: str | None) -> list[ManifestEntry]:
    if only is None:
        return entries
    chosen = [e for e in entries if e.path.startswith(only)]
    if not chosen:
        raise DataError(f"no file in {MANIFEST} starts with {only!r}")
    return chosen


class DataDir:
    """A benchmark data directory laid out like the shared bundle."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_data_dir()

    def __repr__(self) -> str:
        return f"DataDir({str(self.root)!r})"

    def path(self, rel: str) -> Path:
        """Absolute path of ``rel``; raises DataError naming the file when it is absent."""
        p = self.root / rel
        if not p.exists():
            raise DataError(
                f"data file {rel!r} not found under {self.root} "
                "(set --data-dir or $TRUSTRAY_DATA, or run `trustray data fetch --from ...`)"
            )
        return p

    def verify_present(self) -> None:
        """Fail fast, naming the directory, when this is not a data bundle at all."""
        if not (self.root / "MANIFEST.json").is_file():
            raise DataError(
                f"no benchmark data at {self.root} (MANIFEST.json missing): set --data-dir or "
                "$TRUSTRAY_DATA, or run `trustray data fetch --from DIR_OR_URL`"
            )

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def read_json(self, rel: str) -> Any:
        p = self.path(rel)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{rel}: not valid JSON ({e})") from e

    def iter_jsonl(self, rel: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield ``(line_number, record)`` (1-based) for every non-blank line."""
        p = self.path(rel)
        with p.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{rel}:{lineno}: corrupt JSON line ({e})") from e

    def read_csv(self, rel: str, header: bool = True) -> list[dict[str, str]] | list[list[str]]:
        p = self.path(rel)
        with p.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f)) if header else list(csv.reader(f))

    @cached_property
    def _prompts(self) -> dict[str, Any]:
        return self.read_json("decodingtrust/prompts.json")

    def constant(self, perspective: str, name: str) -> Any:
        """The value of a benchmark constant from ``decodingtrust/prompts.json``."""
        try:
            return self._prompts["perspectives"][perspective][name]["value"]
        except KeyError:
            raise DataError(f"prompts.json has no constant {perspective}.{name}") from None

    @property
    def prompts_source(self) -> str:
        """``repo@commit`` the constants were taken from (recorded with results)."""
        return f"{self._prompts['source_repo']}@{self._prompts['source_commit']}"

    # --- integrity ---------------------------------------------------------------------

    def manifest(self) -> list[ManifestEntry]:
        """The entries of this directory's MANIFEST.json."""
        return parse_manifest(self.path(MANIFEST).read_bytes(), str(self.root / MANIFEST))

    def verify(self, only: str | None = None) -> int:
        """Check every manifest file (or those under the prefix ``only``) by size and sha256.

        Returns the number of files checked; raises DataError naming the first bad file and
        how many are bad in total.
        """
        bad: list[str] = []
        entries = _select(self.manifest(), only)
        for e in entries:
            problem = _check_file(self.root / e.path, e)
            if problem:
                bad.append(f"{e.path}: {problem}")
        if bad:
            more = f" (and {len(bad) - 1} more bad file(s))" if len(bad) > 1 else ""
            raise DataError(f"data check failed under {self.root}: {bad[0]}{more}; "
                            "re-run `trustray data fetch --from ...`")
        return len(entries)


def _check_file(path: Path, entry: ManifestEntry) -> str | None:
    """Why ``path`` does not match ``entry``, or None when it does."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != entry.bytes:
        return f"size {size} != {entry.bytes} in {MANIFEST}"
    digest = sha256_file(path)
    if digest != entry.sha256:
        return f"sha256 mismatch (got {digest[:12]}…, expected {entry.sha256[:12]}…)"
    return None


# --- fetch --------------------------------------------------------------------------------


@dataclass
class FetchReport:
    """What ``fetch`` did: files copied, files already good, and failures (path: reason)."""

    copied: list[str]
    kept: list[str]
    failed: list[str]


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _copy_local(src_root: Path) -> Callable[[str, Path], None]:
    def copy(rel: str, tmp: Path) -> None:
        src = src_root / rel
        if not src.is_file():
            raise DataError("missing in source")
        shutil.copyfile(src, tmp)

    return copy


def _copy_http(base: str, client: Any) -> Callable[[str, Path], None]:
    from urllib.parse import quote

    def copy(rel: str, tmp: Path) -> None:
        with client.stream("GET", f"{base}/{quote(rel)}") as r:
            if r.status_code != 200:
                raise DataError(f"HTTP {r.status_code}")
            with tmp.open("wb") as f:
                for chunk in r.iter_bytes(_CHUNK):
                    f.write(chunk)

    return copy


def fetch(source: str | Path, dest: str | Path, only: str | None = None, timeout_s: float = 60.0) -> FetchReport:
    """Copy a bundle laid out like the shared data from a directory or an http(s) URL.

    Every file is verified against the source's MANIFEST.json. A file is written to a
    dot-prefixed temporary name next to its target and renamed only once its size and
    sha256 match, so a partial or corrupt download never replaces a good file. Files that
    are already good are kept. ``only`` restricts the copy to paths under that prefix.
    Raises DataError listing the files that failed (after trying all of them).
    """
    dest_root = Path(dest).expanduser()
    source_s = str(source).rstrip("/")
    client = None
    try:
        if _is_url(source_s):
            import httpx

            client = httpx.Client(timeout=timeout_s, follow_redirects=True)
            r = client.get(f"{source_s}/{MANIFEST}")
            if r.status_code != 200:
                raise DataError(f"{source_s}/{MANIFEST}: HTTP {r.status_code}")
            manifest_raw = r.content
            copy = _copy_http(source_s, client)
        else:
            src_root = Path(source_s).expanduser()
            if not (src_root / MANIFEST).is_file():
                raise DataError(f"{src_root} has no {MANIFEST}; is it a data bundle?")
            manifest_raw = (src_root / MANIFEST).read_bytes()
            copy = _copy_local(src_root)
        entries = _select(parse_manifest(manifest_raw, f"{source_s}/{MANIFEST}"), only)
        report = FetchReport([], [], [])
        for e in entries:
            target = dest_root / e.path
            if _check_file(target, e) is None:
                report.kept.append(e.path)
                continue
            problem = _fetch_one(copy, e, target)
            (report.failed.append(f"{e.path}: {problem}") if problem else report.copied.append(e.path))
        _write_atomic(dest_root / MANIFEST, manifest_raw)
    finally:
        if client is not None:
            client.close()
    if report.failed:
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise DataError(f"fetch from {source_s} failed for {report.failed[0]}{more}; good files were kept")
    return report


def _fetch_one(copy: Callable[[str, Path], None], e: ManifestEntry, target: Path) -> str | None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.part"
    try:
        copy(e.path, tmp)
        problem = _check_file(tmp, e)
        if problem is None:
            os.replace(tmp, target)
        return problem
    except DataError as err:
        return str(err)
    except OSError as err:  # includes network errors raised as OSError subclasses
        return f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - httpx transport errors: report, keep going
        return f"{type(err).__name__}: {err}"
    finally:
        tmp.unlink(missing_ok=True)


def _write_atomic(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.part"
    tmp.write_bytes(body)
    os.replace(tmp, path)
