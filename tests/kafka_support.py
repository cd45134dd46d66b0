"""Fixtures and helpers for the Kafka tests: a real broker, unique topics, tiny models, scorers.

The broker comes from KAFKA_BOOTSTRAP (default 127.0.0.1:9092; the test command starts
scripts/kafka-local.sh first). Without one the Kafka tests are skipped, except under
CI=true, where they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from kafka import TopicPartition

from agad_stream import AGAD
from modalities import Windows, get_modality
from pipelines.offline.model_dir import save_model_dir
from pipelines.streaming.replay import Message, window_messages
from pipelines.kafka.kafka_io import broker_answers, create_topics, make_consumer, make_producer
from pipelines.streaming.loop import Scorer, ScorerConfig
from pipelines.kafka.metrics import ScorerMetrics
from pipelines.streaming.serving import ModelSource

REPO = Path(__file__).resolve().parents[1]
ECG_SLICE = REPO / "tests" / "data" / "mitdb-pvc" / "119"


# --------------------------------------------------------------------------- broker and topics
@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    if not broker_answers(bootstrap, timeout_ms=5000):
        reason = f"no Kafka broker answers at {bootstrap} (start one with scripts/kafka-local.sh start)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return bootstrap


@dataclass
class Topics:
    bootstrap: str
    input: str
    output: str
    dlq: str
    group: str


@pytest.fixture
def make_topics(kafka_bootstrap) -> Callable[..., Topics]:
    """Fresh input/output/dead-letter topics and group names for one test."""

    def make(partitions: int = 1) -> Topics:
        name = f"test-{uuid.uuid4().hex[:10]}"
        topics = Topics(kafka_bootstrap, f"{name}-in", f"{name}-out", f"{name}-dlq", f"{name}-group")
        create_topics(kafka_bootstrap, [topics.input], partitions=partitions)
        create_topics(kafka_bootstrap, [topics.output, topics.dlq])
        return topics

    return make


# --------------------------------------------------------------------------- data and models
@pytest.fixture(scope="session")
def ecg_windows() -> Windows:
    """Real beats of MIT-BIH record 119 (first 3 minutes: 156 normal, 40 PVC)."""
    return get_modality("ecg", ann="pvc").load(ECG_SLICE)


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory, ecg_windows) -> tuple[Path, Path]:
    """Two tiny ECG models (different seeds), trained once per session on the normal beats."""
    modality = get_modality("ecg", ann="pvc")
    modality.load(ECG_SLICE)
    normal = modality.prepare(ecg_windows.X[ecg_windows.y == 0])
    root = tmp_path_factory.mktemp("models")
    dirs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # much faster than 2 on a busy 2-core machine, for a model this small
    try:
        for seed in (0, 1):
            model = AGAD(channels=(8, 16, 32), latent_dim=16, epochs=2, batch_size=64, verbose=False,
                         random_state=seed, device="cpu").fit(normal)
            dirs.append(save_model_dir(root / f"ecg-tiny-{seed}", model, modality))
    finally:
        torch.set_num_threads(threads)
    return dirs[0], dirs[1]


def messages(windows: Windows, encoding: str = "json", repeat: int = 1) -> list[Message]:
    return list(window_messages(windows, encoding, repeat))


def send(bootstrap: str, topic: str, batch: list[Message], rate: float = 0.0) -> None:
    """Send and wait for acknowledgements (rate in messages/s, 0 = at once)."""
    producer = make_producer(bootstrap)
    start = time.monotonic()
    for n, message in enumerate(batch):
        if rate:
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
        producer.send(topic, key=message.key, value=message.value, headers=message.headers)
    producer.flush()
    producer.close()


def send_in_background(bootstrap: str, topic: str, batch: list[Message], rate: float) -> threading.Thread:
    thread = threading.Thread(target=send, args=(bootstrap, topic, batch, rate), daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- reading topics
@dataclass
class Received:
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int
    key: bytes | None = None

    def json(self) -> dict:
        return json.loads(self.value)


def read_topic(bootstrap: str, topic: str, done: Callable[[list[Received]], bool] | None = None,
               timeout_s: float = 60.0) -> list[Received]:
    """Records of `topic` from its start, until `done(records)` (default: the current end) or the timeout."""
    consumer = make_consumer(bootstrap, group_id=None, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    if done is None:
        ends = consumer.end_offsets(partitions)
        done = lambda records: all(consumer.position(tp) >= end for tp, end in ends.items())  # noqa: E731
    records: list[Received] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(records) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(Received(r.value, dict(r.headers), r.partition, r.offset, r.key) for r in batch)
    finally:
        consumer.close()
    return records


def scored_ids(records: list[Received]) -> Counter:
    return Counter(record.json()["id"] for record in records)


def until_ids(ids: set[str]) -> Callable[[list[Received]], bool]:
    return lambda records: ids <= set(scored_ids(records))


# --------------------------------------------------------------------------- scorers
def scorer_config(topics: Topics, **overrides) -> ScorerConfig:
    settings = dict(bootstrap_servers=topics.bootstrap, in_topic=topics.input, out_topic=topics.output,
                    dlq_topic=topics.dlq, group=topics.group, max_wait_ms=20, progress_every_s=3600)
    settings.update(overrides)
    return ScorerConfig(**settings)


class ThreadScorer:
    """A Scorer running in a thread of the test process (fast to start; stopped by `stop()`)."""

    def __init__(self, config: ScorerConfig, models: ModelSource):
        self.scorer = Scorer(config, models, ScorerMetrics())
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="scorer", daemon=True)

    def _run(self) -> None:
        try:
            self.scorer.run()
        except BaseException as error:  # surfaced by stop()
            self.error = error

    def __enter__(self) -> ThreadScorer:
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        self.scorer.stop()
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the scorer did not stop"
        if self.error is not None:
            raise self.error

    def __exit__(self, *exc) -> None:
        self.stop()


class ScorerProcess:
    """`agad-stream score` (or another `command`) in a subprocess, its log collected line by line."""

    def __init__(self, args: list[str], command: str = "score", env: dict[str, str] | None = None,
                 log_level: str = "INFO"):
        argv = [sys.executable, "-m", "pipelines.cli", "--log-level", log_level, command, *args]
        self.process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the process never logged {text!r}; log:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return "".join(self.lines[-60:])

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout_s)


def process_args(topics: Topics, model: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--bootstrap-servers", topics.bootstrap, "--in-topic", topics.input,
            "--out-topic", topics.output, "--dlq-topic", topics.dlq, "--group", topics.group, "--device", "cpu",
            "--max-wait-ms", "20", "--session-timeout-ms", "6000", *extra]


@pytest.fixture
def scorer_processes():
    """Start scorer subprocesses; whatever is still running at the end of the test is killed."""
    started: list[ScorerProcess] = []

    def start(args: list[str], **options) -> ScorerProcess:
        started.append(ScorerProcess(args, **options))
        return started[-1]

    yield start
    for scorer in started:
        if scorer.process.poll() is None:
            scorer.kill()
