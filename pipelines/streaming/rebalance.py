"""Rebalances without loss: records collected for a batch belong to partitions that a
rebalance may take away in the middle of `consumer.poll()`.

`RedeliverOnRebalance` drops the collected records of revoked partitions (their new owner
restarts from the committed offset) and rewinds the partitions that come straight back to
this consumer to the first dropped record (kafka-python keeps the position of a partition
that stays assigned, which would otherwise skip them).
"""

from __future__ import annotations

import logging
import threading

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from pipelines.kafka.metrics import ScorerMetrics, log_event

log = logging.getLogger("agad_stream.scorer")


class PendingRecords:
    """Records polled for the batch being collected (touched by poll's rebalance callbacks too)."""

    def __init__(self) -> None:
        self._records: list = []
        self._lock = threading.Lock()

    def add(self, polled: dict) -> None:
        with self._lock:
            for records in polled.values():
                self._records.extend(records)

    def __len__(self) -> int:
        return len(self._records)

    def take(self) -> list:
        with self._lock:
            records, self._records = self._records, []
        return records

    def drop(self, partitions) -> dict[TopicPartition, int]:
        """Forget the records of `partitions`; returns the first dropped offset per partition."""
        partitions = set(partitions)
        first: dict[TopicPartition, int] = {}
        with self._lock:
            kept = []
            for record in self._records:
                tp = TopicPartition(record.topic, record.partition)
                if tp in partitions:
                    first[tp] = min(first.get(tp, record.offset), record.offset)
                else:
                    kept.append(record)
            self._records = kept
        return first


class RedeliverOnRebalance(ConsumerRebalanceListener):
    """Nothing uncommitted survives a rebalance: dropped records are consumed again, by whoever owns them."""

    def __init__(self, consumer: KafkaConsumer, pending: PendingRecords, metrics: ScorerMetrics):
        self.consumer, self.pending, self.metrics = consumer, pending, metrics
        self._rewind: dict[TopicPartition, int] = {}

    def on_partitions_revoked(self, revoked) -> None:
        for tp, offset in self.pending.drop(revoked).items():
            self._rewind[tp] = min(self._rewind.get(tp, offset), offset)
        for tp in revoked:
            self.metrics.forget_partition(tp.partition)
        log_event(log, "partitions_revoked", partitions=_names(revoked), to_rewind=_names(self._rewind))

    def on_partitions_assigned(self, assigned) -> None:
        for tp in assigned:
            if tp in self._rewind:
                self.consumer.seek(tp, self._rewind[tp])
                log_event(log, "rewound", partition=f"{tp.topic}-{tp.partition}", offset=self._rewind[tp])
        self._rewind.clear()
        log_event(log, "partitions_assigned", partitions=_names(assigned))


def _names(partitions) -> str:
    return ",".join(f"{tp.topic}-{tp.partition}" for tp in sorted(partitions)) or "-"
