"""The registry's reference normal windows: the normals every retrain keeps training on,
and a held-out share of them for the promotion gate's fixed validation set.

Raw windows (the scorer's input shape), under ROOT/reference/{train,validation}.npy,
each written atomically. They are stored once; `replace=True` stores a new set (the
gate's validation set then changes with it, so figures before and after are not
comparable).
"""

from __future__ import annotations

import io
import math

import numpy as np

from agad_stream import ModelRegistry
from agad_stream.model_registry import atomic_write_bytes

REFERENCE_DIR = "reference"
DEFAULT_HOLDOUT = 0.2


def fit_reference_shape(normals: np.ndarray, raw_shape: tuple[int, ...]) -> np.ndarray:
    """Raw windows [N, *raw_shape] as they are; [N, L] too when the model takes one channel
    (the natural shape of a UCR file or a list of beats). Anything else is a ValueError."""
    normals = np.asarray(normals)
    raw_shape = tuple(raw_shape)
    if normals.shape[1:] == raw_shape:
        return normals
    if raw_shape[0] == 1 and normals.shape[1:] == raw_shape[1:]:
        return normals[:, None]
    one_channel = f" or [N, {', '.join(map(str, raw_shape[1:]))}]" if raw_shape[0] == 1 else ""
    raise ValueError(f"reference windows have shape {list(normals.shape)}, but the current model takes windows "
                     f"of {list(raw_shape)} ({math.prod(raw_shape)} values): give [N, {', '.join(map(str, raw_shape))}]"
                     f"{one_channel}")


def save_reference(registry: ModelRegistry, normals: np.ndarray, holdout: float = DEFAULT_HOLDOUT, seed: int = 0,
                   raw_shape: tuple[int, ...] | None = None, replace: bool = False) -> tuple[int, int]:
    """Split raw normal windows into reference training and validation sets; returns their sizes.

    With `raw_shape` (the served model's raw window shape) the windows are checked against it
    before anything is written."""
    folder = registry.root / REFERENCE_DIR
    if (folder / "validation.npy").exists() and not replace:
        raise ValueError(f"registry {registry.root} already has reference windows; they are stored once "
                         "(--replace stores a new set)")
    if raw_shape is not None:
        normals = fit_reference_shape(normals, raw_shape)
    normals = np.asarray(normals, dtype=np.float32)
    if normals.ndim < 2 or len(normals) < 10 or not np.isfinite(normals).all():
        raise ValueError(f"reference normals must be >= 10 finite windows, got shape {normals.shape}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    order = np.random.default_rng(seed).permutation(len(normals))
    n_validation = max(1, int(round(holdout * len(normals))))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "validation.npy").unlink(missing_ok=True)  # a crash from here on leaves no half-replaced set
    for name, part in (("train", order[n_validation:]), ("validation", order[:n_validation])):  # validation last:
        buffer = io.BytesIO()                                                                  # it marks completion
        np.save(buffer, normals[part])
        atomic_write_bytes(folder / f"{name}.npy", buffer.getvalue())
    return len(normals) - n_validation, n_validation


def load_reference(registry: ModelRegistry, raw_shape: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training normals, validation normals), raw; with `raw_shape`, a set stored for another
    window shape is refused with a ValueError that says how to replace it."""
    folder = registry.root / REFERENCE_DIR
    if not (folder / "validation.npy").exists():
        raise FileNotFoundError(f"registry {registry.root} has no reference normal windows: store them once with "
                                f"`agad-stream models --model-registry {registry.root} reference --windows FILE.npy`")
    train, validation = np.load(folder / "train.npy"), np.load(folder / "validation.npy")
    if raw_shape is not None and not train.shape[1:] == validation.shape[1:] == tuple(raw_shape):
        raise ValueError(f"the reference windows of {registry.root} have shape {list(train.shape[1:])}, but the "
                         f"current model takes {list(raw_shape)}: store a new set with `agad-stream models "
                         f"--model-registry {registry.root} reference --replace --windows FILE.npy`")
    return train, validation
