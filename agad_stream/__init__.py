"""agad-stream core: AGAD (Shi & Zhang 2023, arXiv 2304.04211) for 1D and 2D windows.

Modality-agnostic: it sees float arrays of windows, never files, modalities or Kafka.
"""

from agad_stream.checkpoint import CheckpointError
from agad_stream.estimator import AGAD, NotFittedError
from agad_stream.generators import available_generators, build_generator, register_generator
from agad_stream.model_registry import ModelRegistry

__all__ = [
    "AGAD",
    "CheckpointError",
    "ModelRegistry",
    "NotFittedError",
    "available_generators",
    "build_generator",
    "register_generator",
]
