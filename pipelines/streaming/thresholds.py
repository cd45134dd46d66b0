"""Per-stream thresholds: `global` (the model's calibrated threshold for every stream),
`adaptive` (a robust estimate of a quantile of each stream's own recent scores) or `evt`
(DSPOT, Siffer et al. KDD 2017: a generalised Pareto tail of each stream's recent scores
around their drifting local mean).

Why: a threshold calibrated on other patients' normal beats does not carry over to a new
patient, whose normal beats may score lower (alarms missed) or higher (false alarms).

Per stream key, after a warm-up of `warmup` accepted windows (the global threshold meanwhile):
- adaptive: exp(median + z(quantile) x 1.4826 x MAD) of the logarithms of its last `window`
  accepted scores (the quantile of a log-normal distribution with the robust location and
  scale: scores are positive and skewed to the right). Unlike the plain empirical quantile,
  it holds when anomalies are common: on MIT-BIH record 200, where 28% of the beats are PVCs
  scored under the global threshold, the empirical 99% quantile sits above almost all of them;
- evt: M + z, where M is the mean of the last `drift_depth` accepted scores (the drift) and z
  the `quantile` of the last `window` residuals (score - M at its time), from a generalised
  Pareto fit to their largest tenth (peaks over threshold; agad_stream.calibration);
- both are clamped to [min_factor, max_factor] x the global threshold, and only scores under
  the current threshold x (1 + margin) are accepted, so a burst of anomalies cannot drag
  the threshold up.

State is bounded in bytes: each stream keeps a fixed-size ring of `window` float16 values
(2 bytes each, 0.05% relative precision) plus its key, and the least recently seen streams
are dropped once `max_streams` or `max_state_bytes` would be exceeded. It is saved to a
local binary file (`state_path`: a JSON header with the keys, then the rings) every
`save_every_s` seconds on a background thread (only the snapshot, a copy of the rings, holds
up scoring) and on shutdown, written atomically, and read at start. A save that fails (a
full disk) is a logged warning and a metric, and scoring goes on. A crash loses at most the
updates since the last save. State saved under another model version or mode is discarded,
since scores of different models are not comparable.
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
from typing import Callable

import numpy as np

from agad_stream.calibration import pot_threshold
from agad_stream.model_registry import atomic_write_bytes
from pipelines.kafka.metrics import log_event

log = logging.getLogger("agad_stream.scorer")

MODES = ("global", "adaptive", "evt")
STATE_FORMAT = 2
STATE_MAGIC = b"AGADTHR2"
#: MAD x 1.4826 estimates the standard deviation of normally distributed values
MAD_TO_SIGMA = 1.4826
#: scores are norms (>= 0); this floor keeps their logarithm finite
MIN_SCORE = 1e-12
VALUE_DTYPE = np.dtype("<f2")
FLOAT16_MAX = float(np.finfo(np.float16).max)
#: state-file bytes of a stream besides its values and key (its entry in the JSON header)
STREAM_OVERHEAD_BYTES = 16


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
    max_state_bytes: int = 32 * 2**20
    drift_depth: int = 20
    state_path: str | None = None
    save_every_s: float = 10.0

    def check(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"threshold mode must be one of {MODES}, got {self.mode!r}")
        if not 0 < self.quantile < 1:
            raise ValueError(f"threshold quantile must lie in (0, 1), got {self.quantile}")
        if self.warmup < 1 or self.window < self.warmup or self.max_streams < 1 or self.drift_depth < 1:
            raise ValueError(f"need warmup >= 1, window >= warmup, max_streams >= 1 and drift_depth >= 1, got warmup "
                             f"{self.warmup}, window {self.window}, max_streams {self.max_streams}, "
                             f"drift_depth {self.drift_depth}")
        if self.margin < 0 or not 0 < self.min_factor <= 1 <= self.max_factor:
            raise ValueError(f"need margin >= 0 and 0 < min_factor <= 1 <= max_factor, got margin {self.margin}, "
                             f"factors {self.min_factor}, {self.max_factor}")
        if self.max_state_bytes < self.values_per_stream * VALUE_DTYPE.itemsize + STREAM_OVERHEAD_BYTES:
            raise ValueError(f"max_state_bytes {self.max_state_bytes} does not hold one stream of {self.window} values")

    @property
    def values_per_stream(self) -> int:
        return self.window + (self.drift_depth if self.mode == "evt" else 0)


class _Stream:
    """A ring of the last `window` accepted values (scores, or residuals in evt mode), and
    in evt mode the last `drift_depth` accepted scores."""

    __slots__ = ("values", "count", "position", "recent", "threshold")

    def __init__(self, window: int, depth: int):
        self.values = np.zeros(window, VALUE_DTYPE)
        self.count = 0
        self.position = 0
        self.recent: deque[float] = deque(maxlen=depth)
        self.threshold: float | None = None

    def add(self, value: float) -> None:
        self.values[self.position] = min(max(value, -FLOAT16_MAX), FLOAT16_MAX)
        self.position = (self.position + 1) % len(self.values)
        self.count = min(self.count + 1, len(self.values))

    def fill(self, values: np.ndarray) -> None:
        """Start from these values (oldest first, at most `window`)."""
        self.values[:len(values)] = np.clip(values, -FLOAT16_MAX, FLOAT16_MAX)
        self.count = len(values)
        self.position = len(values) % len(self.values)

    def kept(self) -> np.ndarray:
        """The kept values, in no particular order, as float64."""
        return self.values[:self.count].astype(np.float64)


class StreamThresholds:
    """The threshold that applies to each window; thread-safe (scored on one thread, saved on another)."""

    def __init__(self, config: ThresholdConfig | None = None):
        self.config = config or ThresholdConfig()
        self.config.check()
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        self._bytes = 0
        self._model_version: str | None = None
        self._lock = threading.Lock()
        self._last_save = time.monotonic()
        self._writer: threading.Thread | None = None
        self._z = NormalDist().inv_cdf(self.config.quantile)
        self.save_failures = 0
        if self.config.mode != "global" and self.config.state_path and Path(self.config.state_path).is_file():
            self._load(Path(self.config.state_path))

    @property
    def state_bytes(self) -> int:
        """The state file's size as the byte bound counts it (its header's fixed part aside)."""
        return self._bytes

    def apply(self, stream: str | None, score: float, global_threshold: float, model_version) -> tuple[float, str]:
        """(threshold, mode that set it) for this window, then learn from its score."""
        if self.config.mode == "global":
            return global_threshold, "global"
        with self._lock:
            if str(model_version) != self._model_version:
                self._forget_all()  # another model's scores are on another scale
                self._model_version = str(model_version)
            key = "" if stream is None else str(stream)
            state = self._streams.pop(key, None) or self._new_stream(key)
            self._streams[key] = state  # most recently seen last
            self._evict()
            if state.threshold is None and state.count >= self.config.warmup:  # restored from the state file
                state.threshold = self._estimate(state, global_threshold)
            threshold, mode = ((global_threshold, "global") if state.threshold is None
                               else (state.threshold, self.config.mode))
            if score <= threshold * (1 + self.config.margin):
                self._accept(state, float(score))
                if state.count >= self.config.warmup:
                    state.threshold = self._estimate(state, global_threshold)
            return threshold, mode

    # ------------------------------------------------------------------ estimates
    def _accept(self, state: _Stream, score: float) -> None:
        if self.config.mode == "evt":
            state.add(score - (sum(state.recent) / len(state.recent) if state.recent else score))
            state.recent.append(score)
        else:
            state.add(score)

    def _estimate(self, state: _Stream, global_threshold: float) -> float:
        values = state.kept()
        if self.config.mode == "evt":
            residuals = np.sort(values)
            tail = 1 - self.config.quantile
            z = pot_threshold(residuals, tail)
            if z is None:
                z = float(np.quantile(residuals, self.config.quantile, method="higher"))
            value = sum(state.recent) / len(state.recent) + z
        else:
            logs = np.log(np.maximum(values, MIN_SCORE))
            median = float(np.median(logs))
            mad = float(np.median(np.abs(logs - median)))
            value = math.exp(median + self._z * MAD_TO_SIGMA * mad)
        return min(max(value, self.config.min_factor * global_threshold), self.config.max_factor * global_threshold)

    # ------------------------------------------------------------------ bounds
    def _stream_bytes(self, key: str) -> int:
        return self.config.values_per_stream * VALUE_DTYPE.itemsize + len(key.encode("utf-8", "replace")) \
            + STREAM_OVERHEAD_BYTES

    def _new_stream(self, key: str) -> _Stream:
        self._bytes += self._stream_bytes(key)
        return _Stream(self.config.window, self.config.drift_depth)

    def _evict(self) -> None:
        """Drop the least recently seen streams until both bounds hold (the newest always stays)."""
        while len(self._streams) > 1 and (len(self._streams) > self.config.max_streams
                                          or self._bytes > self.config.max_state_bytes):
            key, _ = self._streams.popitem(last=False)
            self._bytes -= self._stream_bytes(key)

    def _forget_all(self) -> None:
        self._streams.clear()
        self._bytes = 0

    # ------------------------------------------------------------------ persistence
    def save_if_due(self, force: bool = False, on_failure: Callable[[], None] | None = None) -> None:
        """Save when `save_every_s` has passed (on a background thread) or now when `force`d (on
        this thread, after any save in progress). A failed save is logged and counted, never raised."""
        path = self.config.state_path
        if self.config.mode == "global" or not path:
            return
        writing = self._writer is not None and self._writer.is_alive()
        if not force and (writing or time.monotonic() - self._last_save < self.config.save_every_s):
            return
        self._last_save = time.monotonic()
        blob = self._snapshot()
        if force:
            if writing:
                self._writer.join()
            self._write(path, blob, on_failure)
            return
        self._writer = threading.Thread(target=self._write, args=(path, blob, on_failure),
                                        name="threshold-state", daemon=True)
        self._writer.start()

    def _snapshot(self) -> bytes:
        with self._lock:
            entries, chunks = [], []
            for key, state in self._streams.items():
                entries.append([key, state.count, state.position, len(state.recent)])
                chunks.append(state.values[:state.count].tobytes())
                if state.recent:
                    chunks.append(np.asarray(state.recent, VALUE_DTYPE).tobytes())
            header = {"format": STATE_FORMAT, "model_version": self._model_version, "mode": self.config.mode,
                      "config": asdict(self.config), "streams": entries}
        encoded = json.dumps(header, allow_nan=False).encode()
        return b"".join([STATE_MAGIC, len(encoded).to_bytes(8, "little"), encoded, *chunks])

    def _write(self, path: str, blob: bytes, on_failure: Callable[[], None] | None) -> None:
        started = time.perf_counter()
        try:
            atomic_write_bytes(path, blob)
        except OSError as error:
            self.save_failures += 1
            log_event(log, "threshold_state_save_failed", logging.WARNING, path=path, error=error,
                      note="scoring goes on; the state is saved again at the next interval")
            if on_failure is not None:
                on_failure()
            return
        log_event(log, "threshold_state_saved", logging.DEBUG, path=path, bytes=len(blob),
                  streams=len(self._streams), seconds=time.perf_counter() - started)

    def _load(self, path: Path) -> None:
        try:
            header, values = read_state(path)
            if header.get("mode", "adaptive") != self.config.mode:
                raise ValueError(f"saved in mode {header.get('mode')!r}, not {self.config.mode!r}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log_event(log, "threshold_state_unreadable", logging.WARNING, path=path, error=error,
                      note="starting every stream with a warm-up")
            return
        self._model_version = header.get("model_version")
        for key, (kept, recent) in values.items():
            state = self._new_stream(key)
            state.fill(kept[-self.config.window:])
            state.recent.extend(recent.tolist())
            self._streams[key] = state
            self._evict()
        log_event(log, "threshold_state_loaded", path=path, streams=len(self._streams), model_version=self._model_version)


def read_state(path: str | Path) -> tuple[dict, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(header, {stream: (kept values oldest first, recent scores)}, as float16 or float64) of a state file; reads the
    JSON lists of format 1 too. Raises ValueError naming what is wrong with a bad file."""
    data = Path(path).read_bytes()
    if data.startswith(b"{"):
        header = json.loads(data)
        if header.get("format") != 1:
            raise ValueError(f"format {header.get('format')!r}, expected 1 or {STATE_FORMAT}")
        return header, {str(k): (_finite(np.asarray(v, np.float64)), np.empty(0)) for k, v in header["streams"].items()}
    if not data.startswith(STATE_MAGIC) or len(data) < len(STATE_MAGIC) + 8:
        raise ValueError("not a threshold state file")
    start = len(STATE_MAGIC) + 8
    length = int.from_bytes(data[len(STATE_MAGIC):start], "little")
    header = json.loads(data[start:start + length])
    if header.get("format") != STATE_FORMAT:
        raise ValueError(f"format {header.get('format')!r}, expected {STATE_FORMAT}")
    values = np.frombuffer(data, VALUE_DTYPE, offset=start + length)
    streams, offset = {}, 0
    for key, count, position, n_recent in header["streams"]:
        if min(count, position, n_recent) < 0 or offset + count + n_recent > len(values):
            raise ValueError(f"stream {str(key)[:40]!r} runs past the end of the file")
        ring = values[offset:offset + count]
        streams[str(key)] = (_finite(np.roll(ring, -position) if position else ring),  # oldest first
                             _finite(values[offset + count:offset + count + n_recent]))
        offset += count + n_recent
    return header, streams


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]
