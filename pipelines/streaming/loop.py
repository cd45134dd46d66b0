"""The scoring loop: poll -> decode -> batch -> score -> produce -> commit.

At-least-once without loss: a batch's offsets are committed only after every score and
dead letter it produced has been acknowledged by the broker (producer acks="all"), and
only for partitions this scorer still owns. A crash anywhere before the commit means the
batch is consumed again, never skipped. Batches are finished in order, and once one
fails to be delivered no later batch is committed (commits are cumulative).

Two batches are in flight: while batch N is decoded and scored on a worker thread (the
model releases the GIL), the main thread delivers and commits batch N-1 and polls for
batch N+1, so the model and the Kafka client work at the same time.

Rebalances happen only inside `consumer.poll()`, i.e. while a batch is being collected.
`RedeliverOnRebalance` then drops the collected records of revoked partitions (their new
owner restarts from the committed offset) and rewinds partitions that come straight back
to this scorer, so no record is skipped. The batch being scored meanwhile is still
delivered, but its offsets are committed only for partitions this scorer still owns.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (CommitFailedError, FencedInstanceIdError, KafkaError, MessageSizeTooLargeError,
                          RetriableError)
from kafka.record import util as kafka_record_util
from kafka.structs import OffsetAndMetadata

from pipelines.kafka import codec
from pipelines.kafka.kafka_io import make_consumer, make_producer, topic_max_message_bytes
from pipelines.kafka.metrics import ScorerMetrics, log_event
from pipelines.streaming.rebalance import PendingRecords, RedeliverOnRebalance
from pipelines.streaming.serving import ModelSource, ServedModel
from pipelines.streaming.thresholds import StreamThresholds

log = logging.getLogger("agad_stream.scorer")

IDLE_POLL_MS = 500
#: poll slice while a batch is being scored, to deliver it soon after it is ready
IN_FLIGHT_POLL_MS = 5
BROKER_CHECK_EVERY_S = 2.0
#: longer than the producer's delivery timeout, so every future is settled when flush returns
FLUSH_TIMEOUT_S = 45.0
COMMIT_ATTEMPTS = 3
COMMIT_TIMEOUT_MS = 10_000
#: kafka-python's default (30 s) can leave a scorer idle long after the broker is back
RECONNECT_BACKOFF_MAX_MS = 5_000


def default_client_id() -> str:
    return f"agad-scorer-{socket.gethostname()}-{os.getpid()}"


@dataclass
class ScorerConfig:
    bootstrap_servers: str
    in_topic: str
    out_topic: str
    dlq_topic: str
    group: str
    max_batch: int = 256
    max_wait_ms: int = 50
    max_message_bytes: int = codec.DEFAULT_MAX_MESSAGE_BYTES
    offset_reset: str = "earliest"
    metrics_port: int = 0
    client_id: str = field(default_factory=default_client_id)
    top_k: int = 3
    n_segments: int = 8
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    bootstrap_timeout_ms: int = 10_000
    #: how long the group waits for a silent (crashed) member before reassigning its partitions
    session_timeout_ms: int = 10_000
    progress_every_s: float = 10.0
    #: every flagged window, with its values, for reviewers (None: off)
    review_topic: str | None = None
    #: longest the broker holds a fetch while it has no new record (kafka-python's default is 500)
    fetch_max_wait_ms: int = 100
    #: how long the producer waits for more records before sending a request
    linger_ms: int = 5
    #: static group membership (pipelines.streaming.membership); None: a dynamic member
    group_instance_id: str | None = None


@dataclass
class Outgoing:
    """A message the batch must get acknowledged before its offsets are committed."""

    topic: str
    key: bytes | None
    value: bytes
    headers: codec.Headers
    is_anomaly: bool = False
    #: dead-letter reason; None for a score
    reason: str | None = None
    #: a flagged window sent to the review topic (not counted as a score)
    review: bool = False
    #: sent in a request of its own, after the broker refused it for good in a shared one
    alone: bool = False
    #: the consumed record it answers: its dead letter, should the broker refuse this for good
    source: object = None

    @property
    def dead_letter(self) -> bool:
        return self.reason is not None


class Backoff:
    """Exponential backoff between the retries of one broker operation."""

    def __init__(self, initial_s: float, max_s: float):
        self.initial_s, self.max_s = initial_s, max_s
        self.delay_s = initial_s

    def next(self) -> float:
        delay, self.delay_s = self.delay_s, min(self.delay_s * 2, self.max_s)
        return delay


class Scorer:
    """Consumes raw windows, publishes scores and dead letters; `stop()` ends it after the current batch."""

    def __init__(self, config: ScorerConfig, models: ModelSource, metrics: ScorerMetrics | None = None,
                 thresholds: StreamThresholds | None = None):
        self.config = config
        self.thresholds = thresholds or StreamThresholds()
        self.models = models
        self.metrics = metrics or ScorerMetrics()
        self.pending = PendingRecords()
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self._stopping = threading.Event()
        self._delivered_upto: dict[TopicPartition, int] = {}
        self._last_progress = time.monotonic()
        self._last_broker_check = time.monotonic()
        self._broker_connected = True
        self._delivery_failed = False
        #: max.message.bytes of each topic the scorer writes to, read when connecting
        self._limits = {topic: codec.BROKER_DEFAULT_MAX_MESSAGE_BYTES for topic in self._out_topics}

    @property
    def _out_topics(self) -> list[str]:
        return [t for t in (self.config.out_topic, self.config.dlq_topic, self.config.review_topic) if t]

    @property
    def _dlq_limit(self) -> int:
        return self._limits[self.config.dlq_topic]

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        self.metrics.set_model_version(self.models.load().version)
        self.metrics.serve(self.config.metrics_port)
        if not self._connect():
            return
        previous = None  # (batch, its scoring) in flight
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring") as scoring:
                while not self.stopping:
                    batch = self._collect_batch(in_flight=previous[1] if previous else None)
                    if batch:  # the registry pointer is read right before scoring: a publish is served at once
                        self._refresh_model()
                    current = (batch, scoring.submit(self._score, batch)) if batch else None
                    if previous:
                        self._finish(*previous)
                    previous = current
                    if not batch:
                        self._watch_broker()
                    self._log_progress()
                if previous:
                    self._finish(*previous)
        finally:
            self._close()

    def _finish(self, batch: list, scoring: Future) -> None:
        """Deliver a scored batch, then commit its offsets. Delivery fails only when stopping
        with the broker away; from then on nothing is committed, later batches included."""
        if self._delivery_failed or not self._deliver(scoring.result()):
            self._delivery_failed = True
            return
        self._commit(batch)
        self.thresholds.save_if_due(on_failure=self.metrics.on_threshold_state_save_failed)

    # ------------------------------------------------------------------ collect
    def _collect_batch(self, in_flight: Future | None) -> list:
        """Poll until max_batch records, max_wait_ms after the first one, the batch in flight
        is scored (so it is delivered without waiting for this one to fill), or a stop request."""
        deadline = None
        with self.metrics.stage("poll"):
            while not self.stopping and len(self.pending) < self.config.max_batch:
                if in_flight is not None and in_flight.done():
                    break
                timeout_ms = IDLE_POLL_MS if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
                if in_flight is not None:
                    timeout_ms = min(timeout_ms, IN_FLIGHT_POLL_MS)
                self.pending.add(self._poll(timeout_ms, self.config.max_batch - len(self.pending)))
                if deadline is None and len(self.pending):
                    deadline = time.monotonic() + self.config.max_wait_ms / 1000
                if deadline is not None and time.monotonic() >= deadline:
                    break
        return self.pending.take()

    def _poll(self, timeout_ms: int, max_records: int) -> dict:
        try:
            return self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except FencedInstanceIdError:
            raise self._fenced() from None
        except KafkaError as error:
            self._broker_error("poll", error)
            self._stopping.wait(self.config.initial_backoff_s)
            return {}

    # ------------------------------------------------------------------ score
    def _score(self, batch: list) -> list[Outgoing]:
        """The batch's score messages and dead letters (runs on the scoring thread)."""
        served = self.models.current
        self.metrics.on_batch(len(batch), served.version)
        with self.metrics.stage("decode"):
            decoded, outgoing = [], []
            for record in batch:
                try:
                    window = codec.decode_window(
                        record.value, record.key, record.headers, served.raw_shape, self.config.max_message_bytes
                    )
                    decoded.append((record, window))
                except codec.InvalidMessage as error:
                    outgoing.append(self._dead_letter(record, error))
        results = self._run_model(served, decoded)
        with self.metrics.stage("encode"):
            now = time.time()
            for (record, window), result in zip(decoded, results):
                if isinstance(result, codec.InvalidMessage):
                    outgoing.append(self._dead_letter(record, result))
                else:
                    outgoing.extend(self._score_message(record, window, served, *result, now))
        return outgoing

    def _run_model(self, served: ServedModel, decoded: list) -> list:
        """(score, top segments) per window; a window the model rejects becomes an InvalidMessage."""
        if not decoded:
            return []
        windows = [window for _, window in decoded]
        try:
            return self._score_windows(served, windows)
        except Exception as error:  # any failure: score alone, so a bad window dead-letters alone
            log_event(log, "batch_scoring_failed", logging.WARNING, error=error, note="scoring window by window")
            return [self._score_alone(served, window) for window in windows]

    def _score_windows(self, served: ServedModel, windows: list[codec.Window]) -> list[tuple[float, list, str | None]]:
        """(score, top segments, failed signal-quality check or None) per window."""
        with self.metrics.stage("prepare"):
            raw = np.stack([window.raw for window in windows])
            inputs = served.modality.prepare(raw)
            quality = served.modality.quality_issues(raw)
        with self.metrics.stage("model"):
            scores, residuals = served.model.score_and_residuals(inputs)
        with self.metrics.stage("explain"):
            segments = codec.top_segments(residuals, self.config.top_k, self.config.n_segments)
        return list(zip(scores.tolist(), segments, quality))

    def _score_alone(self, served: ServedModel, window: codec.Window) -> tuple[float, list, str | None] | codec.InvalidMessage:
        try:
            return self._score_windows(served, [window])[0]
        except Exception as error:
            return codec.InvalidMessage(codec.SCORING_FAILED, str(error))

    def _score_message(self, record, window: codec.Window, served: ServedModel, score: float, segments: list,
                       quality: str | None, now: float) -> list[Outgoing]:
        latency_ms = now * 1000 - record.timestamp if (record.timestamp or 0) > 0 else 0.0
        self.metrics.latency.observe(max(latency_ms, 0.0) / 1000)
        if math.isfinite(score):
            threshold, mode = self.thresholds.apply(window.stream, score, served.threshold, served.version)
        else:  # flagged whatever the threshold, and kept out of the stream's adaptive state
            threshold, mode = served.threshold, "global"
        value = codec.encode_score(window, served.version, score, threshold, segments, now, latency_ms, quality,
                                   threshold_mode=mode)
        headers = [("scorer", self.config.client_id.encode())]
        if not self._fits(self.config.out_topic, record.key, value, headers):
            return [self._dead_letter(record, codec.InvalidMessage(
                codec.UNPUBLISHABLE, f"its score message ({len(value)} bytes) exceeds max.message.bytes "
                                     f"{self._limits[self.config.out_topic]} of {self.config.out_topic}"))]
        scored = Outgoing(self.config.out_topic, record.key, value, headers,
                          is_anomaly=quality is not None or not score <= threshold, source=record)
        return [scored, *self._review(record, window, scored)]

    def _review(self, record, window: codec.Window, scored: Outgoing) -> list[Outgoing]:
        """A flagged window for reviewers: its score message plus its values, so no lookup is needed
        (without the values, saying so, when they would not fit the review topic)."""
        if not (self.config.review_topic and scored.is_anomaly):
            return []
        score = json.loads(scored.value)
        value = codec.strict_json({**score, "values": window.raw.tolist()})
        if not self._fits(self.config.review_topic, record.key, value, scored.headers):
            value = codec.strict_json({**score, "values_omitted": f"{len(value)} bytes with its values exceeds "
                                                                  f"max.message.bytes of {self.config.review_topic}"})
        return [Outgoing(self.config.review_topic, record.key, value, scored.headers, review=True, source=record)]

    def _fits(self, topic: str, key: bytes | None, value: bytes, headers: codec.Headers) -> bool:
        return codec.record_size_bound(key, value, headers) <= self._limits[topic]

    def _dead_letter(self, record, error: codec.InvalidMessage) -> Outgoing:
        log_event(log, "dead_letter", logging.DEBUG, partition=record.partition, offset=record.offset, error=error)
        key, value, headers = codec.dead_letter(record.key, record.value, record.headers, error, record.topic,
                                                record.partition, record.offset, self._dlq_limit)
        if len(value) < len(record.value or b""):
            log_event(log, "dead_letter_referenced", logging.WARNING, partition=record.partition, offset=record.offset,
                      size=len(record.value), dlq_max_message_bytes=self._dlq_limit)
        return Outgoing(self.config.dlq_topic, key, value, headers, reason=error.reason)

    # ------------------------------------------------------------------ produce
    def _deliver(self, outgoing: list[Outgoing]) -> bool:
        """Send until the broker acknowledged every message; False if stopped before that."""
        backoff = Backoff(self.config.initial_backoff_s, self.config.max_backoff_s)
        remaining, delivered = outgoing, []
        while True:
            with self.metrics.stage("produce"):
                acknowledged, remaining = self._send_and_wait(remaining)
            delivered += acknowledged
            if not remaining:
                break
            self._discard_producer()
            if self.stopping:
                log_event(log, "batch_not_committed", logging.WARNING, unacknowledged=len(remaining),
                          note="the batch will be consumed again")
                return False
            self._stopping.wait(backoff.next())
        scores = [m for m in delivered if not m.dead_letter and not m.review]
        self.metrics.on_delivered(len(scores), sum(m.is_anomaly for m in scores),
                                  [m.reason for m in delivered if m.dead_letter])
        return True

    def _send_and_wait(self, messages: list[Outgoing]) -> tuple[list[Outgoing], list[Outgoing]]:
        """Send `messages` and wait for their acknowledgements: (acknowledged, to send again)."""
        sent, errors = [], []
        try:
            self.producer = self.producer or self._make_producer()
            sent, errors = self._send_all(messages)
            self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaError as error:  # no broker: no producer, or flush timed out (or gave up on a split batch)
            errors.append(error)
        acknowledged, failed = [], messages[len(sent):]
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        for message, outcome in zip(messages, sent):
            try:
                if isinstance(outcome, Exception):  # refused by the producer itself
                    raise outcome
                outcome.get(timeout=max(0.0, deadline - time.monotonic()))  # get(), not flush(), follows a split batch
                acknowledged.append(message)
            except KafkaError as error:
                errors.append(error)
                failed.append(self._to_resend(message, error))
        if failed:
            self.metrics.broker_errors.labels("produce").inc()
            log_event(log, "produce_failed", logging.WARNING, failed=len(failed), sent=len(messages), error=repr(errors[0]))
        return acknowledged, failed

    def _send_all(self, messages: list[Outgoing]) -> tuple[list, list[Exception]]:
        """A future per message handed to the producer (or the error the producer refused it with
        at once), stopping at the first passing error."""
        sent = []
        for message in messages:
            try:
                sent.append(self.producer.send(message.topic, key=message.key, value=message.value,
                                               headers=message.headers))
                if message.alone:  # in a request of its own: whatever the broker says concerns it only
                    self.producer.flush(timeout=FLUSH_TIMEOUT_S)
            except MessageSizeTooLargeError as error:  # over the producer's own limit: it concerns this one
                sent.append(error)
            except KafkaError as error:  # e.g. no metadata within max_block_ms: the broker is away
                return sent, [error]
        return sent, []

    def _to_resend(self, message: Outgoing, error: BaseException | None) -> Outgoing:
        """How a message the broker did not acknowledge is sent again.

        A passing error (broker away, timeout): as it was. A refusal for good (too large, invalid)
        may be caused by the producer batch the message travelled in, so it is not held against
        the message: it is resent alone. Refused alone, a dead letter is resent as a reference to
        its source record, and a score or review message becomes the dead letter of its source
        record (`unpublishable`): nothing is retried for ever, and nothing is dropped.
        """
        if isinstance(error, RetriableError):
            return message
        if not message.alone:
            return replace(message, alone=True)
        if message.dead_letter:
            if not message.value:  # a reference refused too: nothing smaller can be sent
                log_event(log, "dead_letter_refused", logging.ERROR, error=repr(error), note="retried as it is")
                return message
            key, value, headers = codec.dead_letter_reference(message.key, message.value, message.headers,
                                                              f"the broker refused it: {error!r}")
            return replace(message, key=key, value=value, headers=headers)
        record = message.source
        log_event(log, "unpublishable", logging.WARNING, topic=message.topic, partition=record.partition,
                  offset=record.offset, error=repr(error), note="its record goes to the dead-letter topic")
        return replace(self._dead_letter(record, codec.InvalidMessage(
            codec.UNPUBLISHABLE, f"the broker refused its {'review' if message.review else 'score'} message "
                                 f"for good: {error!r}")), alone=True)

    # ------------------------------------------------------------------ commit
    def _commit(self, batch: list) -> None:
        """Commit the batch's offsets for partitions this scorer still owns."""
        owned = self.consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            if tp in owned:
                offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        if not offsets:
            return
        with self.metrics.stage("commit"):
            committed = self._commit_offsets(offsets)
        if committed:
            self._delivered_upto.update(offsets)
            self._update_lag(owned)

    def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> bool:
        backoff = Backoff(self.config.initial_backoff_s, self.config.max_backoff_s)
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()},
                                     timeout_ms=COMMIT_TIMEOUT_MS)
                return True
            except FencedInstanceIdError:
                raise self._fenced() from None
            except CommitFailedError as error:
                log_event(log, "commit_rejected", logging.WARNING, error=error,
                          note="partitions were reassigned; the batch may be scored twice")
                return False
            except KafkaError as error:
                self._broker_error("commit", error)
                if not isinstance(error, RetriableError) or attempt == COMMIT_ATTEMPTS - 1:
                    return False
                time.sleep(backoff.next())
        return False

    def _update_lag(self, owned) -> None:
        for tp in owned:
            end = self.consumer.highwater(tp)
            if end is not None and tp in self._delivered_upto:
                self.metrics.consumer_lag.labels(str(tp.partition)).set(max(0, end - self._delivered_upto[tp]))

    # ------------------------------------------------------------------ lifecycle
    def _connect(self) -> bool:
        """Create producer and consumer, retrying with backoff while the broker is unreachable."""
        backoff = Backoff(self.config.initial_backoff_s, self.config.max_backoff_s)
        while not self.stopping:
            try:
                self._read_topic_limits()
                self.producer = self.producer or self._make_producer()
                self.consumer = self._make_consumer()
                log_event(log, "connected", bootstrap=self.config.bootstrap_servers, group=self.config.group,
                          topic=self.config.in_topic, client_id=self.config.client_id,
                          group_instance_id=self.config.group_instance_id or "none")
                warn_if_slow_checksums()
                return True
            except KafkaError as error:
                delay = backoff.next()
                self.metrics.broker_errors.labels("connect").inc()
                log_event(log, "broker_unavailable", logging.WARNING, bootstrap=self.config.bootstrap_servers,
                          error=error, retry_in_s=delay)
                self._stopping.wait(delay)
        return False

    def _read_topic_limits(self) -> None:
        """Size every message against its topic's own limit (the broker default while the topic
        does not exist: it is then created with that default)."""
        for topic in self._out_topics:
            limit = topic_max_message_bytes(self.config.bootstrap_servers, topic,
                                            timeout_ms=self.config.bootstrap_timeout_ms)
            self._limits[topic] = limit or codec.BROKER_DEFAULT_MAX_MESSAGE_BYTES
            log_event(log, "topic_limit", topic=topic, max_message_bytes=self._limits[topic],
                      source="topic" if limit else "broker default")

    def _discard_producer(self) -> None:
        """Drop the producer after a failed delivery; the retry gets a fresh one, so no state
        left over from a broker outage (expired batches, stale idempotence epochs) can block it."""
        try:
            self.producer.close(timeout=0)
        except KafkaError as error:
            log_event(log, "close_failed", logging.WARNING, client="producer", error=error)
        self.producer = None

    def _make_producer(self) -> KafkaProducer:
        return make_producer(
            self.config.bootstrap_servers,
            client_id=self.config.client_id,
            acks="all",
            linger_ms=self.config.linger_ms,
            batch_size=min(256 * 1024, *self._limits.values()),  # a batch never outgrows its topic
            max_request_size=16 * 1024 * 1024,
            request_timeout_ms=10_000,
            delivery_timeout_ms=30_000,
            max_block_ms=10_000,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            bootstrap_timeout_ms=self.config.bootstrap_timeout_ms,
        )

    def _make_consumer(self) -> KafkaConsumer:
        static = {"group_instance_id": self.config.group_instance_id} if self.config.group_instance_id else {}
        consumer = make_consumer(
            self.config.bootstrap_servers,
            client_id=self.config.client_id,
            group_id=self.config.group,
            enable_auto_commit=False,
            auto_offset_reset=self.config.offset_reset,
            max_poll_records=self.config.max_batch,
            fetch_max_wait_ms=self.config.fetch_max_wait_ms,
            session_timeout_ms=self.config.session_timeout_ms,
            heartbeat_interval_ms=max(500, self.config.session_timeout_ms // 4),
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            bootstrap_timeout_ms=self.config.bootstrap_timeout_ms,
            **static,
        )
        consumer.subscribe([self.config.in_topic], listener=RedeliverOnRebalance(consumer, self.pending, self.metrics))
        return consumer

    def _refresh_model(self) -> None:
        if self.models.refresh():
            self.metrics.model_reloads.inc()
            self.metrics.set_model_version(self.models.current.version)

    def _fenced(self) -> ValueError:
        """A newer member joined with this scorer's group instance id: this one must stop, or both
        would score the same partitions (its uncommitted batch is consumed again by the other)."""
        return ValueError(f"another scorer joined group {self.config.group!r} with this scorer's group instance id "
                          f"{self.config.group_instance_id!r}, which fenced this one; give each scorer its own "
                          "--group-instance-id (or leave the default)")

    def _broker_error(self, operation: str, error: Exception) -> None:
        self.metrics.broker_errors.labels(operation).inc()
        log_event(log, "broker_error", logging.WARNING, operation=operation, error=repr(error))

    def _watch_broker(self) -> None:
        """Say so when the consumer loses (or regains) every broker connection; kafka-python
        reconnects by itself, and polling resumes where it stopped."""
        now = time.monotonic()
        if now - self._last_broker_check < BROKER_CHECK_EVERY_S:
            return
        self._last_broker_check = now
        connections = self.consumer.metrics().get("consumer-metrics", {}).get("connection-count", 1.0)
        connected = connections > 0
        if connected != self._broker_connected:
            self._broker_connected = connected
            self.metrics.broker_connected.set(int(connected))
            if connected:
                log_event(log, "broker_reachable", bootstrap=self.config.bootstrap_servers)
            else:
                log_event(log, "broker_unavailable", logging.WARNING, bootstrap=self.config.bootstrap_servers,
                          note="reconnecting with backoff; nothing is committed meanwhile")

    def _log_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < self.config.progress_every_s:
            return
        self._last_progress = now
        log_event(log, "progress", model_version=self.models.current.version, **self.metrics.progress_fields())

    def _close(self) -> None:
        self.thresholds.save_if_due(force=True, on_failure=self.metrics.on_threshold_state_save_failed)
        if self.consumer is not None:
            try:
                self.consumer.close(autocommit=False)
            except KafkaError as error:
                log_event(log, "close_failed", logging.WARNING, client="consumer", error=error)
        if self.producer is not None:
            try:
                self.producer.close(timeout=10)
            except KafkaError as error:
                log_event(log, "close_failed", logging.WARNING, client="producer", error=error)
        log_event(log, "stopped", **self.metrics.totals,
                  **{f"{stage}_s": round(t, 3) for stage, t in self.metrics.stage_totals.items()})


def warn_if_slow_checksums() -> None:
    """kafka-python checksums every record batch in pure Python unless the crc32c package is installed."""
    if getattr(kafka_record_util, "crc32c_c", True) is None:
        log_event(log, "slow_checksums", logging.WARNING,
                  hint="install the crc32c package: kafka-python then checksums record batches in C, "
                       "several times less CPU per message")
