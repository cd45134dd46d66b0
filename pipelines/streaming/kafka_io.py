"""Small broker helpers shared by replay, monitor, demo, tests and the benchmark.

Every Kafka client of the pipeline is built here (`make_producer`, `make_consumer`,
`make_admin`), so each one gets the security settings of `pipelines.streaming.security`."""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipelines.streaming import security


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


def quiet_kafka_logging() -> None:
    """kafka-python logs every connection at INFO; keep only its warnings unless debugging."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kafka").setLevel(logging.WARNING)
