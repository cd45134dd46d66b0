"""Fault-injection suite (issue 10): replay windows with known ids through `agad-stream score`
on a private broker while the scorer is SIGKILLed, the broker restarted, the input topic
deleted and recreated, and the retrain job SIGKILLed; then read the scores topic from its
start and count what was lost or scored twice.

    python benchmarks/bench_faults.py [--windows 50000] [--rate 150] [--scorer-kills 3]
        [--broker-restarts 1] [--topic-recreates 1] [--retrain-kills 1] [--engine auto|onnx|torch]
        [--dynamic-membership] [--out FILE]

The model is published first (which exports generator.onnx), and the scorer serves it on
--engine (default auto: ONNX Runtime on the CPU). The scorer is a static group member
(its default --group-instance-id), so each one restarted after a SIGKILL takes the
partition straight back; --dynamic-membership turns that off, for comparison.

Timeline: the first fifth of the windows is loaded before the scorer starts, and the first
kill lands while it drains that backlog; the rest is replayed at --rate while the other faults
follow one another in random order (seed --seed), each 3-8 s after the scorer recovered from
the last. The topic is deleted only once the scorer has caught up: windows still unread in a
deleted topic are gone by design, not lost by the scorer. The retrain job is killed after the
replay, 1-5 s into training, and run again. The broker is a separate instance
(scripts/kafka-local.sh, own directory and free ports), never the shared one on 127.0.0.1:9092.

Reported: ids without a score (goal 0); ids scored twice, against the bound of one batch per
scorer kill or broker restart; per fault, the time to the first window scored after it (for
the broker: after it is back) and until scores are fresh again (a window sent after the fault
scored within 1 s); p50/p99 latency of the windows neither sent nor scored during those
outages; the scorer's time to first score and peak RSS; the registry after the retrain kill
(versions, current, every version loadable) and after the rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
from kafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_harness import add_live_options, run_live  # noqa: E402
from bench_kafka_throughput import OutputReader, build_model, ecg_beats, published, unique_messages  # noqa: E402

from agad_stream import ModelRegistry  # noqa: E402
from pipelines.streaming.command import PRESETS  # noqa: E402
from pipelines.learning.labels import encode_confirmation  # noqa: E402
from pipelines.learning.reference import save_reference  # noqa: E402
from pipelines.offline.model_dir import load_model_dir  # noqa: E402
from pipelines.streaming.replay import Message  # noqa: E402
from pipelines.streaming.serving import ENGINES  # noqa: E402
from pipelines.kafka.kafka_io import create_topics, make_admin, make_consumer, make_producer  # noqa: E402
from pipelines.kafka.local_broker import LocalBroker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: scores are "fresh" again once a window is scored within this long of being sent
FRESH_MS = 1000.0
BACKLOG_SHARE = 0.2


class Replayer(threading.Thread):
    """Sends the windows at `rate`, each until the broker acknowledges it (resent after a failure);
    `pause()` / `resume()` hold it between chunks."""

    def __init__(self, bootstrap: str, topic: str, messages: list[Message], rate: float):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.messages, self.rate = bootstrap, topic, messages, rate
        self.acked_at: dict[str, float] = {}
        self.attempts: dict[str, int] = {}
        self.sent = 0
        self._go = threading.Event()
        self._go.set()
        self._idle = threading.Event()

    def pause(self) -> None:
        self._go.clear()
        self._idle.wait()

    def resume(self) -> None:
        self._idle.clear()
        self._go.set()

    def run(self) -> None:
        producer, pending = None, list(self.messages)
        chunk = max(1, int(self.rate / 10)) if self.rate else 2000
        while pending:
            if not self._go.is_set():
                self._idle.set()
                self._go.wait()
            started = time.monotonic()
            batch, pending = pending[:chunk], pending[chunk:]
            try:
                producer = producer or make_producer(self.bootstrap, max_block_ms=5000, request_timeout_ms=5000,
                                                     delivery_timeout_ms=15000)
                failed = self._send(producer, batch)
            except Exception:  # the producer itself could not be made: no broker
                failed = batch
            if failed:
                pending = failed + pending
                if producer is not None:
                    producer.close(timeout=0)
                producer = None
                time.sleep(1.0)
            elif self.rate:
                time.sleep(max(0.0, len(batch) / self.rate - (time.monotonic() - started)))
        if producer is not None:
            producer.close()
        self._idle.set()

    def _send(self, producer, batch: list[Message]) -> list[Message]:
        futures = []
        for message in batch:
            self.attempts[message.id] = self.attempts.get(message.id, 0) + 1
            try:
                futures.append(producer.send(self.topic, key=message.key, value=message.value, headers=message.headers))
            except Exception:
                break
        try:
            producer.flush(timeout=20)
        except Exception:
            pass
        now = time.time()
        failed = [m for m, f in zip(batch, futures) if not f.succeeded()] + batch[len(futures):]
        for message, future in zip(batch, futures):
            if future.succeeded():
                self.acked_at.setdefault(message.id, now)
        self.sent = len(self.acked_at)
        return failed


class Scorers:
    """`agad-stream score` subprocesses, one at a time: start, SIGKILL, peak RSS, logs."""

    def __init__(self, command: list[str], work: Path):
        self.command, self.work = command, work
        self.process: subprocess.Popen | None = None
        self.started: list[float] = []
        self.peak_rss_mb = 0.0
        self._watch = threading.Thread(target=self._watch_rss, daemon=True)
        self._watch.start()

    def start(self) -> None:
        log = open(self.work / f"scorer-{len(self.started)}.log", "w")
        self.process = subprocess.Popen(self.command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(time.time())

    def kill(self) -> float:
        at = time.time()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return at

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)

    def served_on(self) -> list[str]:
        """The device each scorer life logged for its model ("cpu (onnxruntime)" on the onnx engine)."""
        devices = []
        for life in range(len(self.started)):
            loaded = [line for line in (self.work / f"scorer-{life}.log").read_text().splitlines()
                      if "event=model_loaded" in line]
            devices += [loaded[0].split("device=")[1].split(" window=")[0].strip('"')] if loaded else []
        return devices

    def _watch_rss(self) -> None:
        while True:
            process = self.process
            if process is not None and process.poll() is None:
                try:
                    status = Path(f"/proc/{process.pid}/status").read_text()
                    kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
                    self.peak_rss_mb = max(self.peak_rss_mb, kb / 1024)
                except (OSError, StopIteration):
                    pass
            time.sleep(0.5)


def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def recovery(reader: OutputReader, fault_at: float, replay: Replayer) -> dict:
    """Seconds from the fault to the next window scored after it, and to the first score of a
    window sent after the fault within FRESH_MS of its sending (None when the replay ended
    before such a window was sent)."""

    def new_scores():
        return ((t, m) for t, m in reader.arrivals if t > fault_at and scored_at(m) > fault_at)

    def fresh():
        return ((t, m) for t, m in new_scores()
                if replay.acked_at.get(m["id"], 0) > fault_at and m["latency_ms"] < FRESH_MS)

    def ended() -> bool:
        return not replay.is_alive() and set(replay.acked_at) <= {m["id"] for _, m in reader.arrivals}

    wait_until(lambda: next(fresh(), None) or ended(), 600, "scores after a fault")
    return {"next_score_s": _seconds_after(fault_at, new_scores()), "fresh_again_s": _seconds_after(fault_at, fresh())}


def scored_at(score: dict) -> float:
    return datetime.fromisoformat(score["scored_at"].replace("Z", "+00:00")).timestamp()


def _seconds_after(fault_at: float, arrivals) -> float | None:
    first = next(arrivals, None)
    return None if first is None else round(first[0] - fault_at, 2)


def recreate_topic(bootstrap: str, topic: str) -> None:
    admin = make_admin(bootstrap)
    try:
        admin.delete_topics([topic])
        wait_until(lambda: topic not in admin.list_topics(), 60, f"topic {topic} to be deleted")
    finally:
        admin.close()
    create_topics(bootstrap, [topic])


def read_scores(bootstrap: str, topic: str, expect_ids: set[str], timeout_s: float) -> list[dict]:
    """Every score message of `topic` from its start (until all `expect_ids` are seen, or the timeout)."""
    consumer = make_consumer(bootstrap, group_id=None, enable_auto_commit=False, max_poll_records=5000)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    scores, seen = [], set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    scores.append(json.loads(record.value))
                    seen.add(scores[-1]["id"])
            if expect_ids <= seen and all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
    finally:
        consumer.close()
    return scores


def outage_end(fault: dict, t0: float) -> float:
    """When scores were fresh again after `fault` (never, if the replay ended first)."""
    fresh = fault["fresh_again_s"]
    return float("inf") if fresh is None else t0 + fault["at_s"] + fault.get("down_s", 0.0) + fresh


# --------------------------------------------------------------------------- the retrain job
def retrain_kill(broker: LocalBroker, model_dir: Path, work: Path, rng: random.Random) -> dict:
    """SIGKILL `agad-stream retrain --once` at a random moment of its training, then check the
    registry and run it again to the end."""
    registry = ModelRegistry(work / "registry")
    registry.publish(model_dir)
    beats = ecg_beats()
    normal, pvc = beats.X[beats.y == 0], beats.X[beats.y == 1]
    save_reference(registry, normal[:100])
    labels = f"faults-labels-{uuid.uuid4().hex[:6]}"
    create_topics(broker.bootstrap, [labels, f"{labels}-dead"])
    producer = make_producer(broker.bootstrap)
    for n, window in enumerate(pvc[:30]):
        producer.send(labels, key=b"119", value=encode_confirmation(f"pvc-{n}", 1, window, "bench-faults", "119"))
    producer.close()
    command = [sys.executable, "-m", "pipelines.cli", "retrain", "--model-registry", str(registry.root),
               "--bootstrap-servers", broker.bootstrap, "--labels-topic", labels, "--once", "--min-new", "5",
               "--epochs", "60", "--nice", "0", "--max-auroc-drop", "1", "--max-fpr-increase", "1",
               "--max-recall-drop", "1", "--min-validation-anomalies", "1", "--min-validation-normals", "0"]
    log_path = work / "retrain-killed.log"
    with open(log_path, "w") as log:
        job = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: "event=labels_ingested" in log_path.read_text() or job.poll() is not None, 180,
                   "the retrain job to store the labels")
        time.sleep(rng.uniform(1.0, 5.0))  # somewhere in training (60 epochs of two candidates: tens of seconds)
        killed_while_running = job.poll() is None
        job.send_signal(signal.SIGKILL)
        job.wait()
    events = [line.split("event=")[1].split()[0] for line in log_path.read_text().splitlines() if "event=" in line]
    after_kill = {"versions": registry.versions(), "current": registry.current_version(),
                  "log_entries": len(registry.read_log()), "killed_while_running": killed_while_running,
                  "last_event_before_kill": events[-1] if events else None}
    loadable = []
    for version in registry.versions():
        load_model_dir(registry.path(version), device="cpu")  # raises if a version is broken
        loadable.append(version)
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    decisions = [entry["event"] for entry in registry.read_log()]
    return {"after_kill": after_kill, "loadable_versions": loadable, "rerun_exit": rerun.returncode,
            "after_rerun": {"versions": registry.versions(), "current": registry.current_version(),
                            "decisions": decisions}}


# --------------------------------------------------------------------------- the run
def run(args: argparse.Namespace, work: Path, broker: LocalBroker) -> dict:
    rng = random.Random(args.seed)
    scorers: Scorers | None = None
    try:
        model_dir = build_model(work, args)
        served_dir = published(model_dir, work / "serving")  # its own registry: retrain_kill makes another
        name = f"faults-{uuid.uuid4().hex[:6]}"
        topics = {"in": f"{name}-in", "out": f"{name}-out", "dlq": f"{name}-dlq"}
        create_topics(broker.bootstrap, list(topics.values()))
        windows = ecg_beats()
        messages = unique_messages(windows, "binary", 0, args.windows)
        backlog = int(len(messages) * BACKLOG_SHARE)
        reader = OutputReader(broker.bootstrap, topics["out"])
        scorers = Scorers([sys.executable, "-m", "pipelines.cli", "score", "--model", str(served_dir),
                           "--bootstrap-servers", broker.bootstrap, "--in-topic", topics["in"],
                           "--out-topic", topics["out"], "--dlq-topic", topics["dlq"], "--group", name,
                           "--device", args.device, "--preset", args.preset, "--session-timeout-ms", "6000",
                           "--engine", args.engine, *(["--group-instance-id", ""] if args.dynamic_membership else [])],
                          work)
        loader = Replayer(broker.bootstrap, topics["in"], messages[:backlog], rate=0)
        loader.run()
        live = Replayer(broker.bootstrap, topics["in"], messages[backlog:], rate=args.rate)
        sent_at = live.acked_at
        faults: list[dict] = []

        def record(fault: dict) -> None:
            faults.append(fault)
            print(f"  {fault}", flush=True)

        def kill_scorer(when: str) -> None:
            at = scorers.kill()
            scorers.start()
            record({"fault": "scorer SIGKILL", "when": when, "at_s": round(at - t0, 1),
                    "scored_before": len(reader.arrivals), **recovery(reader, at, live)})

        t0 = time.time()
        scorers.start()
        wait_until(lambda: reader.arrivals, 300, "the first score")
        startup_s = reader.arrivals[0][0] - t0
        live.start()
        if args.scorer_kills:  # the first one while the backlog drains
            drained = rng.uniform(0.2, 0.8) * backlog
            wait_until(lambda: len(reader.arrivals) >= drained, 300, "the backlog to drain")
            kill_scorer("backlog drain")
        plan = ["scorer"] * max(0, args.scorer_kills - 1) + ["broker"] * args.broker_restarts \
            + ["topic"] * args.topic_recreates
        rng.shuffle(plan)
        skipped = []
        for fault_kind in plan:
            time.sleep(rng.uniform(3.0, 8.0))  # steady traffic between two faults
            if not live.is_alive():
                skipped.append(fault_kind)
            elif fault_kind == "scorer":
                kill_scorer("steady rate")
            elif fault_kind == "broker":
                at = time.time()
                broker.stop()
                time.sleep(args.outage_s)
                broker.start()
                back = time.time()
                record({"fault": "broker stop/restart", "at_s": round(at - t0, 1), "down_s": round(back - at, 1),
                        "recovery_from": "broker back", **recovery(reader, back, live)})
            else:
                live.pause()
                wait_until(lambda: set(loader.acked_at) | set(sent_at) <= {m["id"] for _, m in reader.arrivals},
                           600, "the scorer to catch up before the topic is deleted")
                at = time.time()
                recreate_topic(broker.bootstrap, topics["in"])
                live.resume()
                record({"fault": "input topic deleted and recreated", "at_s": round(at - t0, 1),
                        **recovery(reader, at, live)})
        live.join()
        expected = set(loader.acked_at) | set(sent_at)
        wait_until(lambda: expected <= {m["id"] for _, m in reader.arrivals}, args.drain_timeout_s,
                   "every window to be scored")
        replay_s = time.time() - t0
        if scorers.stop() != 0:
            raise RuntimeError(f"the last scorer did not stop cleanly (logs in {work})")
        served_on = scorers.served_on()
        reader.close()
        scores = read_scores(broker.bootstrap, topics["out"], expected, timeout_s=120)
        retrain = retrain_kill(broker, model_dir, work, rng) if args.retrain_kills else None
    finally:
        if scorers is not None and scorers.process is not None and scorers.process.poll() is None:
            scorers.process.kill()

    counts: dict[str, int] = {}
    for score in scores:
        counts[score["id"]] = counts.get(score["id"], 0) + 1
    resent = {i for i, n in {**loader.attempts, **live.attempts}.items() if n > 1}
    duplicates = {i: n - 1 for i, n in counts.items() if n > 1}
    outages = [(f["at_s"] + t0, outage_end(f, t0)) for f in faults]
    steady = [s["latency_ms"] for s in scores if s["id"] in sent_at
              and not any(a <= sent_at[s["id"]] <= b or a <= scored_at(s) <= b for a, b in outages)]
    max_batch = PRESETS[args.preset]["max_batch"]
    bound = max_batch * (args.scorer_kills + args.broker_restarts)
    return {
        "windows": len(expected), "rate_per_s": args.rate, "preset": args.preset, "replay_s": round(replay_s, 1),
        "engine": args.engine, "membership": "dynamic" if args.dynamic_membership else "static",
        "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "missing": len(expected - set(counts)), "missing_examples": sorted(expected - set(counts))[:10],
        "unexpected_ids": len(set(counts) - expected),
        "duplicates": sum(n for i, n in duplicates.items() if i not in resent),
        "duplicates_of_resent_inputs": sum(n for i, n in duplicates.items() if i in resent),
        "duplicate_bound": bound, "max_batch": max_batch,
        "faults": faults, "skipped_faults": skipped,
        "latency_outside_outages_ms": {"windows": len(steady), **({
            "p50": round(float(np.percentile(steady, 50)), 1), "p99": round(float(np.percentile(steady, 99)), 1)}
            if steady else {})},
        "scorer": {"startup_to_first_score_s": round(startup_s, 2), "peak_rss_mb": round(scorers.peak_rss_mb, 1),
                   "served_on": sorted(set(served_on))},
        "retrain": retrain,
    }


def passed(results: dict) -> bool:
    return results["missing"] == 0 and results["duplicates"] <= results["duplicate_bound"] and not results["skipped_faults"]


def summary(results: dict) -> str:
    return (f"{results['missing']} of {results['windows']} ids without a score, "
            f"{results['duplicates']} duplicates (bound {results['duplicate_bound']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=150.0,
                        help="windows/s after the initial backlog; the replay must outlast the faults, which come "
                             "one after another, 3-8 s apart, each once the scorer has recovered from the last")
    parser.add_argument("--scorer-kills", type=int, default=3)
    parser.add_argument("--broker-restarts", type=int, default=1, choices=(0, 1))
    parser.add_argument("--topic-recreates", type=int, default=1, choices=(0, 1))
    parser.add_argument("--retrain-kills", type=int, default=1, choices=(0, 1))
    parser.add_argument("--outage-s", type=float, default=5.0, help="how long the broker stays down")
    parser.add_argument("--preset", choices=PRESETS, default="throughput")
    parser.add_argument("--engine", choices=ENGINES, default="auto",
                        help="the scorer's --engine (default auto: onnx on the CPU, torch on a GPU)")
    parser.add_argument("--dynamic-membership", action="store_true",
                        help="run the scorer as a dynamic group member (--group-instance-id ''): a restarted "
                             "scorer then waits for the dead one's session to expire and a rebalance")
    parser.add_argument("--seed", type=int, default=0)
    add_live_options(parser, "faults.json", device="auto")
    return run_live(parser.parse_args(), "faults", run, passed, summary)


if __name__ == "__main__":
    sys.exit(main())
