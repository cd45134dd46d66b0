"""A real full filesystem for tests: a 64 KiB tmpfs filled to the last byte (needs root to mount)."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def full_volume(tmp_path) -> Path:
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        with open(mount_point / "filler", "wb", buffering=0) as filler:
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError as error:
                assert error.errno == errno.ENOSPC
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)
