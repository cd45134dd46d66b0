"""Per-stream adaptive thresholds on synthetic score streams (no broker needed)."""

import json

import numpy as np
import pytest

from pipelines.streaming.thresholds import ThresholdConfig, StreamThresholds

GLOBAL = 10.0


def run(thresholds, stream, scores, version=1):
    return [thresholds.apply(stream, s, GLOBAL, version) for s in scores]


def adaptive(**overrides):
    return StreamThresholds(ThresholdConfig(**{"mode": "adaptive", "warmup": 50, "window": 200, **overrides}))


def test_global_mode_always_gives_the_model_threshold():
    assert run(StreamThresholds(), "a", [1.0, 50.0]) == [(GLOBAL, "global"), (GLOBAL, "global")]


def test_warm_up_then_a_robust_estimate_of_the_streams_own_quantile():
    thresholds = adaptive(quantile=0.95)
    scores = np.random.default_rng(0).normal(4.0, 0.5, 300)  # a patient whose normal beats score low
    applied = run(thresholds, "low", scores)
    assert all(a == (GLOBAL, "global") for a in applied[:50])
    assert all(mode == "adaptive" for _, mode in applied[50:])
    final = applied[-1][0]
    assert final == pytest.approx(np.quantile(scores[-200:], 0.95), rel=0.05) and final < GLOBAL / 2
    assert run(thresholds, "other", [4.0]) == [(GLOBAL, "global")]  # each stream warms up on its own


def test_anomalies_common_in_a_stream_stay_above_its_threshold():
    """28% anomalies under the global threshold (MIT-BIH record 200 has that share of PVCs):
    the median/MAD estimate (of log scores) keeps flagging them, where an empirical quantile would learn them."""
    rng = np.random.default_rng(2)
    scores = np.where(rng.random(1000) < 0.28, rng.normal(8.0, 0.5, 1000), rng.normal(4.0, 0.5, 1000))
    applied = run(adaptive(quantile=0.99), "pvc-rich", scores)
    flagged = scores[100:] > np.array([t for t, _ in applied[100:]])
    anomalous = scores[100:] > 6.5
    assert flagged[anomalous].mean() > 0.95 and flagged[~anomalous].mean() < 0.05


def test_a_burst_of_anomalies_does_not_drag_the_threshold_up():
    thresholds = adaptive(quantile=0.95)
    rng = np.random.default_rng(1)
    run(thresholds, "s", rng.normal(4.0, 0.5, 200))
    before = run(thresholds, "s", [4.0])[0][0]
    burst = run(thresholds, "s", rng.normal(12.0, 1.0, 150))  # 150 anomalies in a row
    after = run(thresholds, "s", [4.0])[0][0]
    assert after == pytest.approx(before, rel=0.01)
    assert sum(12.0 > t for t, _ in burst) == len(burst)  # every window of the burst stays flagged


def test_the_threshold_is_clamped_around_the_global_one():
    thresholds = adaptive(min_factor=0.5, max_factor=1.5, margin=1.0)
    assert run(thresholds, "flat", [0.0] * 60)[-1][0] == 0.5 * GLOBAL
    assert run(thresholds, "noisy", [14.0] * 60 + [19.0] * 80)[-1][0] == 1.5 * GLOBAL


def test_least_recently_seen_streams_are_dropped():
    thresholds = adaptive(max_streams=2, warmup=1, window=1)
    run(thresholds, "a", [3.0])
    run(thresholds, "b", [3.0])
    run(thresholds, "a", [3.0])
    run(thresholds, "c", [3.0])  # drops b, the least recently seen
    assert run(thresholds, "a", [3.0])[0] == (pytest.approx(3.0), "adaptive")
    assert run(thresholds, "b", [3.0])[0] == (GLOBAL, "global")


def test_state_survives_a_restart_but_not_a_model_change(tmp_path):
    path = tmp_path / "thresholds.json"
    first = adaptive(state_path=str(path))
    run(first, "s", np.full(60, 5.0))
    first.save_if_due(force=True)
    assert json.loads(path.read_text())["model_version"] == "1"
    restarted = adaptive(state_path=str(path))
    assert run(restarted, "s", [5.0])[0] == (pytest.approx(5.0), "adaptive")
    assert run(adaptive(state_path=str(path)), "s", [5.0], version=2)[0] == (GLOBAL, "global")
    path.write_text("{torn")
    assert run(adaptive(state_path=str(path)), "s", [5.0])[0] == (GLOBAL, "global")  # unreadable: warm up again


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="threshold mode"):
        StreamThresholds(ThresholdConfig(mode="local"))
    with pytest.raises(ValueError, match="window >= warmup"):
        StreamThresholds(ThresholdConfig(mode="adaptive", warmup=100, window=10))
