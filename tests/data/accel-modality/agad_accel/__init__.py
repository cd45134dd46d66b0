"""3-axis accelerometer windows for agad-stream: an example of an out-of-tree modality.

Reads recordings of x, y, z samples (a CSV file with a header naming x, y, z and an optional
label column of 0/1 per sample, or a .npy array [T, 3]), or a folder of them, and cuts each
into windows [3, window]. Installed, it is found through the entry point
`agad_stream.modalities: accel = agad_accel:AccelModality`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from modalities import Modality, Windows

AXES = ("x", "y", "z")


class AccelModality(Modality):
    """Windows [3, window] every `stride` samples; a window is anomalous if any of its samples is.

    `prepare` removes each window's mean per axis (gravity, which depends only on how the
    sensor is worn). The "stuck" quality check flags a window whose axes all stay within
    `stuck_tolerance` of one value: a frozen sensor looks perfectly normal to the model.
    """

    name = "accel"

    def __init__(self, window: int = 64, stride: int | None = None, quality_checks: tuple[str, ...] = ("stuck",),
                 stuck_tolerance: float = 1e-3) -> None:
        self.window = window
        self.stride = stride
        self.quality_checks = quality_checks
        self.stuck_tolerance = stuck_tolerance

    @property
    def raw_shape(self) -> tuple[int, int]:
        return (3, self.window)

    def load(self, path: str | Path) -> Windows:
        path = Path(path)
        files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".npy")) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"no .csv or .npy recordings in {path}")
        parts = [self._cut(file, *read_recording(file)) for file in files]
        return Windows.concat(parts)

    def _cut(self, file: Path, samples: np.ndarray, labels: np.ndarray | None) -> Windows:
        stride = self.stride or self.window
        starts = np.arange(0, len(samples) - self.window + 1, stride)
        if not len(starts):
            raise ValueError(f"{file}: {len(samples)} samples, fewer than one window of {self.window}")
        X = np.stack([samples[s:s + self.window].T for s in starts])
        y = None if labels is None else np.array([labels[s:s + self.window].max() for s in starts])
        n = len(starts)
        return Windows(X=X, y=y, source=[file.name] * n, group=[file.name] * n, position=starts)

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        raw = self.check_raw(raw).astype(np.float32)
        return raw - raw.mean(axis=-1, keepdims=True)

    def quality_issues(self, raw: np.ndarray) -> list[str | None]:
        raw = self.check_raw(raw)
        checks = self._enabled_checks(("stuck",))
        stuck = np.ptp(raw, axis=-1).max(axis=-1) <= self.stuck_tolerance
        return ["stuck" if "stuck" in checks and s else None for s in stuck]


def read_recording(file: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(samples [T, 3] float32, per-sample labels [T] or None) from a .csv or .npy recording."""
    if file.suffix == ".npy":
        samples = np.load(file, allow_pickle=False)
        if samples.ndim != 2 or samples.shape[1] != 3:
            raise ValueError(f"{file}: expected samples [T, 3], got {samples.shape}")
        return samples.astype(np.float32), None
    with open(file, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not set(AXES) <= set(rows[0]):
        raise ValueError(f"{file}: expected a header with columns x, y, z (and optionally label)")
    samples = np.array([[float(row[a]) for a in AXES] for row in rows], dtype=np.float32)
    labels = np.array([int(row["label"]) for row in rows], dtype=np.int8) if "label" in rows[0] else None
    return samples, labels
