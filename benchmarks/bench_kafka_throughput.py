"""Model-only scoring throughput versus end to end through Kafka, same model and batch size.

    python benchmarks/bench_kafka_throughput.py [--bootstrap-servers 127.0.0.1:9092] [--model DIR] [--engine onnx]

1. model only: the scorer's own scoring step (modality.prepare + AGAD score_and_residuals
   + top segments) on raw windows already in memory, in batches of --max-batch.
2. end to end, maximum rate: --windows messages are loaded into a fresh input topic
   first, then `agad-stream score` (a subprocess) drains it; throughput is measured at
   the output topic, from the first score to the last.
3. latency at about half that rate (or --latency-rate): windows replayed at 0.5 x the end-to-end rate to the
   running scorer; p50/p99 of the scorer's latency_ms (input timestamp -> score ready)
   and of the full trip (replay send -> score read back from the output topic).
4. profile: the scorer's time per loop stage, scraped from its Prometheus endpoint.
5. pass-through: the same load consumed, produced to an output topic and committed batch
   by batch with the scorer's client settings and no model: the Kafka client's own limit.
   End to end is reported against min(model only, pass-through), the slowest stage.

Windows are real ECG beats (tests/data/mitdb-pvc/119, repeated with new ids). Without
--model, a model (by default the demo's architecture; --channels 64,128,256
--latent-dim 100 is the paper's) is trained for one epoch on them: the weights do not
change the cost. The model is published into a temporary registry first (which exports
generator.onnx), and both the model-only step and the scorer run on --engine (default auto:
onnx on the CPU), so the two figures always come from the same engine. kafka-python
computes record CRC-32C in pure Python unless the `crc32c` package is installed; the
report says which one ran.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import torch
from kafka import TopicPartition
from kafka.record import util as kafka_record_util
from prometheus_client.parser import text_string_to_metric_families

from agad_stream import AGAD, ModelRegistry
from modalities import get_modality
from pipelines.streaming.command import PRESETS
from pipelines.offline.model_dir import save_model_dir
from pipelines.streaming.replay import window_messages
from pipelines.kafka import codec
from pipelines.kafka.kafka_io import create_topics, make_consumer, make_producer, quiet_kafka_logging
from pipelines.kafka.metrics import STAGES
from pipelines.streaming.serving import ENGINES, load_served_model

REPO = Path(__file__).resolve().parents[1]
ECG_SLICE = REPO / "tests" / "data" / "mitdb-pvc" / "119"
#: stages run by the scorer's scoring thread; the others run on its Kafka (main) thread
SCORING_THREAD_STAGES = ("decode", "prepare", "model", "explain", "encode")


def build_model(work: Path, args) -> Path:
    modality = get_modality("ecg", ann="pvc")
    windows = modality.load(ECG_SLICE)
    channels = tuple(int(c) for c in args.channels.split(","))
    model = AGAD(channels=channels, latent_dim=args.latent_dim, epochs=1, batch_size=64, verbose=False,
                 random_state=0, device=args.device).fit(modality.prepare(windows.X[windows.y == 0]))
    return save_model_dir(work / "model", model, modality)


def publish(model_dir: Path, registry: Path) -> None:
    """`agad-stream publish`: the next version of ``registry``, with generator.onnx for the onnx engine."""
    subprocess.run([sys.executable, "-m", "pipelines.cli", "publish", "--model", str(model_dir), "--model-registry",
                    str(registry)], cwd=REPO, check=True)


def published(model_dir: Path, work: Path) -> Path:
    """The version directory `agad-stream publish` makes of ``model_dir`` (with generator.onnx)."""
    publish(model_dir, work / "registry")
    return ModelRegistry(work / "registry").current_path()


def ecg_beats():
    return get_modality("ecg", ann="pvc").load(ECG_SLICE)


def unique_messages(windows, encoding: str, start: int, count: int) -> list:
    """Messages `start` to `start + count` of the beats repeated without end (each with its own id)."""
    return list(itertools.islice(window_messages(windows, encoding, repeat=sys.maxsize), start, start + count))


def model_only(model_dir: Path, raw: np.ndarray, batch: int, device: str, engine: str, threads: int,
               seconds: float = 8.0) -> dict:
    """Windows/s of the scorer's scoring step on in-memory windows, plus the pure forward pass."""
    served = load_served_model(model_dir, "bench", device, engine, threads)
    prepared = served.modality.prepare(raw)

    def rate(step) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 2:
            for i in range(0, len(raw), batch):
                step(i)
                done += len(raw[i:i + batch])
        return done / (time.perf_counter() - start)

    full = rate(lambda i: codec.top_segments(served.score(raw[i:i + batch])[1]))
    forward = rate(lambda i: served.model.score_samples(prepared[i:i + batch]))
    return {"scoring_step_per_s": full, "forward_only_per_s": forward, "device": str(served.model.device_)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_stages(port: int) -> dict[str, float]:
    """Seconds per loop stage so far, from the scorer's Prometheus endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    stages = dict.fromkeys(STAGES, 0.0)
    for family in text_string_to_metric_families(text):
        if family.name == "agad_scorer_stage_seconds":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    stages[sample.labels["stage"]] = sample.value
    return stages


def send_all(bootstrap: str, topic: str, messages: list, rate: float = 0.0, sent_at: dict | None = None) -> float:
    producer = make_producer(bootstrap)
    start = time.perf_counter()
    for n, m in enumerate(messages):
        if rate:
            time.sleep(max(0.0, start + n / rate - time.perf_counter()))
        if sent_at is not None:
            sent_at[m.id] = time.time()
        producer.send(topic, key=m.key, value=m.value, headers=m.headers)
    producer.flush()
    elapsed = time.perf_counter() - start
    producer.close()
    return len(messages) / elapsed


class OutputReader:
    """Reads the scores topic in a thread, timestamping each arrival."""

    def __init__(self, bootstrap: str, topic: str):
        self.consumer = make_consumer(bootstrap, group_id=None, enable_auto_commit=False, max_poll_records=5000,
                                      fetch_max_wait_ms=10)  # the read-back adds no wait to the round trip
        partitions = [TopicPartition(topic, p) for p in sorted(self.consumer.partitions_for_topic(topic))]
        self.consumer.assign(partitions)
        self.consumer.seek_to_end(*partitions)
        self.arrivals: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                now = time.time()
                self.arrivals.extend((now, json.loads(r.value)) for r in records)

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.arrivals) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.arrivals)} of {count} scores arrived in {timeout_s:.0f} s")
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self.thread.join()
        self.consumer.close()


def start_scorer(model_dir: Path, bootstrap: str, topics: dict, args, metrics_port: int, log_path: Path):
    command = [sys.executable, "-m", "pipelines.cli", "score", "--model", str(model_dir), "--engine", args.engine,
               "--bootstrap-servers", bootstrap, "--in-topic", topics["in"], "--out-topic", topics["out"],
               "--dlq-topic", topics["dlq"], "--group", topics["group"], "--preset", args.preset,
               "--max-batch", str(args.max_batch), "--device", args.device, "--metrics-port", str(metrics_port),
               "--torch-threads", str(args.torch_threads)]
    with open(log_path, "w") as log:
        return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def wait_for_metrics(port: int, scorer: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            scrape_stages(port)
            return
        except OSError:
            if scorer.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the scorer did not start") from None
            time.sleep(0.2)


def percentiles(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def end_to_end(model_dir: Path, args, work: Path) -> dict:
    windows = ecg_beats()
    load = unique_messages(windows, args.encoding, 0, args.windows)
    run = uuid.uuid4().hex[:8]
    topics = {"in": f"bench-{run}-in", "out": f"bench-{run}-out", "dlq": f"bench-{run}-dlq", "group": f"bench-{run}"}
    create_topics(args.bootstrap_servers, [topics["in"], topics["out"], topics["dlq"]])
    replay_rate = send_all(args.bootstrap_servers, topics["in"], load)
    reader = OutputReader(args.bootstrap_servers, topics["out"])
    port = free_port()
    scorer = start_scorer(model_dir, args.bootstrap_servers, topics, args, port, work / "scorer.log")
    try:
        wait_for_metrics(port, scorer)
        before = scrape_stages(port)
        reader.wait_for(len(load), timeout_s=600)
        after = scrape_stages(port)
        first, last = reader.arrivals[0][0], reader.arrivals[-1][0]
        throughput = (len(load) - 1) / (last - first)
        profile = {stage: after[stage] - before[stage] for stage in STAGES}

        rate = args.latency_rate or 0.5 * throughput
        live = unique_messages(windows, args.encoding, len(load), int(rate * args.latency_seconds))
        sent_at: dict[str, float] = {}
        send_all(args.bootstrap_servers, topics["in"], live, rate=rate, sent_at=sent_at)
        reader.wait_for(len(load) + len(live), timeout_s=120)
        latest = [(t, m) for t, m in reader.arrivals[len(load):] if m["id"] in sent_at]
        latency = {
            "rate_per_s": rate,
            "windows": len(live),
            "scorer_latency_ms": percentiles([m["latency_ms"] for _, m in latest]),
            "round_trip_ms": percentiles([(t - sent_at[m["id"]]) * 1000 for t, m in latest]),
        }
    finally:
        scorer.terminate()
        scorer.wait(60)
        reader.close()
    busy = sum(profile.values())
    return {"windows": len(load), "encoding": args.encoding, "replay_load_per_s": replay_rate,
            "throughput_per_s": throughput, "wall_s": last - first, "latency": latency,
            "profile_s": profile, "profile_share": {k: v / busy for k, v in profile.items()}}


def pass_through(args) -> float:
    """Windows/s of poll -> produce (acks=all) -> flush -> commit, with no model: the Kafka client's limit."""
    run = uuid.uuid4().hex[:8]
    source, sink = f"bench-{run}-pass-in", f"bench-{run}-pass-out"
    create_topics(args.bootstrap_servers, [source, sink])
    send_all(args.bootstrap_servers, source, unique_messages(ecg_beats(), args.encoding, 0, args.windows))
    knobs = PRESETS[args.preset]
    consumer = make_consumer(args.bootstrap_servers, group_id=f"bench-{run}-pass", enable_auto_commit=False,
                             auto_offset_reset="earliest", max_poll_records=args.max_batch,
                             fetch_max_wait_ms=knobs["fetch_max_wait_ms"], max_partition_fetch_bytes=4 * 1024 * 1024)
    producer = make_producer(args.bootstrap_servers, acks="all", linger_ms=knobs["linger_ms"])
    consumer.subscribe([source])
    done, started = 0, None
    try:
        while done < args.windows:
            batch = consumer.poll(timeout_ms=500, max_records=args.max_batch)
            records = [r for rs in batch.values() for r in rs]
            if not records:
                continue
            started = started or time.perf_counter()
            for record in records:
                producer.send(sink, key=record.key, value=record.value)
            producer.flush()
            consumer.commit()
            done += len(records)
        return done / (time.perf_counter() - started)
    finally:
        consumer.close()
        producer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--model", help="model directory (default: train --channels/--latent-dim for one epoch)")
    parser.add_argument("--channels", default="32,64,128", help="conv widths of the trained model (default: the demo's)")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--windows", type=int, default=20000)
    parser.add_argument("--max-batch", type=int, help="default: the preset's")
    parser.add_argument("--preset", choices=PRESETS, default="throughput", help="the scorer's --preset")
    parser.add_argument("--encoding", choices=("json", "binary"), default="binary")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--engine", choices=ENGINES, default="auto", help="the scorer's --engine, for both figures")
    parser.add_argument("--torch-threads", type=int, default=1, help="CPU inference threads, here and in the scorer")
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--latency-rate", type=float, default=0.0,
                        help="windows/s of the latency phase (default: half the measured end-to-end rate); a fixed "
                             "rate compares presets at the same load")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    args.max_batch = args.max_batch or PRESETS[args.preset]["max_batch"]
    quiet_kafka_logging()
    torch.set_num_threads(args.torch_threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = published(Path(args.model) if args.model else build_model(work, args), work)
        beats = ecg_beats().X
        raw = np.tile(beats, (max(1, 4096 // len(beats)), 1, 1))
        before = model_only(model_dir, raw, args.max_batch, args.device, args.engine, args.torch_threads)
        through_kafka = end_to_end(model_dir, args, work)
        after = model_only(model_dir, raw, args.max_batch, args.device, args.engine, args.torch_threads)
        client_limit = pass_through(args)
        figures = {
            "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                        "load_average": os.getloadavg()[0],
                        "crc32c": "C extension" if kafka_record_util.crc32c_c else "pure Python"},
            "model": args.model or f"AGAD channels {args.channels}, latent {args.latent_dim}",
            "max_batch": args.max_batch,
            "model_only": max(before, after, key=lambda m: m["scoring_step_per_s"]),
            "model_only_runs_per_s": [before["scoring_step_per_s"], after["scoring_step_per_s"]],
            "end_to_end": through_kafka,
            "pass_through_per_s": client_limit,
        }
    end_to_end_rate = figures["end_to_end"]["throughput_per_s"]
    figures["ratio_end_to_end_vs_model_only"] = end_to_end_rate / figures["model_only"]["scoring_step_per_s"]
    figures["ratio_end_to_end_vs_slowest_stage"] = end_to_end_rate / min(
        figures["model_only"]["scoring_step_per_s"], client_limit)
    print_report(figures)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    return 0


def print_report(f: dict) -> None:
    m, e = f["model_only"], f["end_to_end"]
    lat = e["latency"]
    print(f"machine: {f['machine']['cpus']} CPUs (load average {f['machine']['load_average']:.1f}), "
          f"torch threads {f['machine']['torch_threads']}, "
          f"device {m['device']}, kafka-python CRC-32C: {f['machine']['crc32c']}")
    print(f"model: {f['model']}; batch {f['max_batch']}")
    runs = ", ".join(f"{r:.0f}" for r in f["model_only_runs_per_s"])
    print(f"model only:  {m['scoring_step_per_s']:9.0f} windows/s (prepare + model + top segments; best of {runs} "
          f"measured before and after); forward pass alone {m['forward_only_per_s']:.0f}/s")
    print(f"end to end:  {e['throughput_per_s']:9.0f} windows/s through Kafka ({e['encoding']}, {e['windows']} windows, "
          f"input loaded at {e['replay_load_per_s']:.0f}/s)")
    print(f"pass-through: {f['pass_through_per_s']:8.0f} windows/s (consume, produce, commit; no model)")
    print(f"ratio:       {f['ratio_end_to_end_vs_model_only']:.2f} against model only, "
          f"{f['ratio_end_to_end_vs_slowest_stage']:.2f} against min(model only, pass-through)")
    print(f"latency at {lat['rate_per_s']:.0f}/s ({lat['windows']} windows): scorer p50 "
          f"{lat['scorer_latency_ms']['p50']:.1f} ms, p99 {lat['scorer_latency_ms']['p99']:.1f} ms; round trip p50 "
          f"{lat['round_trip_ms']['p50']:.1f} ms, p99 {lat['round_trip_ms']['p99']:.1f} ms")
    scoring = sum(e["profile_s"][s] for s in SCORING_THREAD_STAGES)
    kafka = sum(v for s, v in e["profile_s"].items() if s not in SCORING_THREAD_STAGES)
    print(f"scorer at the maximum rate: wall {e['wall_s']:.2f} s; scoring thread busy {scoring:.2f} s "
          f"(decode to encode), Kafka thread {kafka:.2f} s (poll, produce, commit); the two overlap")
    for stage in STAGES:
        per_window_us = e["profile_s"][stage] / e["windows"] * 1e6
        print(f"  {stage:8s} {e['profile_s'][stage]:7.2f} s  {100 * e['profile_share'][stage]:5.1f} %  "
              f"{per_window_us:7.1f} us/window")


if __name__ == "__main__":
    sys.exit(main())
