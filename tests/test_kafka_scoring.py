"""Live scoring through a real Apache Kafka broker: delivery guarantees, bad input, scale-out, hot reload."""

import json
import signal
import time
from collections import Counter

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

pytest.register_assert_rewrite("kafka_support")

from agad_stream import ModelRegistry  # noqa: E402
from kafka_support import (  # noqa: E402
    ThreadScorer,
    Topics,
    make_producer,
    messages,
    process_args,
    read_topic,
    scored_ids,
    scorer_config,
    send,
    send_in_background,
    until_ids,
)
from pipelines.cli import main as cli_main  # noqa: E402
from pipelines.kafka import codec  # noqa: E402
from pipelines.streaming.serving import ModelSource  # noqa: E402

pytest_plugins = ["kafka_support"]  # fixtures: kafka_bootstrap, make_topics, ecg_windows, model_dirs, scorer_processes
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_every_window_is_scored_exactly_once(make_topics, model_dirs, ecg_windows, encoding):
    topics = make_topics()
    batch = messages(ecg_windows, encoding)
    with ThreadScorer(scorer_config(topics), ModelSource(model_dir=model_dirs[0], device="cpu")) as running:
        send(topics.bootstrap, topics.input, batch)
        read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in batch}))
        threshold = running.scorer.models.current.threshold
    metrics = scrape(running.scorer.metrics.registry)  # after the scorer stopped: every count is final
    assert metrics["agad_scorer_messages_in_total"] == metrics["agad_scorer_messages_scored_total"] == len(batch)
    assert metrics["agad_scorer_end_to_end_latency_seconds_count"] == len(batch)
    assert metrics["agad_scorer_batch_size_sum"] == len(batch)
    scores = read_topic(topics.bootstrap, topics.output)
    assert scored_ids(scores) == Counter({m.id: 1 for m in batch})
    assert read_topic(topics.bootstrap, topics.dlq) == []
    labels = {m.id: int(codec.header(m.headers, "label")) for m in batch}
    for record in scores:
        message = record.json()
        assert message["model_version"] == model_dirs[0].name
        assert message["label"] == labels[message["id"]]
        assert message["stream"] == "119"
        assert message["threshold"] == pytest.approx(threshold)
        assert message["is_anomaly"] == (message["score"] > message["threshold"])
        assert message["latency_ms"] >= 0 and message["scored_at"].endswith("Z")
        assert len(message["top_segments"]) == 3
        assert {"channel", "start", "end", "energy", "share"} <= set(message["top_segments"][0])
    pvc_scores = [r.json()["score"] for r in scores if r.json()["label"] == 1]
    normal_scores = [r.json()["score"] for r in scores if r.json()["label"] == 0]
    assert np.median(pvc_scores) > np.median(normal_scores)


def scrape(registry) -> dict[str, float]:
    """Unlabelled samples of a Prometheus registry, as the /metrics endpoint serves them."""
    text = generate_latest(registry).decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if not sample.labels}


def bad_messages(shape: tuple[int, ...]) -> list[tuple[str, bytes, list, str]]:
    """(id, value, headers, expected reason) for each kind of bad input."""
    good = np.zeros(shape, np.float32)
    binary, binary_headers = codec.encode_binary_window("bad-binary-shape", good)
    wrong_shape_headers = [h if h[0] != "shape" else ("shape", b"1,100") for h in binary_headers]
    nan = good.copy().ravel().tolist()
    nan[5] = float("nan")
    return [
        ("bad-json", b"{this is not json", [], codec.UNDECODABLE),
        ("bad-length", json.dumps({"id": "bad-length", "values": [0.0] * 100}).encode(), [], codec.WRONG_SHAPE),
        ("bad-nan", json.dumps({"id": "bad-nan", "values": nan}).encode(), [], codec.NON_FINITE),
        ("bad-oversize", json.dumps({"id": "bad-oversize", "values": [0.5] * 20000}).encode(), [], codec.OVERSIZE),
        ("bad-content-type", b"1,2,3", [("content-type", b"text/csv")], codec.UNKNOWN_CONTENT_TYPE),
        ("bad-binary-shape", binary, wrong_shape_headers, codec.WRONG_SHAPE),
    ]


