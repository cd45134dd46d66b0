"""Scorer additions of the learning loop, on the real broker: the review topic, per-stream
thresholds, and a start as a new user makes it (topics not created yet, a version published
while scoring)."""

import json
import logging
import re
import uuid

import numpy as np
import pytest
from kafka.errors import KafkaConnectionError, NotCoordinatorError

pytest.register_assert_rewrite("kafka_support")

from kafka_support import (ECG_SLICE, ThreadScorer, messages, read_topic, scorer_config, send,  # noqa: E402
                           until_ids)
from pipelines.cli import main as cli_main  # noqa: E402
from pipelines.kafka.kafka_io import create_topics, quiet_kafka_logging  # noqa: E402
from pipelines.streaming.serving import ModelSource  # noqa: E402
from pipelines.streaming.thresholds import StreamThresholds, ThresholdConfig, read_state  # noqa: E402

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
    header, saved = read_state(state)  # written on shutdown, read by the next scorer
    assert header["model_version"] == model_dirs[0].name and len(saved["119"][0]) > 30


@pytest.mark.slow  # two commands started as a user starts them: about a minute on a busy machine
def test_a_first_start_logs_no_kafka_errors_and_counts_windows_per_served_version(kafka_bootstrap, model_dirs,
                                                                                   ecg_windows, scorer_processes,
                                                                                   tmp_path):
    """Topics that the broker creates on first use are a normal start, not an ERROR; after a
    hot reload the progress line still credits the earlier windows to the earlier version."""
    name = f"test-{uuid.uuid4().hex[:10]}"  # none of these topics exists yet
    registry = str(tmp_path / "registry")
    assert cli_main(["publish", "--model", str(model_dirs[0]), "--model-registry", registry]) == 0
    scorer = scorer_processes(["--model-registry", registry, "--bootstrap-servers", kafka_bootstrap,
                               "--in-topic", f"{name}-in", "--out-topic", f"{name}-out", "--dlq-topic", f"{name}-dead",
                               "--group", f"{name}-scorers", "--device", "cpu", "--max-wait-ms", "20"])
    scorer.wait_for("event=partitions_assigned partitions=")
    replay = scorer_processes(["--modality", "ecg", "--ann", "pvc", "--data", str(ECG_SLICE), "--topic", f"{name}-in",
                               "--bootstrap-servers", kafka_bootstrap, "--rate", "0", "--quiet"], command="replay")
    assert replay.process.wait(120) == 0, replay.log()
    first = len(ecg_windows.X)
    assert len(read_topic(kafka_bootstrap, f"{name}-out", lambda records: len(records) >= first)) == first
    assert cli_main(["publish", "--model", str(model_dirs[1]), "--registry", registry]) == 0  # the old flag still works
    send(kafka_bootstrap, f"{name}-in", messages(ecg_windows)[:60], rate=4.0)  # 15 s of batches: a progress line
    scorer.wait_for(f"consumed_by_version=1:{first},2:")
    progress = [line for line in scorer.lines if f"consumed_by_version=1:{first},2:" in line][0]
    assert re.search(r" model_version=2 consumed=(\d+) ", progress), progress
    on_two = int(re.search(r",2:(\d+)", progress).group(1))
    assert 0 < on_two <= 60 and f" consumed={first + on_two} " in progress, progress
    assert scorer.terminate() == 0
    startup = ("not found in cluster metadata", "No partition metadata", "Marking the coordinator dead")
    alarming = [line for job in (scorer, replay) for line in job.lines
                if " ERROR " in line or (" WARNING kafka" in line and any(text in line for text in startup))]
    assert not alarming, alarming


def test_only_the_coordinator_errors_that_mean_ask_again_are_logged_at_info():
    """A coordinator that moved is a normal state of a fresh broker; a lost connection is not."""
    quiet_kafka_logging()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    coordinator = logging.getLogger("kafka.coordinator")
    coordinator.addHandler(handler)
    level = coordinator.level
    coordinator.setLevel(logging.INFO)
    try:
        coordinator.warning("Marking the coordinator dead (node %s) for group %s: %s.", 1, "g", NotCoordinatorError())
        coordinator.warning("Marking the coordinator dead (node %s) for group %s: %s.", 1, "g",
                            KafkaConnectionError("socket disconnected"))
    finally:
        coordinator.removeHandler(handler)
        coordinator.setLevel(level)
    assert [r.levelname for r in records] == ["INFO", "WARNING"]
