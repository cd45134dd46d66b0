"""The main job's headline, in the README's configuration: `agad-stream demo` with its defaults
(the bundled records of data/mitdb-mlii-pvc, the demo's training budget and gate) promotes
version 2 and finds far more PVCs on the held-out records. A smaller configuration passed here
while a fresh machine's demo refused version 2 (issue 25); this one is what a user runs.
Across seeds 0-4 the recall gain was 0.57 or more at FPR 0.037 or less
(benchmarks/results/demo_seeds.json), so the asserted 0.3 and 0.05 hold with a margin."""

import json
import re

import pytest

from agad_stream import ModelRegistry
from pipelines.cli import main as cli_main

pytest_plugins = ["kafka_support"]
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_readme_demo_promotes_and_recall_rises(kafka_bootstrap, tmp_path, capsys):
    assert cli_main(["demo", "--bootstrap-servers", kafka_bootstrap, "--work-dir", str(tmp_path / "work"),
                     "--result", str(tmp_path / "demo.json")]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "demo.json").read_text())
    before, after = result["passes"]["before"], result["passes"]["after"]
    assert before["scored"] == after["scored"] == 1528  # every beat of records 119 and 200, in both passes
    decision = result["decision"]
    assert decision["event"] == "promoted", decision["reasons"]
    assert after["recall"] - before["recall"] >= 0.3 and after["fpr"] <= 0.05, (before, after)
    assert any(r.startswith("FPR at threshold") and "interval [" in r for r in decision["reasons"])
    registry = ModelRegistry(tmp_path / "work" / "registry")
    assert registry.current_version() == decision["version"] == 2
    assert re.search(r"before +model version 1 +recall", out) and re.search(r"after +model version 2 +recall", out)
    served = re.findall(r"event=model_(?:loaded|reloaded) version=(\d+) device=\"([^\"]+)\"",
                        (tmp_path / "work" / "scorer.log").read_text())
    assert served == [("1", "cpu (onnxruntime)"), ("2", "cpu (onnxruntime)")]  # never torch