def test_bad_input_goes_to_the_dead_letter_topic_and_scoring_goes_on(make_topics, model_dirs, ecg_windows):
    topics = make_topics()
    good = messages(ecg_windows.subset(np.arange(40)))
    bad = bad_messages(ecg_windows.X.shape[1:])
    config = scorer_config(topics, max_message_bytes=50_000)
    with ThreadScorer(config, ModelSource(model_dir=model_dirs[0], device="cpu")) as running:
        send(topics.bootstrap, topics.input, good[:20])
        producer = make_producer(topics.bootstrap)
        for _, value, headers, _ in bad:
            producer.send(topics.input, key=b"bad", value=value, headers=headers + [("probe", b"kept")])
        producer.flush()
        producer.close()
        send(topics.bootstrap, topics.input, good[20:])
        read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in good}))
        dead = read_topic(topics.bootstrap, topics.dlq, lambda records: len(records) >= len(bad))
        assert running.thread.is_alive()
    totals = running.scorer.metrics.totals  # after the scorer stopped: final
    assert totals["scored"] == len(good) and totals["dead_lettered"] == len(bad)
    assert len(dead) == len(bad)
    for record, (_, value, _, reason) in zip(dead, bad):
        assert record.value == value
        assert record.headers["probe"] == b"kept"
        assert record.headers["error"].decode().startswith(f"{reason}: ")
        assert record.headers["source-topic"] == topics.input.encode()


def scorer_mid_stream(make_topics, model_dirs, ecg_windows, scorer_processes):
    """A scorer process that has scored its first 100 windows while a sender keeps producing."""
    topics = make_topics()
    batch = messages(ecg_windows, "binary", repeat=3)
    args = process_args(topics, model_dirs[0], "--max-batch", "16")
    first = scorer_processes(args)
    first.wait_for(f"event=partitions_assigned partitions={topics.input}")
    sender = send_in_background(topics.bootstrap, topics.input, batch, rate=300)
    read_topic(topics.bootstrap, topics.output, lambda records: len(records) >= 100)
    return topics, batch, args, first, sender


@pytest.mark.slow  # scorer commands started, stopped and started again: over 10 s
def test_sigkill_and_restart_loses_nothing(make_topics, model_dirs, ecg_windows, scorer_processes):
    topics, batch, args, first, sender = scorer_mid_stream(make_topics, model_dirs, ecg_windows, scorer_processes)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    second = scorer_processes(args)
    sender.join()
    ids = {m.id for m in batch}
    scores = read_topic(topics.bootstrap, topics.output, until_ids(ids), timeout_s=120)
    assert set(scored_ids(scores)) == ids, second.log()
    assert len({record.headers["scorer"] for record in scores}) == 2  # both lives of the scorer scored
    assert second.terminate() == 0


@pytest.mark.slow  # scorer commands started, stopped and started again: over 10 s
def test_sigterm_finishes_and_commits_the_batch(make_topics, model_dirs, ecg_windows, scorer_processes):
    topics, batch, args, first, sender = scorer_mid_stream(make_topics, model_dirs, ecg_windows, scorer_processes)
    assert first.terminate() == 0
    assert any("event=stopped" in line for line in first.lines)
    scorer_processes(args)
    sender.join()
    scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in batch}), timeout_s=120)
    assert scored_ids(scores) == Counter({m.id: 1 for m in batch})  # nothing lost, nothing scored twice


