"""The learning loop as the demo shows it, between two live passes over the held-out records.

A reviewer confirms PVCs and false alarms (normal beats the served model flags) of training
records on the labels topic; `agad-stream retrain --once` fine-tunes a candidate behind the
promotion gate; the scorer hot-swaps to it if promoted. `PassSummary` adds recall and FPR at
the served threshold to the monitor's figures, so the two passes can be compared.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agad_stream import ModelRegistry
from modalities import Modality, Windows
from pipelines.learning.labels import encode_confirmation
from pipelines.streaming.monitor import LiveSummary
from pipelines.kafka.kafka_io import make_producer

if TYPE_CHECKING:
    from agad_stream import AGAD

REVIEWER = "demo-reviewer"
DECISIONS = ("promoted", "rejected")


class PassSummary(LiveSummary):
    """The monitor's live summary, plus recall and FPR at the threshold the scorer applied."""

    def __init__(self) -> None:
        super().__init__()
        self.flags: list[bool] = []  # is_anomaly of each labelled window, aligned with self.labels

    def add(self, message: dict) -> None:
        labelled = message["id"] not in self.seen and message.get("label") is not None
        super().add(message)
        if labelled:
            self.flags.append(bool(message["is_anomaly"]))

    def snapshot(self) -> dict:
        flags, labels = np.asarray(self.flags, bool), np.asarray(self.labels)
        return {**super().snapshot(), "recall": _share(flags[labels == 1]), "fpr": _share(flags[labels == 0])}


def _share(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if len(flags) else None


def confirm(model: AGAD, modality: Modality, windows: Windows, per_label: int, version: int,
            bootstrap_servers: str, topic: str, seed: int = 0) -> dict[str, int]:
    """Publish confirmations of up to `per_label` anomalies and false alarms of `windows`
    (acknowledged by the broker), in recording order as a reviewer works through a record, so
    the gate's newest share holds both kinds; returns how many of each."""
    flagged = model.score_samples(modality.prepare(windows.X)) > model.threshold_
    rng = np.random.default_rng(seed)
    picked = {"anomalies": rng.permutation(np.flatnonzero(windows.y == 1))[:per_label],
              "false_alarms": rng.permutation(np.flatnonzero((windows.y == 0) & flagged))[:per_label]}
    producer = make_producer(bootstrap_servers)
    try:
        sent = [producer.send(topic, key=str(windows.source[i]).encode(), value=encode_confirmation(
                    f"{windows.source[i]}:{int(windows.position[i])}", int(windows.y[i]), windows.X[i], REVIEWER,
                    stream=str(windows.source[i]), model_version=version))
                for i in np.sort(np.concatenate(list(picked.values())))]
        producer.flush()
        for future in sent:
            future.get(timeout=0)  # raises if the broker refused one
    finally:
        producer.close()
    return {name: len(indices) for name, indices in picked.items()}


def retrain(registry: Path, bootstrap_servers: str, labels_topic: str, group: str, epochs: int, torch_threads: int,
            seed: int, log_path: Path, cwd: Path) -> dict:
    """Run `agad-stream retrain --once` (fine-tune, `epochs` passes); returns its registry-log decision."""
    logged = len(ModelRegistry(registry).read_log())
    command = [sys.executable, "-m", "pipelines.cli", "retrain", "--model-registry", str(registry),
               "--bootstrap-servers", bootstrap_servers, "--labels-topic", labels_topic, "--group", group,
               "--once", "--min-new", "1", "--init", "fine-tune", "--epochs", str(epochs),
               "--torch-threads", str(torch_threads), "--seed", str(seed)]
    with open(log_path, "w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    decisions = [e for e in ModelRegistry(registry).read_log()[logged:] if e.get("event") in DECISIONS]
    if done.returncode not in (0, 4) or not decisions:  # promoted, or refused by the gate
        raise RuntimeError(f"retrain --once made no decision (exit {done.returncode}); its log ({log_path}):\n"
                           f"{log_path.read_text()[-3000:]}")
    return decisions[-1]


def write_result(path: Path, args, passes: dict[str, dict], decision: dict | None, seconds: float) -> None:
    """The run's settings, each pass's figures and the gate's decision, as JSON (written whole, then renamed)."""
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    result = {"settings": settings, "seconds": round(seconds, 1), "passes": passes, "decision": decision}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(result, indent=1, default=str))
    partial.replace(path)


def format_decision(decision: dict) -> str:
    return (f"{decision['event']} version {decision['version']} (parent {decision['parent']}); gate on its "
            f"validation set: {'; '.join(decision['reasons'])}")


def format_pass(name: str, snapshot: dict) -> str:
    versions = ",".join(snapshot["model_versions"]) or "-"
    return (f"{name:7s} model version {versions:3s}  recall {_figure(snapshot['recall'], 3)}  "
            f"FPR {_figure(snapshot['fpr'], 4)}  AUROC {_figure(snapshot['auroc'], 4)}  alarms {snapshot['alarms']}")


def _figure(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
