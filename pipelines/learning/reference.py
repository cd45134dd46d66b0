"""The registry's reference normal windows, stored once: the normals every retrain keeps
training on, and a held-out share of them for the promotion gate's fixed validation set.

Raw windows (the scorer's input shape), under ROOT/reference/{train,validation}.npy,
each written atomically; a registry's reference is never overwritten.
"""

from __future__ import annotations

import io

import numpy as np

from agad_stream import ModelRegistry
from agad_stream.model_registry import atomic_write_bytes

REFERENCE_DIR = "reference"
DEFAULT_HOLDOUT = 0.2


def save_reference(registry: ModelRegistry, normals: np.ndarray, holdout: float = DEFAULT_HOLDOUT,
                   seed: int = 0) -> tuple[int, int]:
    """Split raw normal windows into reference training and validation sets; returns their sizes."""
    folder = registry.root / REFERENCE_DIR
    if (folder / "validation.npy").exists():
        raise ValueError(f"registry {registry.root} already has reference windows; they are stored once")
    normals = np.asarray(normals, dtype=np.float32)
    if normals.ndim < 2 or len(normals) < 10 or not np.isfinite(normals).all():
        raise ValueError(f"reference normals must be >= 10 finite windows, got shape {normals.shape}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    order = np.random.default_rng(seed).permutation(len(normals))
    n_validation = max(1, int(round(holdout * len(normals))))
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", order[n_validation:]), ("validation", order[:n_validation])):  # validation last:
        buffer = io.BytesIO()                                                                  # it marks completion
        np.save(buffer, normals[part])
        atomic_write_bytes(folder / f"{name}.npy", buffer.getvalue())
    return len(normals) - n_validation, n_validation


def load_reference(registry: ModelRegistry) -> tuple[np.ndarray, np.ndarray]:
    """(training normals, validation normals), raw."""
    folder = registry.root / REFERENCE_DIR
    if not (folder / "validation.npy").exists():
        raise FileNotFoundError(f"registry {registry.root} has no reference normal windows: store them once with "
                                f"`agad-stream models reference --model-registry {registry.root} --windows FILE.npy`")
    return np.load(folder / "train.npy"), np.load(folder / "validation.npy")
