"""Per-channel scaling of windows, shared by AGAD (torch) and the ONNX Runtime scorer (numpy only)."""

from __future__ import annotations

import numpy as np


def per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    """Per-channel ``values`` [C] shaped to broadcast over windows of rank ``ndim`` ([N, C, ...])."""
    return values.reshape((1, -1) + (1,) * (ndim - 2))


def normalise(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (X - per_channel(mean, X.ndim)) / per_channel(std, X.ndim)

