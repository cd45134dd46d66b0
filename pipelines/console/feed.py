"""The console's view of Kafka: one thread follows the score, review, labels and (optional) windows topics.

Everything kept is bounded: one row for each of the `max_streams` most recently seen stream
keys (a key over the scorer's own limit, `codec.MAX_ID_BYTES`, shortened), the last `recent`
scores per stream, the newest `max_alarms` flagged windows and the values of the newest
`max_windows` input windows (for marking a missed anomaly). Changes are appended to an event
list that the Server-Sent Events endpoint reads by sequence number.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np
from kafka import TopicPartition

from pipelines.learning.labels import encode_confirmation
from pipelines.kafka import codec
from pipelines.kafka.kafka_io import create_topics, make_consumer, make_producer
from pipelines.kafka.metrics import log_event

log = logging.getLogger("agad_stream.console")
NO_STREAM = "(no stream)"
EVENTS_KEPT = 2000
STREAMS_PAGE = 100
#: input windows of the same stream shown before and after the one under review
NEIGHBOURS = 3


@dataclass
class FeedConfig:
    bootstrap_servers: str
    scores_topic: str
    review_topic: str
    labels_topic: str
    windows_topic: str | None = None
    start: str = "earliest"
    max_alarms: int = 2000
    max_streams: int = 2000
    max_windows: int = 5000
    recent: int = 40
    #: confirmations are signed with it when set (see pipelines/learning/signing.py)
    signing_key: bytes | None = field(default=None, repr=False)


def _bounded_put(store: OrderedDict, key, value, limit: int) -> list:
    """Put `key` last (newest); drop the oldest entries beyond `limit` and return their keys."""
    store[key] = value
    store.move_to_end(key)
    dropped = []
    while len(store) > limit:
        dropped.append(store.popitem(last=False)[0])
    return dropped


def short_key(key: str, limit: int = codec.MAX_ID_BYTES) -> str:
    """`key` itself, or, over `limit` UTF-8 bytes, its start, '…' and 8 hex digits of its SHA-256 in at most
    `limit` bytes: bounded, and still one row per key. The scorer refuses longer keys, so a key it scored
    is never cut."""
    encoded = key.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return key
    tail = f"…{hashlib.sha256(encoded).hexdigest()[:8]}"
    return encoded[:max(limit - len(tail.encode()), 0)].decode("utf-8", "ignore") + tail


class Feed:
    """Follows the topics (start()/stop()) and publishes confirmations (label())."""

    def __init__(self, config: FeedConfig, raw_shape=None):
        self.config = config
        self.raw_shape = raw_shape  # callable returning the raw window shape, to decode the windows topic
        self.streams: OrderedDict[str, dict] = OrderedDict()  # least recently seen first
        self.recent: dict[str, deque] = {}
        self.alarms: OrderedDict[str, dict] = OrderedDict()
        self.values: OrderedDict[str, tuple[str, np.ndarray, object]] = OrderedDict()  # id -> (stream, raw, ts)
        self.labels: OrderedDict[str, dict] = OrderedDict()
        self.events: deque[tuple[int, str, dict]] = deque(maxlen=EVENTS_KEPT)
        self.seq = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-feed", daemon=True)
        self._producer = None
        self.ready = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def topics(self) -> list[str]:
        return [self.config.scores_topic, self.config.review_topic, self.config.labels_topic,
                *([self.config.windows_topic] if self.config.windows_topic else [])]

    def start(self) -> Feed:
        """Create missing topics (the labels topic often is, before the first confirmation), then follow them."""
        create_topics(self.config.bootstrap_servers, self.topics())
        self._producer = make_producer(self.config.bootstrap_servers, linger_ms=0)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._producer is not None:
            self._producer.close()

    def _run(self) -> None:
        topics = self.topics()
        consumer = make_consumer(self.config.bootstrap_servers, group_id=None,
                                 enable_auto_commit=False, max_partition_fetch_bytes=16 * 1024 * 1024)
        try:
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            consumer.assign(partitions)
            if self.config.start == "earliest":
                consumer.seek_to_beginning(*partitions)
            else:
                consumer.seek_to_end(*[tp for tp in partitions if tp.topic != self.config.labels_topic])
                consumer.seek_to_beginning(*[tp for tp in partitions if tp.topic == self.config.labels_topic])
            self.ready.set()
            while not self._stop.is_set():
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for record in records:
                        self._handle(tp.topic, record)
        except Exception as error:  # the page shows it through /api/health; the server keeps running
            log_event(log, "feed_failed", logging.ERROR, error=error)
            raise
        finally:
            consumer.close()

    def _handle(self, topic: str, record) -> None:
        try:
            if topic == self.config.windows_topic:
                window = codec.decode_window(record.value, record.key, record.headers, self.raw_shape())
                with self.lock:
                    _bounded_put(self.values, window.id, (self._stream_key(window.stream), window.raw, window.ts),
                                 self.config.max_windows)
                return
            message = codec.load_json_object(record.value or b"")
        except (codec.InvalidMessage, ValueError) as error:
            log_event(log, "feed_message_skipped", logging.WARNING, topic=topic, offset=record.offset, error=error)
            return
        if "id" not in message:
            log_event(log, "feed_message_skipped", logging.WARNING, topic=topic, offset=record.offset, error="no id")
            return
        message["id"] = str(message["id"])
        message["stream"] = self._stream_key(str(message.get("stream") or (record.key or b"").decode("utf-8", "replace")))
        with self.lock:
            if topic == self.config.scores_topic:
                self._on_score(message)
            elif topic == self.config.review_topic:
                self._on_review(message)
            else:
                self._on_label(message)

    def _stream_key(self, stream: str | None) -> str:
        return short_key(stream or NO_STREAM)

    # ------------------------------------------------------------------ state (called with the lock held)
    def _emit(self, kind: str, payload: dict) -> None:
        self.seq += 1
        self.events.append((self.seq, kind, payload))

    def _on_score(self, m: dict) -> None:
        row = self.streams.get(m["stream"]) or {"stream": m["stream"], "windows": 0, "alarms": 0}
        for dropped in _bounded_put(self.streams, m["stream"], row, self.config.max_streams):
            self.recent.pop(dropped, None)
        row["windows"] += 1
        row["alarms"] += bool(m.get("is_anomaly"))
        row.update(last_score=m.get("score"), threshold=m.get("threshold"), threshold_mode=m.get("threshold_mode"),
                   model_version=m.get("model_version"), last_at=m.get("scored_at"))
        recent = self.recent.setdefault(m["stream"], deque(maxlen=self.config.recent))
        recent.appendleft({k: m.get(k) for k in ("id", "stream", "ts", "score", "threshold", "is_anomaly", "scored_at",
                                                 "model_version")})
        self._emit("stream", dict(row))

    def _on_review(self, m: dict) -> None:
        label = self.labels.get(m["id"])
        alarm = {**m, "status": _status(label), "labelled_by": label and label["labelled_by"]}
        _bounded_put(self.alarms, m["id"], alarm, self.config.max_alarms)
        self._emit("alarm", summary(alarm))

    def _on_label(self, m: dict) -> None:
        label = {"id": m["id"], "label": m.get("label"), "labelled_by": str(m.get("labelled_by")), "at": m.get("at")}
        _bounded_put(self.labels, m["id"], label, self.config.max_alarms)
        if m["id"] in self.alarms:
            self.alarms[m["id"]].update(status=_status(label), labelled_by=label["labelled_by"])
        self._emit("label", label)

    # ------------------------------------------------------------------ reads
    def events_after(self, seq: int) -> list[tuple[int, str, dict]]:
        with self.lock:
            return [event for event in self.events if event[0] > seq]

    def snapshot(self) -> dict:
        """The first page of streams and the alarms (newest first), with the event sequence number they are
        current at."""
        with self.lock:
            return {"seq": self.seq, **self._streams_page(0, STREAMS_PAGE),
                    "alarms": [summary(a) for a in reversed(self.alarms.values())]}

    def alarm_summaries(self) -> list[dict]:
        """Every alarm kept, oldest first (the review queue orders them)."""
        with self.lock:
            return [summary(a) for a in self.alarms.values()]

    def review_values(self, ids: list[str]) -> tuple[list, list]:
        """(raw values of each alarm in `ids`, None when no longer kept; raw values of every labelled window
        still kept, alarm or input window): what the "diverse" queue order embeds."""
        with self.lock:
            alarms = [self.alarms[i].get("values") if i in self.alarms else None for i in ids]
            labelled = [self.alarms[i].get("values") if i in self.alarms else self.values[i][1]
                        for i, label in self.labels.items() if label["label"] in (0, 1)
                        and (i in self.alarms or i in self.values)]
        return alarms, [v for v in labelled if v is not None]

    def streams_page(self, offset: int, limit: int = STREAMS_PAGE) -> dict:
        with self.lock:
            return self._streams_page(offset, limit)

    def _streams_page(self, offset: int, limit: int) -> dict:
        """Rows `offset` to `offset + limit` of the streams kept, by name (pages stay put as scores arrive)."""
        names = sorted(self.streams)[offset:offset + limit]
        return {"streams": [dict(self.streams[name]) for name in names], "streams_offset": offset,
                "streams_total": len(self.streams), "streams_kept_max": self.config.max_streams}

    def recent_windows(self, stream: str) -> list[dict]:
        with self.lock:
            rows = [dict(r) for r in self.recent.get(stream, ())]
            for row in rows:
                row["has_values"] = row["id"] in self.values or row["id"] in self.alarms
                row["label"] = self.labels.get(row["id"], {}).get("label")
        return rows

    def window(self, window_id: str) -> dict | None:
        """A flagged window (review message) or an input window's values, with its context; None if
        neither is kept."""
        with self.lock:
            if window_id in self.alarms:
                found = dict(self.alarms[window_id])
            elif window_id in self.values:
                stream, raw, _ = self.values[window_id]
                scored = next((r for r in self.recent.get(stream, ()) if r["id"] == window_id), {})
                label = self.labels.get(window_id)
                found = {**scored, "id": window_id, "stream": stream, "values": raw, "top_segments": [],
                         "status": _status(label), "labelled_by": label and label["labelled_by"]}
            else:
                return None
            found["neighbours"] = self._neighbours(found)
            found["score_context"] = self._score_context(found)
        return found

    def _neighbours(self, window: dict) -> list[dict]:
        """The input windows of the same stream kept around `window` (NEIGHBOURS before and after, in
        arrival order, the window itself included), as recorded: [] without --windows-topic."""
        ids = [i for i, (stream, _, _) in self.values.items() if stream == window["stream"]]
        if window["id"] not in ids:
            return []
        at = ids.index(window["id"])
        scores = {r["id"]: r for r in self.recent.get(window["stream"], ())}
        return [{"id": i, "ts": self.values[i][2], "values": np.asarray(self.values[i][1]).tolist(),
                 "score": scores.get(i, {}).get("score"), "is_anomaly": scores.get(i, {}).get("is_anomaly"),
                 "offset": n - at}
                for n, i in enumerate(ids[max(at - NEIGHBOURS, 0):at + NEIGHBOURS + 1], start=max(at - NEIGHBOURS, 0))]

    def _score_context(self, window: dict) -> dict:
        """The score as a multiple of its threshold, and its percentile among the stream's recent scores."""
        score, threshold = window.get("score"), window.get("threshold")
        if not isinstance(score, (int, float)):
            return {}
        recent = [r["score"] for r in self.recent.get(window["stream"], ()) if isinstance(r.get("score"), (int, float))]
        return {"ratio": score / threshold if isinstance(threshold, (int, float)) and threshold > 0 else None,
                "percentile": 100.0 * sum(s <= score for s in recent) / len(recent) if recent else None,
                "of": len(recent)}

    # ------------------------------------------------------------------ writes
    def label(self, window: dict, label: int, user: str, anomaly_type: str | None = None, note: str | None = None,
              timeout_s: float = 10.0) -> None:
        """Publish one confirmation and wait for the broker's acknowledgement."""
        value = encode_confirmation(window["id"], label, np.asarray(window["values"], dtype=np.float64), user,
                                    stream=window["stream"], model_version=window.get("model_version"),
                                    signing_key=self.config.signing_key, anomaly_type=anomaly_type, note=note)
        self._producer.send(self.config.labels_topic, key=window["stream"].encode(), value=value).get(timeout_s)

    def mark_unlabelled(self, window_id: str, status: str) -> None:
        """Skipped or "not sure": nothing is published; a pending alarm shows it until a label comes."""
        with self.lock:
            if window_id in self.alarms and self.alarms[window_id]["status"] == "pending":
                self.alarms[window_id]["status"] = status


def _status(label: dict | None) -> str:
    if label is None:
        return "pending"
    return "confirmed" if label["label"] == 1 else "false_alarm"


def summary(alarm: dict) -> dict:
    """An alarm without its values (the list and the event stream stay small)."""
    return {k: alarm.get(k) for k in ("id", "stream", "ts", "score", "threshold", "model_version", "scored_at",
                                      "status", "labelled_by", "reason")}
