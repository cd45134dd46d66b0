"""A directory of numbered model versions with an atomically switched ``current`` pointer.

Layout::

    ROOT/versions/0001/   one model directory per version (checkpoint + whatever the
    ROOT/versions/0002/   publisher adds, e.g. a modality's preprocessing settings)
    ROOT/current          text file holding the serving version's number
    ROOT/versions/N/metadata.json   when it was published (``published_at``, Unix time) and what
                                    its publisher records about it (parent, gate figures...)
    ROOT/registry-log.jsonl         append-only log: one JSON object per decision

A version directory is copied in under a temporary name, fsynced and renamed into
place, and ``current`` is replaced with ``os.replace`` after an fsync, so a reader
(the Kafka scorer) never sees a half-written model or a torn pointer, and a crash at
any point leaves either the old state or the new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import logging
import time
from pathlib import Path
from typing import Callable

VERSION_WIDTH = 4
METADATA_FILE = "metadata.json"
LOG_FILE = "registry-log.jsonl"
log = logging.getLogger("agad_stream.registry")


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``path`` so that a crash leaves the old content or the new one, never a torn file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def is_version_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²' or '١', which int() may refuse or read as another number."""
    return text.isascii() and text.isdigit()


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as file:
                os.fsync(file.fileno())
    for path in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(path)


class ModelRegistry:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._reported: set[str] = set()  # stray entries already warned about: once each, not at every listing

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def versions(self) -> list[int]:
        """The version numbers present; an entry not named by ASCII digits is skipped with a warning
        (hidden ones, the staging and removal directories, silently)."""
        if not self.versions_dir.is_dir():
            return []
        found = []
        for entry in self.versions_dir.iterdir():
            if entry.is_dir() and is_version_number(entry.name):
                found.append(int(entry.name))
            elif not entry.name.startswith(".") and entry.name not in self._reported:
                self._reported.add(entry.name)
                log.warning("model registry %s: skipping %r, which is not a version directory (versions are "
                            "directories named by ASCII digits, e.g. 0001)", self.root, entry.name)
        return sorted(found)

    def path(self, version: int) -> Path:
        path = self.versions_dir / f"{version:0{VERSION_WIDTH}d}"
        if not path.is_dir():
            raise FileNotFoundError(f"model version {version} not found in registry {self.root}")
        return path

    def current_version(self) -> int | None:
        """The serving version, or None for an empty registry."""
        try:
            text = (self.root / "current").read_text().strip()
        except FileNotFoundError:
            return None
        if not is_version_number(text):
            raise ValueError(f"{self.root / 'current'} should hold a version number (ASCII digits), found {text!r}: "
                             f"make a version current again (agad-stream models --model-registry {self.root} promote V)")
        return int(text)

    def current_path(self) -> Path:
        version = self.current_version()
        if version is None:
            raise FileNotFoundError(f"model registry {self.root} has no current version yet; publish a model first")
        return self.path(version)

    def publish(self, model_dir: str | os.PathLike, make_current: bool = True, metadata: dict | None = None,
                before_rename: Callable[[Path], None] | None = None) -> int:
        """Copy ``model_dir`` in as the next version (with ``metadata``, stamped ``published_at``:
        the copy keeps the source's modification times, which say when it was trained); by
        default it becomes the current one. ``before_rename`` is called with the complete
        staging directory just before it appears as a version (a hook for crash tests)."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model directory {model_dir} does not exist")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
        shutil.copytree(model_dir, staging, dirs_exist_ok=True)
        metadata = {"published_at": time.time(), **(metadata or {})}
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        _fsync_tree(staging)
        if before_rename is not None:
            before_rename(staging)
        version = (self.versions() or [0])[-1] + 1
        while True:
            try:
                os.rename(staging, self.versions_dir / f"{version:0{VERSION_WIDTH}d}")
                break
            except OSError:
                version += 1
        fsync_dir(self.versions_dir)
        if make_current:
            self.set_current(version)
        return version

    def set_current(self, version: int) -> None:
        self.path(version)
        atomic_write_bytes(self.root / "current", f"{version}\n".encode())

    def metadata(self, version: int) -> dict:
        """What was recorded about ``version`` when it was published or decided on ({} if nothing)."""
        path = self.path(version) / METADATA_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def update_metadata(self, version: int, **fields) -> dict:
        metadata = {**self.metadata(version), **fields}
        atomic_write_bytes(self.path(version) / METADATA_FILE, json.dumps(metadata, indent=2, sort_keys=True).encode())
        return metadata

    def append_log(self, entry: dict) -> dict:
        """Append one decision to the registry log (fsynced), stamped with the time."""
        entry = {"time": time.time(), **entry}
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")
            log.flush()
            os.fsync(log.fileno())
        return entry

    def read_log(self) -> list[dict]:
        """The log's entries, oldest first; a last line torn by a crash is skipped."""
        try:
            lines = (self.root / LOG_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for n, line in enumerate(lines):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                if n != len(lines) - 1:
                    raise ValueError(f"{self.root / LOG_FILE} line {n + 1} is not JSON") from None
        return entries

    def remove(self, version: int) -> None:
        """Delete a version that is not current (renamed away first, so it vanishes at once)."""
        path = self.path(version)
        if version == self.current_version():
            raise ValueError(f"version {version} is current; make another version current before removing it")
        trash = Path(tempfile.mkdtemp(prefix=".removed-", dir=self.versions_dir))
        os.rename(path, trash / path.name)
        fsync_dir(self.versions_dir)
        shutil.rmtree(trash)
