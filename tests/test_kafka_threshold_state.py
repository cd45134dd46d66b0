"""Issue 19 medium 5, on the real broker: threshold state on a full volume must not stop the scorer."""

import pytest

pytest.register_assert_rewrite("kafka_support")

from kafka_support import (ThreadScorer, messages, process_args, read_topic, scored_ids, scorer_config,  # noqa: E402
                           send, until_ids)
from pipelines.streaming.serving import ModelSource  # noqa: E402
from pipelines.streaming.thresholds import StreamThresholds, ThresholdConfig  # noqa: E402

pytest_plugins = ["kafka_support", "full_volume"]
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]


def test_every_failed_save_is_counted_while_scoring_goes_on(make_topics, model_dirs, ecg_windows, full_volume):
    topics = make_topics()
    batch = messages(ecg_windows)
    running = ThreadScorer(scorer_config(topics, max_batch=16), ModelSource(model_dir=model_dirs[0], device="cpu"))
    running.scorer.thresholds = StreamThresholds(ThresholdConfig(
        mode="adaptive", warmup=30, window=200, state_path=str(full_volume / "thresholds.state"), save_every_s=0))
    with running:
        send(topics.bootstrap, topics.input, batch)
        scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in batch}))
    assert set(scored_ids(scores)) == {m.id for m in batch}
    metrics = running.scorer.metrics
    failures = metrics.registry.get_sample_value("agad_scorer_threshold_state_save_failures_total")
    assert failures >= 2 and failures == metrics.totals["threshold_state_save_failures"]  # periodic + at shutdown


def test_the_scorer_process_exits_0_with_a_warning_not_a_traceback(make_topics, model_dirs, ecg_windows, full_volume,
                                                                   scorer_processes):
    topics = make_topics()
    batch = messages(ecg_windows)
    scorer = scorer_processes(process_args(topics, model_dirs[0], "--threshold-mode", "adaptive",
                                           "--threshold-state", str(full_volume / "thresholds.state")))
    send(topics.bootstrap, topics.input, batch)
    scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in batch}), timeout_s=120)
    assert set(scored_ids(scores)) == {m.id for m in batch}, scorer.log()
    assert scorer.terminate() == 0, scorer.log()
    log = scorer.log()
    assert "event=threshold_state_save_failed" in log and "No space left on device" in log
    assert "Traceback" not in log
