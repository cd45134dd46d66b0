"""Per-stream adaptive thresholds on synthetic score streams (no broker needed)."""

import json

import numpy as np
import pytest

from pipelines.streaming.thresholds import STREAM_OVERHEAD_BYTES, StreamThresholds, ThresholdConfig, read_state

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
    assert read_state(path)[0]["model_version"] == "1"
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


pytest_plugins = ["full_volume"]


def test_evt_mode_follows_a_drifting_stream_at_its_quantile():
    """DSPOT: the tail of the residuals around a drifting mean, so a slow rise moves the threshold along."""
    rng = np.random.default_rng(4)
    drift = np.linspace(3.0, 6.0, 3000)
    scores = drift + rng.exponential(0.3, 3000)
    thresholds = adaptive(mode="evt", warmup=100, window=1000, quantile=0.99, margin=0.5)
    applied = np.array([t for t, _ in run(thresholds, "drifting", scores)])
    assert run(thresholds, "drifting", [5.0])[0][1] == "evt"
    late = slice(1000, None)
    fpr = np.mean(scores[late] > applied[late])
    assert 0.003 < fpr < 0.03
    assert applied[-1] > applied[1000] + 1.5  # moved with the drift (about +2 between these windows)


def test_evt_state_survives_a_restart(tmp_path):
    path = tmp_path / "thresholds.state"
    first = adaptive(mode="evt", state_path=str(path))
    scores = np.random.default_rng(5).normal(5.0, 0.3, 120)
    before = run(first, "s", scores)[-1][0]
    first.save_if_due(force=True)
    restarted = adaptive(mode="evt", state_path=str(path))
    assert run(restarted, "s", [5.0])[0] == (pytest.approx(before, rel=0.01), "evt")
    assert run(adaptive(state_path=str(path)), "s", [5.0])[0] == (GLOBAL, "global")  # another mode warms up again


def test_state_is_bounded_in_bytes_keys_included(tmp_path):
    path = tmp_path / "thresholds.state"
    thresholds = adaptive(state_path=str(path), max_state_bytes=200_000, max_streams=10_000)
    for n in range(100):
        run(thresholds, f"{n:03d}" + "k" * 10_000, [3.0])  # 10 kB keys
    assert thresholds.state_bytes <= 200_000
    thresholds.save_if_due(force=True)
    header, streams = read_state(path)
    assert path.stat().st_size <= 200_000 + 2_000  # the header's fixed part on top
    fitting = 200_000 // (200 * 2 + 10_003 + STREAM_OVERHEAD_BYTES)
    assert [key[:3] for key in streams] == [f"{n:03d}" for n in range(100 - fitting, 100)]  # the most recent kept


def test_a_format_1_json_state_file_still_loads(tmp_path):
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"format": 1, "model_version": "1", "config": {}, "streams": {"s": [5.0] * 60}}))
    assert run(adaptive(state_path=str(path)), "s", [5.0])[0] == (pytest.approx(5.0, rel=1e-3), "adaptive")


def test_a_save_on_a_full_disk_is_a_warning_and_a_count_and_scoring_goes_on(full_volume, caplog):
    failures = []
    thresholds = adaptive(state_path=str(full_volume / "thresholds.state"), save_every_s=0)
    for stream in range(20):
        run(thresholds, str(stream), np.full(60, 5.0))
    thresholds.save_if_due(on_failure=lambda: failures.append("background"))  # on the background thread
    thresholds._writer.join(10)
    thresholds.save_if_due(force=True, on_failure=lambda: failures.append("forced"))  # at shutdown
    assert failures == ["background", "forced"] and thresholds.save_failures == 2
    assert "event=threshold_state_save_failed" in caplog.text and "No space left on device" in caplog.text
    assert run(thresholds, "0", [5.0])[0] == (pytest.approx(5.0, rel=1e-3), "adaptive")
    assert sorted(p.name for p in full_volume.iterdir()) == ["filler"]  # no temporary file left behind
