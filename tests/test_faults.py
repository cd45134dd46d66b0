"""The fault-injection suite, short (issue 10): benchmarks/bench_faults.py on a private broker
with one scorer SIGKILL and one broker restart, on the default engine (ONNX Runtime on the CPU). Nothing may be lost, and duplicates stay
within one batch per fault. The full run (50,000 windows, three kills, topic recreation,
retrain kill) is `python benchmarks/bench_faults.py`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(300)]


def test_a_scorer_kill_and_a_broker_restart_lose_no_window(tmp_path):
    out = tmp_path / "faults.json"
    command = [sys.executable, str(REPO / "benchmarks" / "bench_faults.py"), "--windows", "2000", "--rate", "40",
               "--scorer-kills", "1", "--broker-restarts", "1", "--topic-recreates", "0", "--retrain-kills", "0",
               "--outage-s", "2", "--device", "cpu", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert results["windows"] == 2000
    assert results["missing"] == 0 and results["unexpected_ids"] == 0 and results["skipped_faults"] == []
    assert results["duplicates"] <= results["duplicate_bound"] == 2 * 256
    assert [fault["fault"] for fault in results["faults"]] == ["scorer SIGKILL", "broker stop/restart"]
    assert all(fault["next_score_s"] < 90 and fault["fresh_again_s"] is not None for fault in results["faults"])
    assert results["latency_outside_outages_ms"]["windows"] > 0
    assert results["scorer"]["served_on"] == ["cpu (onnxruntime)"]  # the default engine on the CPU is onnx
