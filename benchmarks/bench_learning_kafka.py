"""The learning loop live, through the Kafka broker at --bootstrap-servers:

1. scorer throughput while `agad-stream retrain` trains a candidate, as a ratio to the
   idle throughput of the same scorer setup in the same run (target >= 0.5 on 2 cores);
2. time from the last confirmation to the scorer serving the new version (`retrain --once`
   started right after the confirmations are acknowledged, as a cron job would; the gate is
   opened wide here, since this measures the pipeline, not the gate).

Model: the demo's architecture trained on normal beats of the demo's training records;
scored windows: records 119 and 200 in the binary encoding, repeated.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from kafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, write_results  # noqa: E402

from agad_stream import AGAD, ModelRegistry  # noqa: E402
from modalities import get_modality  # noqa: E402
from pipelines.learning.labels import encode_confirmation  # noqa: E402
from pipelines.learning.reference import save_reference  # noqa: E402
from pipelines.offline.model_dir import save_model_dir  # noqa: E402
from pipelines.streaming.replay import Message, window_messages  # noqa: E402
from pipelines.kafka.kafka_io import create_topics, make_consumer, make_producer  # noqa: E402

TRAIN_RECORDS = ["100", "105", "108", "116", "121", "123"]
TEST_RECORDS = ["119", "200"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    p.add_argument("--data", type=Path, default=REPO / "data" / "mitdb-mlii-pvc")
    p.add_argument("--windows", type=int, default=20000, help="windows scored per throughput phase")
    p.add_argument("--retrain-epochs", type=int, default=30, help="long enough to overlap the whole busy phase")
    p.add_argument("--serve-epochs", type=int, default=1, help="budget of the retrain whose serving time is measured")
    p.add_argument("--out")
    return p.parse_args()


def send(bootstrap: str, topic: str, messages) -> float:
    """Send and wait for acknowledgement; returns the time it was complete."""
    producer = make_producer(bootstrap)
    for m in messages:
        producer.send(topic, key=m.key, value=m.value, headers=m.headers)
    producer.flush()
    producer.close()
    return time.time()


def output_records(bootstrap: str, topic: str, count: int, timeout_s: float = 600.0) -> list:
    consumer = make_consumer(bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    records, deadline = [], time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    consumer.close()
    if len(records) < count:
        raise RuntimeError(f"only {len(records)} of {count} scores arrived on {topic}")
    return records


def confirmation_messages(windows: list) -> list[Message]:
    return [Message(i, b"bench", encode_confirmation(i, 1, x, "benchmark"), []) for i, x in windows]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", *args]


def scorer(registry: Path, bootstrap: str, name: str) -> subprocess.Popen:
    return subprocess.Popen(cli("score", "--model-registry", str(registry), "--bootstrap-servers", bootstrap,
                                "--in-topic", f"{name}-in", "--out-topic", f"{name}-out", "--dlq-topic", f"{name}-dlq",
                                "--group", f"{name}-group", "--device", "cpu", "--torch-threads", "1"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def throughput(registry: Path, bootstrap: str, name: str, batch: list) -> float:
    """Windows per second of a scorer over a pre-filled topic (first to last score, startup excluded)."""
    send(bootstrap, f"{name}-in", batch)
    process = scorer(registry, bootstrap, name)
    try:
        records = output_records(bootstrap, f"{name}-out", len(batch))
    finally:
        process.terminate()
        process.wait(60)
    stamps = sorted(r.timestamp for r in records)
    return len(records) / max((stamps[-1] - stamps[0]) / 1000, 1e-3)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    run = f"bench-learning-{uuid.uuid4().hex[:8]}"
    modality = get_modality("ecg", ann="pvc")
    train = modality.load(args.data, records=TRAIN_RECORDS)
    test = modality.load(args.data, records=TEST_RECORDS)
    normals = train.X[train.y == 0][np.random.default_rng(0).permutation(int((train.y == 0).sum()))[:3000]]
    repeat = -(-args.windows // len(test.X))
    batch = list(window_messages(test, "binary", repeat))[: args.windows]
    names = {phase: f"{run}-{phase}" for phase in ("idle", "busy", "idle-again", "serve")}
    create_topics(args.bootstrap_servers, [f"{n}-{t}" for n in names.values() for t in ("in", "out", "dlq")]
                  + [f"{run}-labels", f"{run}-labels-dead"])
    pvcs = np.flatnonzero(train.y == 1)[:60]
    confirmations = [(f"{train.source[i]}:{train.position[i]}", train.X[i]) for i in pvcs]
    with tempfile.TemporaryDirectory(prefix="bench-learning-kafka-") as tmp:
        registry = ModelRegistry(Path(tmp) / "registry")
        save_reference(registry, normals)
        model = AGAD(channels=(32, 64, 128), latent_dim=32, epochs=1, batch_size=128, random_state=0, device="cpu",
                     verbose=False).fit(modality.prepare(normals))
        registry.publish(save_model_dir(Path(tmp) / "v1", model, modality))
        retrain_args = ["--model-registry", str(registry.root), "--bootstrap-servers", args.bootstrap_servers,
                        "--labels-topic", f"{run}-labels", "--once", "--min-new", "1", "--init", "scratch"]

        idle = throughput(registry.root, args.bootstrap_servers, names["idle"], batch)
        print(f"idle scorer: {idle:.0f} windows/s", flush=True)
        send(args.bootstrap_servers, f"{run}-labels", confirmation_messages(confirmations))
        job = subprocess.Popen(cli("retrain", *retrain_args, "--epochs", str(args.retrain_epochs),
                                   "--max-auroc-drop", "1", "--max-fpr-increase", "1", "--max-recall-drop", "1",
                                   "--min-validation-normals", "0"),
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(5)  # past ingest, into training
        busy = throughput(registry.root, args.bootstrap_servers, names["busy"], batch)
        overlapped = job.poll() is None
        print(f"scorer while retraining: {busy:.0f} windows/s (retrain still training at the end: {overlapped})",
              flush=True)
        job.kill()  # the candidate is not needed; a killed retrain leaves the registry as it was
        job.wait()
        idle_again = throughput(registry.root, args.bootstrap_servers, names["idle-again"], batch)
        idle_mean = (idle + idle_again) / 2  # idle before and after: other load on the machine drifts
        print(f"idle scorer again: {idle_again:.0f} windows/s; ratio to the mean idle: {busy / idle_mean:.2f}", flush=True)

        stream = scorer(registry.root, args.bootstrap_servers, names["serve"])
        feeder_stop = threading.Event()

        def feed() -> None:
            producer = make_producer(args.bootstrap_servers)
            n = 0
            while not feeder_stop.is_set():
                m = batch[n % len(batch)]
                producer.send(f"{names['serve']}-in", key=m.key, value=m.value, headers=m.headers)
                n += 1
                time.sleep(0.005)
            producer.flush()
            producer.close()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        output_records(args.bootstrap_servers, f"{names['serve']}-out", 1)  # the scorer is up, serving version 2
        new_ids = [(f"serve-{i}", x) for i, x in confirmations]
        confirmed_at = send(args.bootstrap_servers, f"{run}-labels", confirmation_messages(new_ids))
        retrain_started = time.time()
        subprocess.run(cli("retrain", *retrain_args, "--epochs", str(args.serve_epochs), "--max-auroc-drop", "1",
                           "--max-fpr-increase", "1", "--max-recall-drop", "1", "--min-validation-normals", "0"),
                       cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        retrain_s = time.time() - retrain_started
        new_version = registry.current_version()
        served_at = None
        consumer = make_consumer(args.bootstrap_servers, f"{names['serve']}-out", group_id=None,
                                 auto_offset_reset="earliest")
        deadline = time.monotonic() + 120
        while served_at is None and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    if json.loads(r.value)["model_version"] == new_version and served_at is None:
                        served_at = r.timestamp / 1000
        consumer.close()
        feeder_stop.set()
        feeder.join()
        stream.terminate()
        stream.wait(60)
    to_serve = served_at - confirmed_at
    print(f"last confirmation -> new version {new_version} served: {to_serve:.1f} s "
          f"(of which the retrain --once job, {args.serve_epochs} epoch(s), took {retrain_s:.1f} s)")
    write_results(args, {"idle_windows_per_s": [round(idle, 1), round(idle_again, 1)],
                         "busy_windows_per_s": round(busy, 1), "ratio": round(busy / idle_mean, 3), "retrain_overlapped_whole_phase": overlapped,
                         "confirmation_to_serving_s": round(to_serve, 2), "retrain_once_s": round(retrain_s, 2)})


if __name__ == "__main__":
    main()
