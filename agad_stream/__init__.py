"""agad-stream core: AGAD (Shi & Zhang 2023, arXiv 2304.04211) for 1D and 2D windows.

Modality-agnostic: it sees float arrays of windows, never files, modalities or Kafka.
Names are imported on first use, so `ModelRegistry` or `CheckpointError` alone (a scorer
on ONNX Runtime, the command line) never loads torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AGAD": "agad_stream.estimator",
    "CheckpointError": "agad_stream.checkpoint",
    "ModelRegistry": "agad_stream.model_registry",
    "NotFittedError": "agad_stream.estimator",
    "available_generators": "agad_stream.generators",
    "build_generator": "agad_stream.generators",
    "register_generator": "agad_stream.generators",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'agad_stream' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
