"""The rebalance listener without a broker: collected records of revoked partitions are
dropped, and partitions that come back are rewound to them."""

from collections import namedtuple

from kafka import TopicPartition

from pipelines.kafka.metrics import ScorerMetrics
from pipelines.streaming.rebalance import PendingRecords, RedeliverOnRebalance

Record = namedtuple("Record", "topic partition offset")
P0, P1, P2 = (TopicPartition("in", p) for p in range(3))


class FakeConsumer:
    def __init__(self):
        self.seeks = []

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))


def collected(*spans) -> PendingRecords:
    pending = PendingRecords()
    for tp, first, last in spans:
        pending.add({tp: [Record(tp.topic, tp.partition, o) for o in range(first, last + 1)]})
    return pending


def test_revoked_records_are_dropped_and_returning_partitions_rewound():
    pending = collected((P0, 10, 14), (P1, 3, 5), (P2, 7, 7))
    consumer = FakeConsumer()
    listener = RedeliverOnRebalance(consumer, pending, ScorerMetrics())
    listener.on_partitions_revoked({P0, P1})
    assert [(r.partition, r.offset) for r in pending.take()] == [(2, 7)]
    listener.on_partitions_assigned({P1, P2})  # P0 went to another consumer: it restarts from the commit
    assert consumer.seeks == [(P1, 3)]


def test_rewind_goes_to_the_earliest_record_dropped_over_several_revocations():
    pending = collected((P0, 20, 25))
    consumer = FakeConsumer()
    listener = RedeliverOnRebalance(consumer, pending, ScorerMetrics())
    listener.on_partitions_revoked({P0})
    pending.add({P0: [Record("in", 0, 26)]})
    listener.on_partitions_revoked({P0})
    listener.on_partitions_assigned({P0})
    assert consumer.seeks == [(P0, 20)] and len(pending) == 0
    listener.on_partitions_assigned({P0})  # a later rebalance with nothing dropped does not seek again
    assert consumer.seeks == [(P0, 20)]