@pytest.mark.slow  # scorer commands started, stopped and started again: over 10 s
def test_two_scorers_share_a_four_partition_topic(make_topics, model_dirs, ecg_windows, scorer_processes):
    topics = make_topics(partitions=4)
    first = scorer_processes(process_args(topics, model_dirs[0], "--client-id", "scorer-a"))
    first.wait_for(f"event=partitions_assigned partitions={topics.input}")
    second = scorer_processes(process_args(topics, model_dirs[0], "--client-id", "scorer-b"))
    second.wait_for(f"event=partitions_assigned partitions={topics.input}")
    batch = messages(ecg_windows, "binary", repeat=2)
    for n, message in enumerate(batch):  # spread the streams over the partitions
        message.key = f"stream-{n % 8}".encode()
    send(topics.bootstrap, topics.input, batch)  # keys stream-0..7 hash (murmur2) to all four partitions
    ids = {m.id for m in batch}
    scores = read_topic(topics.bootstrap, topics.output, until_ids(ids), timeout_s=120)
    assert set(scored_ids(scores)) == ids
    by_scorer = Counter(record.headers["scorer"] for record in scores)
    assert set(by_scorer) == {b"scorer-a", b"scorer-b"}, by_scorer
    assert first.terminate() == 0 and second.terminate() == 0


def test_hot_reload_switches_model_version_mid_stream(make_topics, model_dirs, ecg_windows, tmp_path):
    topics = make_topics()
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(model_dirs[0])
    batch = messages(ecg_windows, "json", repeat=2)
    ids = {m.id for m in batch}
    with ThreadScorer(scorer_config(topics), ModelSource(registry=registry.root, device="cpu")):
        sender = send_in_background(topics.bootstrap, topics.input, batch, rate=150)
        read_topic(topics.bootstrap, topics.output, lambda records: len(records) >= 100)
        assert registry.publish(model_dirs[1]) == 2
        sender.join()
        read_topic(topics.bootstrap, topics.output, until_ids(ids))
    scores = read_topic(topics.bootstrap, topics.output)
    assert scored_ids(scores) == Counter({i: 1 for i in ids})
    versions = [record.json()["model_version"] for record in sorted(scores, key=lambda r: r.offset)]
    switch = versions.index(2)
    assert 0 < switch < len(versions) - 1
    assert set(versions[:switch]) == {1} and set(versions[switch:]) == {2}


def test_unreachable_broker_is_retried_until_stopped(model_dirs, tmp_path):
    topics = Topics("127.0.0.1:9", "in", "out", "dlq", "group")  # port 9 (discard): nothing listens
    running = ThreadScorer(scorer_config(topics, bootstrap_timeout_ms=300, initial_backoff_s=0.1),
                           ModelSource(model_dir=model_dirs[0], device="cpu"))
    with running:
        deadline = time.monotonic() + 30
        while running.scorer.metrics.broker_errors.labels("connect")._value.get() < 2:
            assert time.monotonic() < deadline and running.thread.is_alive()
            time.sleep(0.1)
    assert not running.thread.is_alive()


def test_replay_and_monitor_commands(make_topics, model_dirs, capsys):
    topics = make_topics()
    with ThreadScorer(scorer_config(topics), ModelSource(model_dir=model_dirs[0], device="cpu")):
        assert cli_main(["replay", "--model", str(model_dirs[0]), "--data", "tests/data/mitdb-pvc/119",
                         "--ann", "pvc", "--topic", topics.input, "--bootstrap-servers", topics.bootstrap,
                         "--rate", "0", "--encoding", "binary", "--quiet"]) == 0
        assert "sent 196 windows" in capsys.readouterr().out
        assert cli_main(["monitor", "--topic", topics.output, "--bootstrap-servers", topics.bootstrap,
                         "--from-beginning", "--expect", "196", "--idle-timeout", "60", "--json"]) == 0
    final = json.loads(capsys.readouterr().out)
    assert final["scored"] == 196 and final["labelled"] == 196 and final["anomalous_labels"] == 40
    assert final["auroc"] > 0.8
    assert final["latency_p50_ms"] is not None
