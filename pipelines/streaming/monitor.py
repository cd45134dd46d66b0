"""`agad-stream monitor`: a running summary of the scores topic.

Windows scored, alarms, live AUROC against the `label` the replay attached, and
latency percentiles. Reads every partition without joining a consumer group, so it
never disturbs the scorers' offsets. At-least-once delivery can repeat a score: each id
counts once (its first score), and repeats are reported.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter, deque
from typing import Callable

import numpy as np
from kafka import KafkaConsumer, TopicPartition
from sklearn.metrics import roc_auc_score

from pipelines.kafka.kafka_io import make_consumer, quiet_kafka_logging

PARTITION_WAIT_S = 30.0
#: latency percentiles cover the most recent scores
LATENCY_WINDOW = 100_000


class LiveSummary:
    """Accumulates score messages; `snapshot()` gives the current figures."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.repeats = 0
        self.alarms = 0
        self.scores: list[float] = []
        self.labels: list[int] = []
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.versions: Counter = Counter()
        self.started = time.monotonic()

    def add(self, message: dict) -> None:
        if message["id"] in self.seen:
            self.repeats += 1
            return
        self.seen.add(message["id"])
        self.alarms += bool(message["is_anomaly"])
        self.latencies_ms.append(float(message["latency_ms"]))
        self.versions[str(message["model_version"])] += 1
        if message.get("label") is not None:
            self.scores.append(float(message["score"]))
            self.labels.append(int(message["label"]))

    def auroc(self) -> float | None:
        if len(set(self.labels)) < 2:
            return None
        return float(roc_auc_score(self.labels, self.scores))

    def snapshot(self) -> dict:
        latencies = np.asarray(self.latencies_ms)
        elapsed = time.monotonic() - self.started
        return {
            "scored": len(self.seen),
            "repeats": self.repeats,
            "alarms": self.alarms,
            "labelled": len(self.labels),
            "anomalous_labels": int(sum(self.labels)),
            "auroc": self.auroc(),
            "latency_p50_ms": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "latency_p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else None,
            "rate_per_s": len(self.seen) / elapsed if elapsed > 0 else 0.0,
            "model_versions": dict(self.versions),
        }


def format_snapshot(s: dict) -> str:
    auroc = "n/a" if s["auroc"] is None else f"{s['auroc']:.4f}"
    latency = "n/a" if s["latency_p50_ms"] is None else f"{s['latency_p50_ms']:.1f}/{s['latency_p99_ms']:.1f} ms"
    versions = ",".join(f"{v}:{n}" for v, n in s["model_versions"].items()) or "-"
    return (f"scored {s['scored']}  alarms {s['alarms']}  AUROC {auroc} "
            f"({s['labelled']} labelled, {s['anomalous_labels']} anomalous)  latency p50/p99 {latency}  "
            f"{s['rate_per_s']:.0f}/s  model {versions}" + (f"  repeats {s['repeats']}" if s["repeats"] else ""))


def open_scores(bootstrap_servers: str, topic: str, from_beginning: bool) -> KafkaConsumer:
    """A group-less consumer on every partition of `topic` (waits for the topic to exist)."""
    consumer = make_consumer(bootstrap_servers, group_id=None, enable_auto_commit=False, max_poll_records=2000)
    deadline = time.monotonic() + PARTITION_WAIT_S
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        if time.monotonic() > deadline:
            consumer.close()
            raise ValueError(f"topic {topic!r} does not exist on {bootstrap_servers}")
        time.sleep(0.5)
        partitions = consumer.partitions_for_topic(topic)
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    if from_beginning:
        consumer.seek_to_beginning(*assigned)
    else:
        consumer.seek_to_end(*assigned)
    return consumer


def follow(consumer: KafkaConsumer, summary: LiveSummary, expect: int = 0, idle_timeout_s: float = 0.0,
           interval_s: float = 2.0, report: Callable[[dict], None] | None = None,
           stop: threading.Event | None = None) -> dict:
    """Consume scores into `summary` until `expect` ids were seen, nothing came for
    `idle_timeout_s` (0 = wait forever) or `stop` is set; calls `report` every `interval_s`."""
    stop = stop or threading.Event()
    last_message = last_report = time.monotonic()
    while not stop.is_set() and not (expect and len(summary.seen) >= expect):
        for records in consumer.poll(timeout_ms=200).values():
            last_message = time.monotonic()
            for record in records:
                summary.add(json.loads(record.value))
        now = time.monotonic()
        if report and now - last_report >= interval_s:
            report(summary.snapshot())
            last_report = now
        if idle_timeout_s and now - last_message > idle_timeout_s:
            break
    return summary.snapshot()


def register(subparsers) -> None:
    p = subparsers.add_parser("monitor", help="running summary of a scores topic: alarms, live AUROC, latency",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topic", required=True, help="the scorer's --out-topic")
    p.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    p.add_argument("--from-beginning", action="store_true", help="read the topic from its start (default: new scores only)")
    p.add_argument("--expect", type=int, default=0, help="stop after this many distinct windows (0 = never)")
    p.add_argument("--idle-timeout", type=float, default=0.0, help="stop after this many seconds without scores (0 = never)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between summary lines")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_kafka_logging()
    consumer = open_scores(args.bootstrap_servers, args.topic, args.from_beginning)
    try:
        final = follow(consumer, LiveSummary(), args.expect, args.idle_timeout, args.interval,
                       report=lambda s: print(format_snapshot(s), flush=True))
    except KeyboardInterrupt:
        final = None
    finally:
        consumer.close()
    if final is not None:
        print(json.dumps(final, indent=2) if args.json else "final: " + format_snapshot(final))
    return 0
