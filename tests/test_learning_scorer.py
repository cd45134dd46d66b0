"""Scorer additions of the learning loop, on the real broker: the review topic and per-stream thresholds."""

import json

import numpy as np
import pytest

pytest.register_assert_rewrite("kafka_support")

from kafka_support import ThreadScorer, messages, read_topic, scorer_config, send, until_ids  # noqa: E402
from pipelines.streaming.kafka_io import create_topics  # noqa: E402
from pipelines.streaming.serving import ModelSource  # noqa: E402
from pipelines.streaming.thresholds import StreamThresholds, ThresholdConfig  # noqa: E402

pytest_plugins = ["kafka_support"]
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def test_flagged_windows_go_to_the_review_topic_under_adaptive_thresholds(make_topics, model_dirs, ecg_windows,
                                                                          tmp_path):
    topics = make_topics()
    review = f"{topics.input}-review"
    create_topics(topics.bootstrap, [review])
    batch = messages(ecg_windows)
    state = tmp_path / "thresholds.json"
    thresholds = StreamThresholds(ThresholdConfig(mode="adaptive", warmup=30, window=200, state_path=str(state)))
    config = scorer_config(topics, review_topic=review)
    running = ThreadScorer(config, ModelSource(model_dir=model_dirs[0], device="cpu"))
    running.scorer.thresholds = thresholds
    with running:
        send(topics.bootstrap, topics.input, batch)
        read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in batch}))
    assert running.scorer.metrics.totals["scored"] == len(batch)  # reviews are not counted as scores
    scores = [r.json() for r in read_topic(topics.bootstrap, topics.output)]  # one partition: in input order
    modes = [m["threshold_mode"] for m in scores]
    switch = modes.index("adaptive")  # after 30 windows under the threshold (flagged ones do not count)
    assert 30 <= switch < len(modes) - 1 and set(modes[:switch]) == {"global"} and set(modes[switch:]) == {"adaptive"}
    assert all(m["is_anomaly"] == (m["score"] > m["threshold"]) for m in scores)
    flagged = {m["id"]: m for m in scores if m["is_anomaly"]}
    reviews = {r.json()["id"]: r.json() for r in read_topic(topics.bootstrap, review)}
    assert flagged and set(reviews) == set(flagged)
    raw = {m.id: json.loads(m.value)["values"] for m in batch}
    for window_id, message in reviews.items():
        assert np.allclose(message["values"], raw[window_id])
        assert {k: v for k, v in message.items() if k != "values"} == flagged[window_id]
    saved = json.loads(state.read_text())  # written on shutdown, read by the next scorer
    assert saved["model_version"] == model_dirs[0].name and len(saved["streams"]["119"]) > 30
