"""Checkpoint directories: ``weights.pt`` (state dicts) plus ``agad.json`` (everything else),
and, once published, ``generator.onnx`` (G alone, for ONNX Runtime).

The JSON carries the SHA-256 of the weights file (and of the ONNX graph when there is
one), so a tampered or truncated checkpoint is refused before ``torch.load`` or ONNX
Runtime sees it, and ``weights_only=True`` means a checkpoint can never run code. The
JSON is written last: a directory whose JSON is present is complete. Reading the JSON
and checking a file needs no torch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

WEIGHTS_FILE = "weights.pt"
METADATA_FILE = "agad.json"
ONNX_FILE = "generator.onnx"
#: agad.json key of the ONNX graph's SHA-256 (absent in checkpoints exported before, or never)
ONNX_SHA256_KEY = "onnx_sha256"
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
    import torch

    _write_atomically(weights, lambda f: torch.save(state, f))
    metadata = {**metadata, "format_version": FORMAT_VERSION, "weights_sha256": sha256_of(weights)}
    _write_atomically(directory / METADATA_FILE, lambda f: f.write(json.dumps(metadata, indent=2).encode()))
    return directory


def read_metadata(directory: str | os.PathLike) -> dict:
    """agad.json of a checkpoint directory, after checking that it is complete and of this format."""
    directory = Path(directory)
    meta_path = directory / METADATA_FILE
    for path in (directory / WEIGHTS_FILE, meta_path):
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
    return metadata


def verified_file(directory: str | os.PathLike, name: str, sha256_key: str, metadata: dict) -> Path:
    """``directory/name``, after checking it against the SHA-256 that ``metadata[sha256_key]`` records."""
    path = Path(directory) / name
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    actual = sha256_of(path)
    if actual != metadata.get(sha256_key):
        raise CheckpointError(
            f"{path} does not match the SHA-256 recorded in {Path(directory) / METADATA_FILE} "
            f"(expected {metadata.get(sha256_key)}, found {actual}): the file was changed or truncated"
        )
    return path


def record_file(directory: str | os.PathLike, name: str, sha256_key: str) -> None:
    """Record in agad.json, under ``sha256_key``, the SHA-256 of ``name``, a file just added to the checkpoint."""
    directory = Path(directory)
    metadata = read_metadata(directory)
    metadata[sha256_key] = sha256_of(directory / name)
    _write_atomically(directory / METADATA_FILE, lambda f: f.write(json.dumps(metadata, indent=2).encode()))


def load_checkpoint(directory: str | os.PathLike) -> tuple[dict, dict]:
    metadata = read_metadata(directory)
    weights = verified_file(directory, WEIGHTS_FILE, "weights_sha256", metadata)
    import torch

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{weights} could not be loaded: {error}") from None
    return state, metadata
