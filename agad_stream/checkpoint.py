"""Checkpoint directories: ``weights.pt`` (state dicts) plus ``agad.json`` (everything else).

The JSON carries the SHA-256 of the weights file, so a tampered or truncated
checkpoint is refused before ``torch.load`` sees it, and ``weights_only=True``
means a checkpoint can never run code. The JSON is written last: a directory
whose JSON is present is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "agad.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, tampered with or does not fit the model."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(directory: str | os.PathLike, state: dict, metadata: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    _write_atomically(weights, lambda f: torch.save(state, f))
    metadata = {**metadata, "format_version": FORMAT_VERSION, "weights_sha256": sha256_of(weights)}
    _write_atomically(directory / METADATA_FILE, lambda f: f.write(json.dumps(metadata, indent=2).encode()))
    return directory


def load_checkpoint(directory: str | os.PathLike) -> tuple[dict, dict]:
    directory = Path(directory)
    weights, meta_path = directory / WEIGHTS_FILE, directory / METADATA_FILE
    for path in (weights, meta_path):
        if not path.is_file():
            raise CheckpointError(f"not an AGAD checkpoint: {path} is missing")
    try:
        metadata = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{meta_path} is not valid JSON: {error}") from None
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path} has format_version {metadata.get('format_version')!r}; this version reads {FORMAT_VERSION}"
        )
    actual = sha256_of(weights)
    if actual != metadata.get("weights_sha256"):
        raise CheckpointError(
            f"{weights} does not match the SHA-256 recorded in {meta_path} "
            f"(expected {metadata.get('weights_sha256')}, found {actual}): the file was changed or truncated"
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{weights} could not be loaded: {error}") from None
    return state, metadata
