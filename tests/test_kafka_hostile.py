"""Hostile input against a live scorer and a real broker (issue 10): poison pills, oversize
dead letters, fuzzed messages and signal-quality alarms. The scorer must keep running, score
every good window exactly once and dead-letter every bad one with its reason."""

import hashlib
import json
import random
from collections import Counter

import numpy as np
import pytest

pytest.register_assert_rewrite("kafka_support")

from hostile_messages import hostile_message  # noqa: E402
from kafka_support import (  # noqa: E402
    ThreadScorer,
    make_producer,
    messages,
    read_topic,
    scored_ids,
    scorer_config,
    send,
    until_ids,
)
from modalities.ecg import ECGModality  # noqa: E402
from pipelines.kafka import codec  # noqa: E402
from pipelines.kafka.kafka_io import create_topics  # noqa: E402
from pipelines.streaming.serving import ModelSource  # noqa: E402

pytest_plugins = ["kafka_support"]  # fixtures: kafka_bootstrap, make_topics, ecg_windows, model_dirs
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def send_raw(bootstrap, topic, records):
    """(value, headers) records, in order, on key b"bad"."""
    producer = make_producer(bootstrap)
    for value, headers in records:
        producer.send(topic, key=b"bad", value=value, headers=headers)
    producer.flush()
    producer.close()


def score_then_stop(topics, model_dir, good, n_dead, **config):
    """Run a scorer on what is already in the input topic until every good window is scored and
    `n_dead` dead letters are out; (scores, dead letters, final totals), the scorer alive until then."""
    with ThreadScorer(scorer_config(topics, **config), ModelSource(model_dir=model_dir, device="cpu")) as running:
        read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in good}))
        read_topic(topics.bootstrap, topics.dlq, lambda records: len(records) >= n_dead)
        assert running.thread.is_alive()
    return read_topic(topics.bootstrap, topics.output), read_topic(topics.bootstrap, topics.dlq), \
        running.scorer.metrics.totals


def test_a_deeply_nested_message_is_dead_lettered_and_scoring_goes_on(make_topics, model_dirs, ecg_windows):
    """Defect 1: ~1,000 levels of nesting crashed the scorer with RecursionError, on every restart."""
    topics = make_topics()
    good = messages(ecg_windows.subset(np.arange(20)))
    deep = b'{"id": "x", "values": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    send(topics.bootstrap, topics.input, good[:10])
    send_raw(topics.bootstrap, topics.input, [(deep, [])])
    send(topics.bootstrap, topics.input, good[10:])
    scores, dead, totals = score_then_stop(topics, model_dirs[0], good, 1)
    assert scored_ids(scores) == Counter({m.id: 1 for m in good})
    assert len(dead) == 1 and dead[0].value == deep
    assert dead[0].headers["error"].startswith(b"undecodable: JSON nested 1001 levels deep")


def test_a_batch_failure_falls_back_to_window_by_window(make_topics, model_dirs, ecg_windows, monkeypatch):
    """A window that makes `prepare` raise (any exception type) dead-letters alone."""
    topics = make_topics()
    good = messages(ecg_windows.subset(np.arange(30)))
    poison = ecg_windows.X[0].copy()
    poison[0, 0] = 7777.0
    prepare = ECGModality.prepare

    def fragile(self, raw):
        if (np.asarray(raw) == 7777.0).any():
            raise TypeError("a window this modality cannot prepare")
        return prepare(self, raw)

    monkeypatch.setattr(ECGModality, "prepare", fragile)
    send(topics.bootstrap, topics.input, good[:15])
    send_raw(topics.bootstrap, topics.input, [(codec.encode_json_window("poison", poison), [])])
    send(topics.bootstrap, topics.input, good[15:])
    scores, dead, totals = score_then_stop(topics, model_dirs[0], good, 1)
    assert scored_ids(scores) == Counter({m.id: 1 for m in good})
    assert len(dead) == 1 and dead[0].headers["error"] == b"scoring_failed: a window this modality cannot prepare"


