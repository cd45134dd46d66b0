"""Small broker helpers shared by replay, monitor, demo, tests and the benchmark.

Every Kafka client of the pipeline is built here (`make_producer`, `make_consumer`,
`make_admin`), so each one gets the security settings of `pipelines.kafka.security`."""

from __future__ import annotations

import logging
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import (CoordinatorLoadInProgressError, CoordinatorNotAvailableError, KafkaError,
                          NotCoordinatorError, TopicAlreadyExistsError)

from pipelines.kafka import security


def broker_answers(bootstrap_servers: str, timeout_ms: int = 3000) -> bool:
    """True when a broker at `bootstrap_servers` answers a metadata request (a quiet probe:
    kafka-python's connection errors are expected here and not logged)."""
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        admin = make_admin(bootstrap_servers, bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
        try:
            return bool(admin.describe_cluster().get("brokers"))
        finally:
            admin.close()
    except KafkaError:
        return False
    finally:
        kafka_log.setLevel(level)


def create_topics(bootstrap_servers: str, names: list[str], partitions: int = 1,
                  configs: dict[str, str] | None = None) -> None:
    """Create topics (replication factor 1, the local broker; topic `configs` such as
    max.message.bytes) and wait until they have leaders; existing topics are left as they are."""
    admin = make_admin(bootstrap_servers)
    try:
        for name in names:
            try:
                admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1,
                                            "configs": configs or {}}}, wait_for_metadata=True)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def topic_max_message_bytes(bootstrap_servers: str, topic: str, timeout_ms: int = 10_000) -> int | None:
    """The topic's max.message.bytes (the largest record batch the broker accepts for it), or
    None when the topic does not exist yet; broker errors propagate."""
    admin = make_admin(bootstrap_servers, bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": None})
        entry = admin.describe_configs([resource], config_filter="all").get("topic", {}).get(topic, {})
    finally:
        admin.close()
    return int(entry["max.message.bytes"]["value"]) if "max.message.bytes" in entry else None


def make_producer(bootstrap_servers: str, **overrides) -> KafkaProducer:
    """A producer tuned for many small messages: batches up to 256 KiB, acks from all replicas."""
    settings = dict(acks="all", linger_ms=5, batch_size=256 * 1024, max_request_size=16 * 1024 * 1024,
                    reconnect_backoff_max_ms=5000)
    settings.update(overrides)
    return KafkaProducer(bootstrap_servers=bootstrap_servers, **security.client_kwargs(), **settings)


def make_consumer(bootstrap_servers: str, *topics: str, **settings) -> KafkaConsumer:
    return KafkaConsumer(*topics, bootstrap_servers=bootstrap_servers, **security.client_kwargs(), **settings)


def make_admin(bootstrap_servers: str, **settings) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap_servers, **security.client_kwargs(), **settings)


class ExpectedStatesAtInfo(logging.Filter):
    """kafka-python logs states that a normal start or stop passes through as ERROR or WARNING:
    a topic not yet created (the broker creates it on first use), a group coordinator that moved
    or is still loading (a fresh broker creates __consumer_offsets at the first group), a read
    on a socket the client has just closed itself. An operator reads those as broken, so they
    are logged at INFO: the first two for GRACE_S after a topic or group is first named in one
    (one still missing after that keeps kafka-python's level)."""

    GRACE_S = 60.0
    #: (logger, start of the message template, index of the topic or group in its arguments)
    MESSAGES = (
        ("kafka.cluster", "Topic %s not found in cluster metadata", 0),
        ("kafka.cluster", "Topic %s is not available during auto-create", 0),
        ("kafka.coordinator.assignors.range", "No partition metadata for topic", 0),
        ("kafka.coordinator.assignors.roundrobin", "No partition metadata for topic", 0),
        ("kafka.coordinator", "Marking the coordinator dead", 1),
    )
    CLOSED_SOCKET = ("kafka.net.transport", "%s: Error receiving network data")
    #: coordinator errors that only mean "ask again" (others, e.g. a lost connection, keep their level)
    COORDINATOR_MOVING = (NotCoordinatorError, CoordinatorNotAvailableError, CoordinatorLoadInProgressError)

    def __init__(self) -> None:
        super().__init__()
        self.first_seen: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args, message = record.args or (), str(record.msg)
        closed_socket = record.name == self.CLOSED_SOCKET[0] and message.startswith(self.CLOSED_SOCKET[1])
        if closed_socket and args and str(args[0]).endswith("(closed)>"):
            return self._at_info(record)
        for logger, start, subject in self.MESSAGES:
            if record.name == logger and message.startswith(start) and len(args) > subject:
                if logger == "kafka.coordinator" and not isinstance(args[-1], self.COORDINATOR_MOVING):
                    return True
                first = self.first_seen.setdefault((start, str(args[subject])), time.monotonic())
                return self._at_info(record) if time.monotonic() - first <= self.GRACE_S else True
        return True

    @staticmethod
    def _at_info(record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


EXPECTED_STATES = ExpectedStatesAtInfo()


def quiet_kafka_logging() -> None:
    """kafka-python logs every connection at INFO; keep only its warnings unless debugging, and
    log the expected states of a start or stop at INFO (`ExpectedStatesAtInfo`)."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kafka").setLevel(logging.WARNING)
    for name in {logger for logger, _, _ in ExpectedStatesAtInfo.MESSAGES} | {ExpectedStatesAtInfo.CLOSED_SOCKET[0]}:
        if EXPECTED_STATES not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(EXPECTED_STATES)
