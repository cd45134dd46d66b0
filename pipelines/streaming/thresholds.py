"""Per-stream thresholds: `global` (the model's calibrated threshold for every stream) or
`adaptive` (a robust estimate of a quantile of each stream's own recent scores).

Why: a threshold calibrated on other patients' normal beats does not carry over to a new
patient, whose normal beats may score lower (alarms missed) or higher (false alarms).

Adaptive, per stream key:
- warm-up: until `warmup` of its windows were accepted (see below), the global threshold applies;
- then the threshold is a robust estimate of the `quantile` of the stream's last `window`
  accepted scores: exp(median + z(quantile) x 1.4826 x MAD) of their logarithms (the
  quantile of a log-normal distribution with the robust location and scale: scores are
  positive and skewed to the right), clamped to [min_factor, max_factor] x the global
  threshold. Unlike the plain empirical quantile, it holds when anomalies are
  common: on MIT-BIH record 200, where 28% of the beats are PVCs scored under the global
  threshold, the empirical 99% quantile sits above almost all of them;
- only scores under the current threshold x (1 + margin) are accepted into that window,
  so a burst of anomalies cannot drag the threshold up (and the clamp bounds it anyway).
At most `max_streams` streams are kept (least recently seen dropped first).

State is kept in a local JSON file (`state_path`), written atomically (temporary file,
fsync, rename) every `save_every_s` seconds and on shutdown, and read at start. A crash
loses at most the updates since the last save: those streams' thresholds are slightly
older, and windows consumed again after the crash update them again. State saved under
another model version is discarded, since scores of different models are not comparable.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

from agad_stream.model_registry import atomic_write_bytes
from pipelines.streaming.metrics import log_event

log = logging.getLogger("agad_stream.scorer")

MODES = ("global", "adaptive")
STATE_FORMAT = 1
#: MAD x 1.4826 estimates the standard deviation of normally distributed values
MAD_TO_SIGMA = 1.4826
#: scores are norms (>= 0); this floor keeps their logarithm finite
MIN_SCORE = 1e-12


@dataclass
class ThresholdConfig:
    mode: str = "global"
    quantile: float = 0.99
    warmup: int = 100
    window: int = 1000
    margin: float = 0.1
    min_factor: float = 0.25
    max_factor: float = 2.0
    max_streams: int = 10_000
    state_path: str | None = None
    save_every_s: float = 10.0

    def check(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"threshold mode must be one of {MODES}, got {self.mode!r}")
        if not 0 < self.quantile < 1:
            raise ValueError(f"threshold quantile must lie in (0, 1), got {self.quantile}")
        if self.warmup < 1 or self.window < self.warmup or self.max_streams < 1:
            raise ValueError(f"need warmup >= 1, window >= warmup and max_streams >= 1, got warmup {self.warmup}, "
                             f"window {self.window}, max_streams {self.max_streams}")
        if self.margin < 0 or not 0 < self.min_factor <= 1 <= self.max_factor:
            raise ValueError(f"need margin >= 0 and 0 < min_factor <= 1 <= max_factor, got margin {self.margin}, "
                             f"factors {self.min_factor}, {self.max_factor}")


class _Stream:
    __slots__ = ("scores", "threshold")

    def __init__(self, window: int, scores=()):
        self.scores: deque[float] = deque(scores, maxlen=window)
        self.threshold: float | None = None


class StreamThresholds:
    """The threshold that applies to each window; thread-safe (scored on one thread, saved on another)."""

    def __init__(self, config: ThresholdConfig | None = None):
        self.config = config or ThresholdConfig()
        self.config.check()
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._model_version: str | None = None
        self._lock = threading.Lock()
        self._last_save = time.monotonic()
        if self.config.mode == "adaptive" and self.config.state_path and Path(self.config.state_path).is_file():
            self._load(Path(self.config.state_path))

    def apply(self, stream: str | None, score: float, global_threshold: float, model_version) -> tuple[float, str]:
        """(threshold, mode that set it) for this window, then learn from its score."""
        if self.config.mode == "global":
            return global_threshold, "global"
        with self._lock:
            if str(model_version) != self._model_version:
                self._streams.clear()  # another model's scores are on another scale
                self._model_version = str(model_version)
            key = "" if stream is None else str(stream)
            state = self._streams.pop(key, None) or _Stream(self.config.window)
            self._streams[key] = state  # most recently seen last
            if len(self._streams) > self.config.max_streams:
                self._streams.popitem(last=False)
            if state.threshold is None and len(state.scores) >= self.config.warmup:  # restored from the state file
                state.threshold = self._bounded_quantile(state, global_threshold)
            threshold, mode = (global_threshold, "global") if state.threshold is None else (state.threshold, "adaptive")
            if score <= threshold * (1 + self.config.margin):
                state.scores.append(float(score))
                if len(state.scores) >= self.config.warmup:
                    state.threshold = self._bounded_quantile(state, global_threshold)
            return threshold, mode

    def _bounded_quantile(self, state: _Stream, global_threshold: float) -> float:
        logs = np.log(np.maximum(np.fromiter(state.scores, dtype=np.float64, count=len(state.scores)), MIN_SCORE))
        median = float(np.median(logs))
        mad = float(np.median(np.abs(logs - median)))
        value = math.exp(median + NormalDist().inv_cdf(self.config.quantile) * MAD_TO_SIGMA * mad)
        return min(max(value, self.config.min_factor * global_threshold), self.config.max_factor * global_threshold)

    def save_if_due(self, force: bool = False) -> None:
        path = self.config.state_path
        if self.config.mode != "adaptive" or not path:
            return
        if not force and time.monotonic() - self._last_save < self.config.save_every_s:
            return
        with self._lock:
            state = {"format": STATE_FORMAT, "model_version": self._model_version, "config": asdict(self.config),
                     "streams": {key: list(s.scores) for key, s in self._streams.items()}}
        atomic_write_bytes(path, json.dumps(state).encode())
        self._last_save = time.monotonic()

    def _load(self, path: Path) -> None:
        try:
            state = json.loads(path.read_text())
            if state.get("format") != STATE_FORMAT:
                raise ValueError(f"format {state.get('format')!r}, expected {STATE_FORMAT}")
            streams = {str(k): [float(x) for x in v] for k, v in state["streams"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log_event(log, "threshold_state_unreadable", logging.WARNING, path=path, error=error,
                      note="starting every stream with a warm-up")
            return
        self._model_version = state.get("model_version")
        for key, scores in list(streams.items())[-self.config.max_streams:]:
            self._streams[key] = _Stream(self.config.window, [s for s in scores if math.isfinite(s)])
        log_event(log, "threshold_state_loaded", path=path, streams=len(self._streams), model_version=self._model_version)

