"""The model a scorer serves: one fixed model directory, or a registry's current version.

Hot reload: `ModelSource.refresh()` reads the registry's `current` pointer (one small
file) between batches and loads the new version when it changed. A version that fails to
load, for any reason (a bad checksum, an unknown key in modality.json...), is logged and
skipped; the previous model keeps serving. At startup the same failure is one ValueError
naming the version, the path and the cause, which the command line prints as one line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agad_stream import AGAD, ModelRegistry
from modalities import Modality
from pipelines.model_dir import load_model_dir
from pipelines.streaming.metrics import log_event

log = logging.getLogger("agad_stream.scorer")


@dataclass
class ServedModel:
    model: AGAD
    modality: Modality
    version: int | str
    raw_shape: tuple[int, ...]

    @property
    def threshold(self) -> float:
        return float(self.model.threshold_)

    def score(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, residuals) of raw windows [N, *raw_shape], through the modality's `prepare`."""
        return self.model.score_and_residuals(self.modality.prepare(raw))


def resolve_raw_shape(modality: Modality, window_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The modality's raw window shape, with sizes it leaves open (None) taken from the model input."""
    shape = tuple(modality.raw_shape)
    tail = tuple(window_shape)[-len(shape):]
    return tuple(int(t) if s is None else int(s) for s, t in zip(shape, tail))


def load_served_model(path: Path, version: int | str, device: str) -> ServedModel:
    """Load and warm up (one forward pass and the signal-quality checks), so the first live batch
    does not pay for lazy initialisation and bad settings are refused here, not batch by batch."""
    model, modality = load_model_dir(path, device=device)
    served = ServedModel(model, modality, version, resolve_raw_shape(modality, model.window_shape_))
    served.score(np.zeros((2, *served.raw_shape), dtype=np.float32))
    modality.quality_issues(np.zeros((2, *served.raw_shape), dtype=np.float32))
    return served


class ModelSource:
    """Where the scorer's model comes from: `model_dir` (fixed) or `registry` (hot reload)."""

    def __init__(self, model_dir: str | Path | None = None, registry: str | Path | None = None, device: str = "auto"):
        if (model_dir is None) == (registry is None):
            raise ValueError("give exactly one of a model directory or a model registry")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.registry = ModelRegistry(registry) if registry is not None else None
        self.device = device
        self.current: ServedModel | None = None
        self._skipped_version: int | None = None

    def load(self) -> ServedModel:
        """The first model; raises when there is none to serve."""
        if self.model_dir is not None:
            self.current = self._load(self.model_dir, self.model_dir.name)
        else:
            version = self.registry.current_version()
            if version is None:
                raise FileNotFoundError(f"model registry {self.registry.root} has no current version; publish a model first")
            self.current = self._load(self.registry.path(version), version)
        log_event(log, "model_loaded", version=self.current.version, device=self.current.model.device_,
                  window=self.current.raw_shape, threshold=self.current.threshold)
        return self.current

    def refresh(self) -> bool:
        """Switch to the registry's current version if it changed; True when it did."""
        if self.registry is None:
            return False
        try:
            version = self.registry.current_version()
        except (OSError, ValueError) as error:
            log_event(log, "registry_unreadable", logging.WARNING, error=error)
            return False
        if version is None or version == self.current.version or version == self._skipped_version:
            return False
        try:
            self.current = self._load(self.registry.path(version), version)
        except ValueError as error:
            self._skipped_version = version
            log_event(log, "model_reload_failed", logging.ERROR, version=version, error=error,
                      serving=self.current.version)
            return False
        log_event(log, "model_reloaded", version=version, window=self.current.raw_shape, threshold=self.current.threshold)
        return True

    def _load(self, path: Path, version: int | str) -> ServedModel:
        """Load one version; any failure becomes a ValueError saying which model and why."""
        try:
            return load_served_model(path, version, self.device)
        except Exception as error:
            raise ValueError(f"cannot serve model version {version} from {path}: {type(error).__name__}: {error}") from None
