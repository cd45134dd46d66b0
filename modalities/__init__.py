"""Modalities: raw data (ECG records, audio clips, images, arrays) -> windows for AGAD.

Every modality has the same interface (`Modality`): `load(path, **opts) -> Windows`,
`prepare(raw) -> model inputs`, `raw_shape`, `to_dict()` / `from_dict()`. The registry
imports a modality's module only when asked for it, so ECG scoring does not pull in
torchaudio.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Modality, Windows, aggregate_scores, split_by_group

__all__ = [
    "Modality",
    "Windows",
    "aggregate_scores",
    "available_modalities",
    "get_modality",
    "load_modality",
    "split_by_group",
]

_REGISTRY: dict[str, str] = {
    "ecg": "modalities.ecg:ECGModality",
    "audio": "modalities.audio:AudioModality",
    "image": "modalities.image:ImageModality",
    "array": "modalities.arrays:ArrayModality",
}


def available_modalities() -> list[str]:
    return sorted(_REGISTRY)


def _modality_class(name: str) -> type[Modality]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown modality {name!r}; choose from {available_modalities()}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_modality(name: str, **settings: Any) -> Modality:
    """A modality by registry name, e.g. get_modality("ecg", ann="pvc")."""
    return _modality_class(name)(**settings)


def load_modality(d: dict[str, Any]) -> Modality:
    """Rebuild a modality from `Modality.to_dict()` (e.g. the JSON saved next to a model)."""
    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"not a modality description (needs a 'name' key): {d!r}")
    return _modality_class(d["name"]).from_dict(d)
