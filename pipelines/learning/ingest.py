"""Labels topic -> label store, at least once and never twice.

Each poll's confirmations are written to the store in one transaction; bad ones go to the
dead-letter topic (acknowledged by the broker); only then are the offsets committed. A
crash before the commit means the batch is read again, and the store skips what it
already holds (it is keyed by topic/partition/offset). The job owns all partitions of the
labels topic (manual assignment): run one retrain job per registry.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from pipelines.learning.labels import SignaturePolicy, decode_confirmation
from pipelines.learning.store import LabelStore
from pipelines.kafka import codec
from pipelines.kafka.kafka_io import make_consumer, make_producer, topic_max_message_bytes
from pipelines.kafka.metrics import log_event

log = logging.getLogger("agad_stream.retrain")

POLL_MS = 200
DLQ_TIMEOUT_S = 30.0


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    dead_lettered: int = 0


class LabelIngest:
    def __init__(self, bootstrap_servers: str, topic: str, dlq_topic: str, group: str, store: LabelStore,
                 raw_shape: tuple[int, ...], signatures: SignaturePolicy | None = None):
        self.topic, self.dlq_topic, self.store, self.raw_shape = topic, dlq_topic, store, raw_shape
        self.signatures = signatures or SignaturePolicy()
        self.consumer = make_consumer(bootstrap_servers, group_id=group, enable_auto_commit=False,
                                      auto_offset_reset="earliest", max_poll_records=500)
        partitions = self.consumer.partitions_for_topic(topic)
        if not partitions:
            self.consumer.close()
            raise ValueError(f"labels topic {topic!r} does not exist on {bootstrap_servers}")
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.partitions)
        self.dlq_limit = topic_max_message_bytes(bootstrap_servers, dlq_topic) or codec.BROKER_DEFAULT_MAX_MESSAGE_BYTES
        self.producer = make_producer(bootstrap_servers, batch_size=min(256 * 1024, self.dlq_limit))

    def drain(self, timeout_s: float = 60.0) -> IngestStats:
        """Store everything up to the topic's current end (or until `timeout_s`)."""
        ends = self.consumer.end_offsets(self.partitions)
        stats = IngestStats()
        deadline = time.monotonic() + timeout_s
        while any(self.consumer.position(tp) < end for tp, end in ends.items()) and time.monotonic() < deadline:
            records = [r for batch in self.consumer.poll(timeout_ms=POLL_MS).values() for r in batch]
            if records:
                self._ingest(records, stats)
        return stats

    def _ingest(self, records: list, stats: IngestStats) -> None:
        good, dead = [], []
        for record in records:
            try:
                confirmation = decode_confirmation(record.value, record.key, self.raw_shape,
                                                   signatures=self.signatures)
                good.append((confirmation, f"{record.topic}/{record.partition}/{record.offset}"))
            except codec.InvalidMessage as error:
                log_event(log, "dead_letter", logging.WARNING, partition=record.partition, offset=record.offset,
                          error=error)
                key, value, headers = codec.dead_letter(record.key, record.value, record.headers, error, record.topic,
                                                        record.partition, record.offset, self.dlq_limit)
                dead.append(self.producer.send(self.dlq_topic, key=key, value=value, headers=headers))
        stats.stored += self.store.add(good)
        self.producer.flush(timeout=DLQ_TIMEOUT_S)
        for future in dead:
            future.get(timeout=0)  # raises if the broker did not take it: nothing is committed then
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
        self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        stats.received += len(records)
        stats.dead_lettered += len(dead)

    def close(self) -> None:
        self.consumer.close(autocommit=False)
        self.producer.close(timeout=10)
