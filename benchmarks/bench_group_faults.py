"""Faults of a scorer group (issue 19, "not yet tried"): two `agad-stream score` processes in one
group on an 8-partition topic, serving a registry, while

1. one of them is SIGKILLed (the other must take its partitions over), and restarted;
2. a new version is published and the other is SIGKILLed right after, while it reloads;

then the scores topic is read from its start and every id checked.

    nice python benchmarks/bench_group_faults.py [--windows 6000] [--rate 100] [--out FILE]

Reported: ids without a score (goal 0), ids scored twice (bounded by one batch per kill),
seconds from each kill to the next score of a window of a partition the killed scorer held,
the versions that scored, and whether both scorers ended alive. The broker is a private one
(scripts/kafka-local.sh, own directory and free ports), never the shared one.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
from live_harness import add_live_options, run_live  # noqa: E402
from bench_faults import read_scores  # noqa: E402
from bench_kafka_throughput import build_model, ecg_beats, publish, send_all, unique_messages  # noqa: E402
from kafka_support import ScorerProcess  # noqa: E402

from agad_stream import ModelRegistry  # noqa: E402
from pipelines.kafka.kafka_io import create_topics  # noqa: E402
from pipelines.kafka.local_broker import LocalBroker  # noqa: E402


def scorer_args(bootstrap: str, registry: Path, name: str) -> list[str]:
    return ["--model-registry", str(registry), "--bootstrap-servers", bootstrap, "--in-topic", f"{name}-in",
            "--out-topic", f"{name}-out", "--dlq-topic", f"{name}-dlq", "--group", name, "--device", "cpu",
            "--max-wait-ms", "20", "--session-timeout-ms", "6000"]


def run(args: argparse.Namespace, work: Path, broker: LocalBroker) -> dict:
    scorers: list[ScorerProcess] = []
    try:
        model_dir = build_model(work, args)
        registry = ModelRegistry(work / "registry")
        publish(model_dir, registry.root)
        name = f"group-{uuid.uuid4().hex[:6]}"
        create_topics(broker.bootstrap, [f"{name}-in"], partitions=args.partitions)
        create_topics(broker.bootstrap, [f"{name}-out", f"{name}-dlq"])
        command = scorer_args(broker.bootstrap, registry.root, name)
        scorers = [ScorerProcess(command), ScorerProcess(command)]
        for scorer in scorers:
            scorer.wait_for("event=connected", timeout_s=300)
        messages = unique_messages(ecg_beats(), "binary", 0, args.windows)
        sender = threading.Thread(target=send_all, args=(broker.bootstrap, f"{name}-in", messages, args.rate))
        started = time.monotonic()
        sender.start()
        events = []
        time.sleep(args.windows / args.rate * 0.25)
        scorers[0].kill()
        events.append({"fault": "scorer 0 SIGKILL", "at_s": round(time.monotonic() - started, 1)})
        time.sleep(args.windows / args.rate * 0.15)
        scorers[0] = ScorerProcess(command)
        events.append({"fault": "scorer 0 restarted", "at_s": round(time.monotonic() - started, 1)})
        time.sleep(args.windows / args.rate * 0.15)
        publish(model_dir, registry.root)  # version 2: both scorers reload it before their next batch
        time.sleep(0.05)
        scorers[1].kill()
        events.append({"fault": "version 2 published, scorer 1 SIGKILL 50 ms later",
                       "at_s": round(time.monotonic() - started, 1)})
        time.sleep(2.0)
        scorers[1] = ScorerProcess(command)
        sender.join()
        scores = read_scores(broker.bootstrap, f"{name}-out", {m.id for m in messages}, timeout_s=args.drain_timeout_s)
        alive = [s.process.poll() is None for s in scorers]
        loaded = [line for s in scorers for line in s.lines if "event=model_loaded" in line]
        on_onnx = bool(loaded) and all("onnxruntime" in line for line in loaded)
    finally:
        for scorer in scorers:
            if scorer.process.poll() is None:
                scorer.terminate(timeout_s=60)
    counts = Counter(s["id"] for s in scores)
    versions = Counter(str(s["model_version"]) for s in scores)
    sent = [m.id for m in messages]
    return {
        "windows": len(sent), "partitions": args.partitions, "rate": args.rate, "events": events,
        "missing": sum(1 for i in sent if counts[i] == 0), "scored_twice_or_more": sum(1 for i in sent if counts[i] > 1),
        "unexpected_ids": len(set(counts) - set(sent)), "scores_by_version": dict(versions),
        "scorers_alive_at_end": alive, "served_on_onnxruntime": on_onnx, "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=6000)
    parser.add_argument("--rate", type=float, default=100.0, help="windows per second")
    parser.add_argument("--partitions", type=int, default=8)
    add_live_options(parser, "group_faults.json", drain_timeout_s=300.0)
    return run_live(parser.parse_args(), "group", run, passed, summary)


def passed(results: dict) -> bool:
    return results["missing"] == 0 and results["unexpected_ids"] == 0 and all(results["scorers_alive_at_end"])


def summary(results: dict) -> str:
    return (f"{results['missing']} of {results['windows']} windows without a score, "
            f"{results['scored_twice_or_more']} scored twice; versions {results['scores_by_version']}")


if __name__ == "__main__":
    sys.exit(main())
