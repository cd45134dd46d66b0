"""A model directory: the AGAD checkpoint plus the modality settings that made its windows.

Everything needed to score raw windows later (offline or from Kafka) lives here,
so a scorer is started with nothing but this path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from modalities import Modality, load_modality

if TYPE_CHECKING:
    from agad_stream import AGAD

MODALITY_FILE = "modality.json"
#: a modality's settings are a few kB: a larger file is refused unread, so a hostile one cannot exhaust memory
MAX_MODALITY_FILE_BYTES = 1 << 20


def save_model_dir(path: str | os.PathLike, model: AGAD, modality: Modality) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MODALITY_FILE).write_text(json.dumps(modality.to_dict(), indent=2))
    model.save(path)
    return path


def load_model_modality(path: str | os.PathLike) -> Modality:
    """The modality settings of a model directory (needs no torch: the ONNX scorer reads them too)."""
    path = Path(path)
    if not (path / MODALITY_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a model directory: {MODALITY_FILE} is missing")
    size = (path / MODALITY_FILE).stat().st_size
    if size > MAX_MODALITY_FILE_BYTES:
        raise ValueError(f"{path / MODALITY_FILE} is {size} bytes; a modality's settings take at most "
                         f"{MAX_MODALITY_FILE_BYTES}")
    try:
        settings = json.loads((path / MODALITY_FILE).read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path / MODALITY_FILE} is not JSON: {error}") from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path / MODALITY_FILE} must hold a JSON object, not {type(settings).__name__}")
    return load_modality(settings)


def load_model_dir(path: str | os.PathLike, device: str | None = None) -> tuple[AGAD, Modality]:
    from agad_stream import AGAD

    modality = load_model_modality(path)
    return AGAD.load(path, device=device), modality
