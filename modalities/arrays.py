"""Generic pre-cut windows: UCR time-series text files and NumPy arrays.

Lets any signal that is already windowed elsewhere (UCR/UEA benchmarks, exported
sensor data) go through the same pipelines as ECG and audio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import Modality, Windows

_TEXT_SUFFIXES = {".tsv": "\t", ".csv": ",", ".txt": None}


class ArrayModality(Modality):
    """Windows from a UCR-format .tsv/.csv/.txt file or a .npy/.npz array.

    Text: one series per line, first column the class label, then the values (.tsv tab,
    .csv comma, .txt any whitespace), as in the UCR archive. Arrays: .npy holds X;
    .npz holds X and optionally y. X is [N, L] (one channel) or [N, C, L].

    Labels: with `normal_label`, windows of that class get y=0 and all others y=1 (the
    one-class setup of UCR anomaly benchmarks); without it, labels already in {0, 1} are
    used as they are and anything else leaves y unknown. The original labels are kept in
    `Windows.info["class"]`. `prepare` only adds the channel axis: UCR series are
    already z-normalised and the core fits its own per-channel scaling.
    """

    name = "array"
    #: without the pseudo-anomaly term (λ_adcon = 0, no auxiliary BN), as the ECG modality: on
    #: validation folds of the TRAIN normals of four UCR sets (GunPoint, ItalyPowerDemand, Trace,
    #: Coffee) it was the only AGAD setting tried at or above its plain autoencoder on three of
    #: the four, and the best on average; the full AGAD fell 0.02-0.06 below it on two
    #: (docs/array-defaults.md). Its windows are always 1D ([C, L]): no 2D case to choose for.
    agad_defaults = {"lambda_adcon": 0.0, "aux_bn": False}

    def __init__(self, normal_label: str | float | None = None) -> None:
        self.normal_label = normal_label

    @property
    def raw_shape(self) -> tuple[int | None, ...]:
        return (getattr(self, "n_channels_", None), getattr(self, "length_", None))

    def load(self, path: str | Path) -> Windows:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"array file not found: {path}")
        if path.suffix in _TEXT_SUFFIXES:
            X, labels = read_ucr(path)
        elif path.suffix in (".npy", ".npz"):
            X, labels = read_npy(path)
        else:
            raise ValueError(f"unsupported array file {path}: expected .tsv, .csv, .txt, .npy or .npz")
        if X.ndim == 2:
            X = X[:, None, :]
        if X.ndim != 3 or len(X) == 0:
            raise ValueError(f"{path}: expected windows [N, L] or [N, C, L] with N > 0, got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError(
                f"{path}: contains NaN or inf (variable-length series must be resampled to one length first)"
            )
        self.n_channels_, self.length_ = int(X.shape[1]), int(X.shape[2])
        info = {} if labels is None else {"class": labels}
        n = len(X)
        return Windows(
            X=X,
            y=self._labels(labels, path),
            source=[path.name] * n,
            group=[path.name] * n,
            position=np.arange(n),
            info=info,
        )

    def _labels(self, labels: np.ndarray | None, path: Path) -> np.ndarray | None:
        if labels is None:
            if self.normal_label is not None:
                raise ValueError(f"{path} has no labels, but normal_label={self.normal_label!r} was given")
            return None
        if self.normal_label is not None:
            is_normal = _same_label(labels, self.normal_label)
            if not is_normal.any():
                found = np.unique(labels)[:20]
                raise ValueError(f"normal_label={self.normal_label!r} not found in {path}; labels are {found}")
            return (~is_normal).astype(np.int8)
        if np.isin(labels.astype(str), ("0", "1", "0.0", "1.0")).all():
            return labels.astype(np.float64).astype(np.int8)
        return None

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """[N, L] or [N, C, L] (or one window) -> float32 [N, C, L]."""
        raw = np.asarray(raw)
        if raw.ndim == 2 and self.raw_shape[0] in (None, 1):
            raw = raw[:, None, :]
        return self.check_raw(raw).astype(np.float32)


def read_ucr(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(values [N, L] float32, labels [N] as str) from a UCR-format text file."""
    path = Path(path)
    delimiter = _TEXT_SUFFIXES.get(path.suffix)
    rows: list[list[str]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(line.strip().split(delimiter))
    if not rows:
        raise ValueError(f"{path} holds no series")
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        raise ValueError(f"{path}: rows have different numbers of columns {sorted(lengths)}")
    if lengths.pop() < 2:
        raise ValueError(f"{path}: each row needs a label and at least one value")
    labels = np.array([r[0].strip() for r in rows])
    values = np.empty((len(rows), len(rows[0]) - 1), dtype=np.float32)
    for i, row in enumerate(rows):
        try:
            values[i] = [float(v) for v in row[1:]]
        except ValueError as e:
            raise ValueError(f"{path}, line {i + 1}: non-numeric value ({e})") from None
    return values, labels


def load_numpy_file(path: Path) -> Any:
    """np.load without pickles; an empty, cut-off or foreign file is a ValueError naming it (np.load
    raises EOFError for a 0-byte file, an error the command line would print as a traceback)."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"array file not found: {path}") from None
    except (ValueError, OSError, EOFError) as e:
        why = "it is empty (0 bytes)" if path.stat().st_size == 0 else str(e)
        raise ValueError(f"cannot read array file {path}: {why}") from None


def read_npy(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(X float32, y or None) from .npy (X only) or .npz (keys X and optional y)."""
    path = Path(path)
    data: Any = load_numpy_file(path)
    if path.suffix == ".npz":
        if "X" not in data:
            raise ValueError(f"{path} has no array 'X' (found {sorted(data.files)})")
        X, y = data["X"], data.get("y")
    else:
        X, y = data, None
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}")
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(X):
            raise ValueError(f"{path}: y has {len(y)} entries but X has {len(X)} windows")
    return X.astype(np.float32), y


def _same_label(labels: np.ndarray, wanted: str | float) -> np.ndarray:
    """Compare labels numerically when both sides are numbers ("1.0" == 1), else as text."""
    try:
        return labels.astype(np.float64) == float(wanted)
    except ValueError:
        return labels.astype(str) == str(wanted)
