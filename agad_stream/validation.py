"""Input checks shared by fit and scoring: bad windows fail early with a message naming the problem."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np


def check_windows(X, expected_shape: Sequence[int] | None = None, name: str = "X") -> np.ndarray:
    """Return ``X`` as float32 [N, C, L] or [N, C, H, W]; [N, L] is promoted to [N, 1, L].

    ``expected_shape`` is the per-window shape a fitted model was trained on.
    """
    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported, so never import it here
    if torch is not None and isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(X):
        raise TypeError(f"{name} is a sparse {type(X).__name__}: sparse input is not supported, pass X.toarray()")
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{name} could not be read as an array: {error}") from None
    if X.dtype.kind == "c":
        raise ValueError(f"{name} is complex ({X.dtype}): Complex data not supported")
    if X.dtype.kind == "O":  # e.g. numbers from a pandas object column; anything else is a TypeError naming it
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} of dtype object holds a value that is not a number: {error}") from None
    if X.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric (int or float), got dtype {X.dtype}")
    given_shape = X.shape
    if X.ndim == 2:
        X = X[:, None, :]
    if X.ndim not in (3, 4):
        raise ValueError(
            f"{name} must have rank 2 [N, L], 3 [N, C, L] or 4 [N, C, H, W]; got rank {X.ndim} with shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {given_shape})")
    if X.size == 0:
        raise ValueError(f"{name} is empty: 0 feature(s) (shape={given_shape}) while a minimum of 1 is required.")
    X = X.astype(np.float32, copy=False)
    finite = np.isfinite(X).reshape(len(X), -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{name} contains NaN or inf in {len(bad)} window(s), first at index {bad[0]}")
    if expected_shape is not None and tuple(X.shape[1:]) != tuple(expected_shape):
        raise ValueError(
            f"{name} has windows of shape {tuple(X.shape[1:])}, but the model was fitted on {tuple(expected_shape)}"
        )
    return X


def check_labels(y, n: int) -> np.ndarray:
    """Labels: 1 marks a labelled anomaly, 0 a normal window."""
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise ValueError(f"y has {len(y)} labels for {n} windows")
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold only 0 (normal) and 1 (labelled anomaly)")
    return y.astype(np.int8)
