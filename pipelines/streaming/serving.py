"""The model a scorer serves: one fixed model directory, or a registry's current version.

Hot reload: `ModelSource.refresh()` reads the registry's `current` pointer (one small
file) between batches and loads the new version when it changed. A version that fails to
load, for any reason (a bad checksum, an unknown key in modality.json...), is logged and
skipped; the previous model keeps serving. At startup the same failure is one ValueError
naming the version, the path and the cause, which the command line prints as one line.

Engines: `onnx` scores with ONNX Runtime on the CPU and never imports torch (the
version needs the generator.onnx that `publish` exports); `torch` is the AGAD estimator
itself, on the CPU or a GPU; `auto` picks onnx on the CPU and torch on a GPU, and torch for
a version without a graph (published before export existed, or a user generator the
exporter could not trace), saying so in one log line. The choice is made per version, so
hot reload holds on both. Audio's log-mel front-end is torchaudio's, so an audio model
imports torch on either engine (only G runs on ONNX Runtime).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agad_stream import ModelRegistry
from agad_stream.checkpoint import ONNX_SHA256_KEY, read_metadata
from modalities import Modality
from pipelines.offline.model_dir import load_model_dir, load_model_modality
from pipelines.kafka.metrics import log_event

if TYPE_CHECKING:
    from agad_stream import AGAD
    from pipelines.streaming.onnx_engine import OnnxAGAD

log = logging.getLogger("agad_stream.scorer")

ENGINES = ("auto", "onnx", "torch")
#: present when an NVIDIA driver is loaded: `auto` then serves with torch, which can use the GPU
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


@dataclass
class ServedModel:
    model: AGAD | OnnxAGAD
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


def choose_engine(path: Path, engine: str, device: str) -> str:
    """"onnx" or "torch" for the model directory ``path`` (see the module docstring)."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    on_cpu = device == "cpu" or (device == "auto" and not NVIDIA_DRIVER.exists())
    if engine == "onnx" and not on_cpu:
        raise ValueError(f"the onnx engine runs on the CPU, not on device {device!r}: use --engine torch or --device cpu")
    if engine != "auto":
        return engine
    if not on_cpu:
        return "torch"
    metadata = read_metadata(path)
    if ONNX_SHA256_KEY not in metadata:
        log_event(log, "engine_fallback", engine="torch", model=path,
                  reason="the model has no generator.onnx (published before ONNX export, or not exportable)")
        return "torch"
    score = metadata.get("params", {}).get("anomaly_score", "reconstruction")
    if score != "reconstruction":
        log_event(log, "engine_fallback", engine="torch", model=path,
                  reason=f"anomaly_score={score} needs the discriminator, and generator.onnx holds the generator only")
        return "torch"
    return "onnx"


def load_served_model(path: Path, version: int | str, device: str, engine: str = "torch",
                      threads: int | None = None) -> ServedModel:
    """Load and warm up (one forward pass and the signal-quality checks), so the first live batch
    does not pay for lazy initialisation and bad settings are refused here, not batch by batch.
    ``threads``: CPU threads for inference (None: the engine's default)."""
    path = Path(path)
    if choose_engine(path, engine, device) == "onnx":
        from pipelines.streaming.onnx_engine import OnnxAGAD

        modality = load_model_modality(path)
        model = OnnxAGAD(path, threads=threads or 1)
    else:
        model, modality = load_model_dir(path, device=device)
        if threads:
            import torch

            torch.set_num_threads(threads)
    served = ServedModel(model, modality, version, resolve_raw_shape(modality, model.window_shape_))
    served.score(np.zeros((2, *served.raw_shape), dtype=np.float32))
    modality.quality_issues(np.zeros((2, *served.raw_shape), dtype=np.float32))
    return served


class ModelSource:
    """Where the scorer's model comes from: `model_dir` (fixed) or `registry` (hot reload)."""

    def __init__(self, model_dir: str | Path | None = None, registry: str | Path | None = None, device: str = "auto",
                 engine: str = "auto", threads: int | None = None):
        if (model_dir is None) == (registry is None):
            raise ValueError("give exactly one of a model directory or a model registry")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.registry = ModelRegistry(registry) if registry is not None else None
        self.device = device
        self.engine = engine
        self.threads = threads
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
        log_event(log, "model_reloaded", version=version, device=self.current.model.device_, window=self.current.raw_shape, threshold=self.current.threshold)
        return True

    def _load(self, path: Path, version: int | str) -> ServedModel:
        """Load one version; any failure becomes a ValueError saying which model and why."""
        try:
            return load_served_model(path, version, self.device, self.engine, self.threads)
        except Exception as error:
            raise ValueError(f"cannot serve model version {version} from {path}: {type(error).__name__}: {error}") from None
