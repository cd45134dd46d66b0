"""Prometheus metrics and structured log lines of the scorer.

Each scorer owns its own CollectorRegistry, so several scorers can live in one process
(tests, benchmarks) without clashing metric names.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
#: where a batch's time goes, in loop order: poll = fetching and filling the batch,
#: prepare = the modality's preprocessing, model = AGAD (with device transfers),
#: explain = top segments, encode = output JSON, produce = until acknowledged
STAGES = ("poll", "decode", "prepare", "model", "explain", "encode", "produce", "commit")


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields) -> None:
    """One key=value line per event, easy to grep and to parse."""
    if logger.isEnabledFor(level):
        parts = [f"event={event}"] + [f"{k}={_logfmt(v)}" for k, v in fields.items()]
        logger.log(level, " ".join(parts))


def _logfmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return f'"{text}"' if (" " in text or "=" in text or not text) else text


class ScorerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_in = Counter("agad_scorer_messages_in", "Input messages consumed", registry=r)
        self.scored = Counter("agad_scorer_messages_scored", "Windows scored and published", registry=r)
        self.anomalies = Counter("agad_scorer_anomalies", "Windows flagged as anomalous", registry=r)
        self.dead_lettered = Counter(
            "agad_scorer_messages_dead_lettered", "Messages sent to the dead-letter topic", ["reason"], registry=r
        )
        self.batch_size = Histogram("agad_scorer_batch_size", "Messages per micro-batch", buckets=BATCH_BUCKETS, registry=r)
        self.latency = Histogram(
            "agad_scorer_end_to_end_latency_seconds",
            "Input record timestamp to score ready, per window",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_version = Gauge("agad_scorer_model_version", "Registry version being served (0 = fixed model)", registry=r)
        self.model_reloads = Counter("agad_scorer_model_reloads", "Hot reloads of the served model", registry=r)
        self.consumer_lag = Gauge("agad_scorer_consumer_lag", "Messages behind the partition end", ["partition"], registry=r)
        self.broker_connected = Gauge("agad_scorer_broker_connected", "1 while the consumer has a broker connection", registry=r)
        self.broker_connected.set(1)
        self.broker_errors = Counter("agad_scorer_broker_errors", "Broker calls that failed and were retried", ["operation"], registry=r)
        self.stage_seconds = Counter("agad_scorer_stage_seconds", "Time spent per loop stage", ["stage"], registry=r)
        self.threshold_state_save_failures = Counter(
            "agad_scorer_threshold_state_save_failures", "Saves of the threshold state that failed (e.g. a full disk)",
            registry=r)
        self.stage_totals = dict.fromkeys(STAGES, 0.0)
        #: plain running totals for logs, tests and benchmarks (Prometheus counters are write-only)
        self.totals: Tally[str] = Tally()
        #: windows consumed while each model version was served, so a hot reload does not relabel the past
        self.consumed_by_version: Tally[int | str] = Tally()

    def serve(self, port: int) -> None:
        """Expose /metrics on `port` (0 = do not serve)."""
        if port:
            start_http_server(port, registry=self.registry)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.stage_totals[name] += elapsed
            self.stage_seconds.labels(name).inc(elapsed)

    def on_batch(self, size: int, version: int | str) -> None:
        """Count a batch consumed, against the model version that scores it."""
        self.messages_in.inc(size)
        self.batch_size.observe(size)
        self.totals["consumed"] += size
        self.consumed_by_version[version] += size

    def progress_fields(self) -> dict:
        """The running totals, with the windows consumed per served version ("1:300,2:120")."""
        by_version = ",".join(f"{version}:{n}" for version, n in self.consumed_by_version.items())
        return {**self.totals, "consumed_by_version": by_version or "-"}

    def on_delivered(self, scored: int, anomalies: int, dead_letter_reasons: list[str]) -> None:
        """Count a batch's output once the broker acknowledged it."""
        self.scored.inc(scored)
        self.anomalies.inc(anomalies)
        for reason in dead_letter_reasons:
            self.dead_lettered.labels(reason).inc()
        self.totals.update(scored=scored, anomalies=anomalies, dead_lettered=len(dead_letter_reasons))

    def on_threshold_state_save_failed(self) -> None:
        self.threshold_state_save_failures.inc()
        self.totals["threshold_state_save_failures"] += 1

    def set_model_version(self, version: int | str) -> None:
        self.model_version.set(version if isinstance(version, int) else 0)

    def forget_partition(self, partition: int) -> None:
        try:
            self.consumer_lag.remove(str(partition))
        except KeyError:
            pass
