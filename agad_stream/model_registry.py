"""A directory of numbered model versions with an atomically switched ``current`` pointer.

Layout::

    ROOT/versions/0001/   one model directory per version (checkpoint + whatever the
    ROOT/versions/0002/   publisher adds, e.g. a modality's preprocessing settings)
    ROOT/current          text file holding the serving version's number

A version directory is copied in under a temporary name and renamed into
place, and ``current`` is replaced with ``os.replace``, so a reader (the Kafka
scorer) never sees a half-written model or a torn pointer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

VERSION_WIDTH = 4


class ModelRegistry:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    def versions(self) -> list[int]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(int(p.name) for p in self.versions_dir.iterdir() if p.is_dir() and p.name.isdigit())

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
        if not text.isdigit():
            raise ValueError(f"{self.root / 'current'} should hold a version number, found {text!r}")
        return int(text)

    def current_path(self) -> Path:
        version = self.current_version()
        if version is None:
            raise FileNotFoundError(f"model registry {self.root} has no current version yet; publish a model first")
        return self.path(version)

    def publish(self, model_dir: str | os.PathLike, make_current: bool = True) -> int:
        """Copy ``model_dir`` in as the next version; by default it becomes the current one."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model directory {model_dir} does not exist")
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
        shutil.copytree(model_dir, staging, dirs_exist_ok=True)
        version = (self.versions() or [0])[-1] + 1
        while True:
            try:
                os.rename(staging, self.versions_dir / f"{version:0{VERSION_WIDTH}d}")
                break
            except OSError:
                version += 1
        if make_current:
            self.set_current(version)
        return version

    def set_current(self, version: int) -> None:
        self.path(version)
        pointer = self.root / "current"
        tmp = pointer.with_name(f".current.{os.getpid()}.tmp")
        tmp.write_text(f"{version}\n")
        os.replace(tmp, pointer)