@pytest.mark.parametrize("dlq_limit", [None, 100_000])
def test_an_oversize_dead_letter_never_spoils_its_batch(make_topics, model_dirs, ecg_windows, dlq_limit):
    """Defect 2: a dead letter just under the scorer's input limit, in one batch with small dead
    letters and good windows. With the broker's default limit it is kept whole; with a smaller
    dead-letter topic only it becomes a reference, and nothing is scored twice."""
    topics = make_topics()
    if dlq_limit:
        topics.dlq += "-small"
        create_topics(topics.bootstrap, [topics.dlq], configs={"max.message.bytes": str(dlq_limit)})
    good = messages(ecg_windows.subset(np.arange(30)))
    prefix = b'{"id": "big", "values": ['
    big = prefix + b"0," * ((codec.DEFAULT_MAX_MESSAGE_BYTES - len(prefix) - 3) // 2) + b"0]}"
    assert codec.DEFAULT_MAX_MESSAGE_BYTES - 3 <= len(big) <= codec.DEFAULT_MAX_MESSAGE_BYTES
    small = [(json.dumps({"id": f"short-{n}", "values": [0.5] * (n + 1)}).encode(), [("probe", b"kept")])
             for n in range(5)]
    send(topics.bootstrap, topics.input, good[:15])
    send_raw(topics.bootstrap, topics.input, [small[0], (big, [("probe", b"kept")]), *small[1:]])
    send(topics.bootstrap, topics.input, good[15:])  # all in the topic before the scorer starts: one batch
    scores, dead, totals = score_then_stop(topics, model_dirs[0], good, len(small) + 1)
    assert scored_ids(scores) == Counter({m.id: 1 for m in good})
    assert len(dead) == len(small) + 1 and totals["dead_lettered"] == len(small) + 1
    by_offset = sorted(dead, key=lambda r: r.offset)
    for record, (value, _) in zip(by_offset[:1] + by_offset[2:], small):
        assert record.value == value and record.headers["probe"] == b"kept"
        assert record.headers["error"].startswith(b"wrong_shape: ")
    big_letter = by_offset[1]
    assert big_letter.headers["error"].startswith(b"wrong_shape: ")
    assert big_letter.headers["source-offset"] == b"16"
    if dlq_limit is None:
        assert big_letter.value == big and big_letter.headers["probe"] == b"kept"
    else:
        assert big_letter.value == b"" and "probe" not in big_letter.headers
        assert big_letter.headers["original-size"] == str(len(big)).encode()
        assert big_letter.headers["original-sha256"] == hashlib.sha256(big).hexdigest().encode()


def test_fuzzed_messages_mixed_with_good_ones(make_topics, model_dirs, ecg_windows):
    """A few hundred hostile messages of every kind (tests/hostile_messages.py) among good windows."""
    topics = make_topics()
    rng = random.Random(10)
    shape = ecg_windows.X.shape[1:]
    good = messages(ecg_windows)
    bad = [hostile_message(rng, shape, codec.DEFAULT_MAX_MESSAGE_BYTES) for _ in range(300)]
    producer = make_producer(topics.bootstrap)
    mixed = [("good", m) for m in good] + [("bad", b) for b in bad]
    rng.shuffle(mixed)
    for n, (kind, message) in enumerate(mixed):
        key = message.key if kind == "good" else f"bad-{n}".encode()
        headers = message.headers if kind == "good" else [*message.headers, ("fuzz-index", str(n).encode())]
        producer.send(topics.input, key=key, value=message.value, headers=headers)
    producer.flush()
    producer.close()
    scores, dead, totals = score_then_stop(topics, model_dirs[0], good, len(bad))
    assert scored_ids(scores) == Counter({m.id: 1 for m in good})
    assert len(dead) == len(bad) and totals["dead_lettered"] == len(bad)
    sent = {n: message for n, (kind, message) in enumerate(mixed) if kind == "bad"}
    for record in dead:
        expected = sent[int(record.headers["fuzz-index"])]
        assert record.value == expected.value, expected.kind
        assert record.headers["error"].split(b":")[0].decode() == expected.reason, expected.kind


def test_a_flat_line_is_an_alarm_with_its_reason(make_topics, model_dirs, ecg_windows):
    """Defect 5: a flat line scored as the most normal window there is; now it is anomalous with a reason."""
    topics = make_topics()
    good = messages(ecg_windows.subset(np.arange(20)))
    flat = [codec.encode_json_window(f"flat-{level}", np.full(ecg_windows.X.shape[1:], level))
            for level in (0.0, -0.96, 1e20)]
    send(topics.bootstrap, topics.input, good)
    send_raw(topics.bootstrap, topics.input, [(value, []) for value in flat])
    ids = {m.id for m in good} | {f"flat-{level}" for level in (0.0, -0.96, 1e20)}
    with ThreadScorer(scorer_config(topics), ModelSource(model_dir=model_dirs[0], device="cpu")):
        scores = read_topic(topics.bootstrap, topics.output, until_ids(ids))
    by_id = {record.json()["id"]: record.json() for record in scores}
    for level in (0.0, -0.96, 1e20):
        message = by_id[f"flat-{level}"]
        assert message["is_anomaly"] is True and message["reason"] == "signal_quality: flatline", message
        assert message["score"] < message["threshold"]  # what the model alone would have said
    assert all("reason" not in by_id[m.id] for m in good)
