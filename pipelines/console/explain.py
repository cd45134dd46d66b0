"""A window's explanation for the reviewer: its prepared signal, the model's reconstruction and the residual.

The review message carries the raw values and the version that flagged the window; the
console loads that version (cached) and recomputes G(x), so what the reviewer sees is
what the scorer saw. Top segments index the prepared window, as drawn here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from agad_stream import ModelRegistry
from agad_stream.model_registry import is_version_number
from pipelines.streaming.serving import ServedModel, load_served_model

CACHED_VERSIONS = 4


class Models:
    """The served versions by name: a registry's numbered versions, or one fixed model directory."""

    def __init__(self, registry: str | Path | None = None, model_dir: str | Path | None = None):
        if (registry is None) == (model_dir is None):
            raise ValueError("give exactly one of --model-registry or --model")
        self.registry = ModelRegistry(registry) if registry is not None else None
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self._cache: dict[str, ServedModel] = {}
        self._lock = threading.Lock()

    def current_name(self) -> str:
        if self.registry is None:
            return self.model_dir.name
        version = self.registry.current_version()
        if version is None:
            raise FileNotFoundError(f"model registry {self.registry.root} has no current version")
        return str(version)

    def get(self, version: str | int | None = None) -> ServedModel:
        name = self.current_name() if version is None else str(version)
        with self._lock:
            if name not in self._cache:
                self._cache[name] = load_served_model(self._path(name), name, device="cpu")
                while len(self._cache) > CACHED_VERSIONS:
                    self._cache.pop(next(iter(self._cache)))
            return self._cache[name]

    def _path(self, name: str) -> Path:
        if self.registry is None:
            if name != self.model_dir.name:
                raise ValueError(f"version {name!r} is not the served model {self.model_dir.name!r}")
            return self.model_dir
        if not is_version_number(name) or int(name) not in self.registry.versions():
            raise ValueError(f"model version {name!r} is not in registry {self.registry.root}")
        return self.registry.path(int(name))


def embed(served: ServedModel, raws: list) -> np.ndarray:
    """One row per raw window: the model's latent code (AGAD.latent), or, for an engine or a generator
    without it, the prepared window itself, flattened (alike windows are near in either). A window that
    does not fit the model's shape gets a row of NaN."""
    rows: list[np.ndarray | None] = []
    for raw in raws:
        try:
            rows.append(np.asarray(raw, dtype=np.float32).reshape(served.raw_shape))
        except (TypeError, ValueError):
            rows.append(None)
    fitting = [r for r in rows if r is not None]
    if not fitting:
        return np.full((len(rows), 1), np.nan)
    prepared = served.modality.prepare(np.stack(fitting))
    try:
        codes = served.model.latent(prepared)
    except (AttributeError, ValueError):  # an engine or generator without the bottleneck
        codes = prepared.reshape(len(prepared), -1).astype(np.float64)
    out = np.full((len(rows), codes.shape[1]), np.nan)
    out[[i for i, r in enumerate(rows) if r is not None]] = codes
    return out


def explain(served: ServedModel, raw: np.ndarray) -> dict:
    """Prepared input, reconstruction and residual of one raw window, as nested lists [C, L] or [C, H, W],
    with the axes to draw them on."""
    raw = np.asarray(raw, dtype=np.float32).reshape(served.raw_shape)
    prepared = served.modality.prepare(raw[None])
    score, residual = served.model.score_and_residuals(prepared)
    return {"input": _round(prepared[0]), "reconstruction": _round(prepared[0] - residual[0]),
            "residual": _round(residual[0]), "recomputed_score": float(score[0]), "axes": axes(served.modality)}


def axes(modality) -> dict:
    """What the prepared window's axes mean: `x` (along a 1D window, or a 2D one's columns) and `y`
    (amplitude, or a 2D one's rows), each {"label", "unit", "step"}: `step` is one sample in `unit`, so
    sample i lies at i * step; None where the index is all there is."""
    if modality.name == "ecg":  # raw windows are in the record's physical units, resampled to fs
        return {"x": {"label": "time", "unit": "ms", "step": 1000.0 / modality.fs},
                "y": {"label": "amplitude", "unit": "mV"}}
    if modality.name == "audio":  # log-mel patches [1, n_mels, frames]: row 0 is the lowest band
        return {"x": {"label": "time", "unit": "ms", "step": 1000.0 * modality.hop / modality.sample_rate},
                "y": {"label": "mel band (frequency)", "unit": None, "step": None, "low_first": True}}
    if modality.name == "image":
        return {"x": {"label": "column", "unit": None, "step": None}, "y": {"label": "row", "unit": None, "step": None}}
    return {"x": {"label": "sample", "unit": None, "step": None}, "y": {"label": "value", "unit": None}}


def _round(array: np.ndarray) -> list:
    return np.round(np.asarray(array, dtype=np.float64), 5).tolist()
