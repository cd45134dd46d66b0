"""`agad-stream demo`: the whole product in one command, on real MIT-BIH ECG.

1. Uses the Kafka broker at --bootstrap-servers, or starts the local one
   (scripts/kafka-local.sh) when none answers, and stops it at the end.
2. Trains a small AGAD model on the normal beats of some records (PVC detection:
   'V' beats are the anomalies) and publishes it to a model registry.
3. Starts `agad-stream score` on that registry in a subprocess.
4. Replays held-out records (never seen in training) into the input topic, with their
   true labels, while a live summary follows the scores topic.
5. The learning loop (skipped with --no-learning-loop): a reviewer confirms PVCs and false
   alarms of training records (--confirm-records) on a labels topic, `agad-stream retrain
   --once` fine-tunes a candidate behind the promotion gate, and the held-out records are
   replayed again; the scorer hot-swaps to the promoted version.
6. Stops the scorer cleanly (SIGTERM) and prints recall and FPR at the scorer's threshold,
   AUROC and the model version of each pass.

With --console, the scorer also publishes flagged windows to a review topic and the review
console (`agad-stream console`) serves them on http://127.0.0.1:8765/ until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from agad_stream import ModelRegistry
from modalities import Modality, Windows, get_modality
from pipelines.console.command import DEFAULT_PORT, start_console_process
from pipelines.demo import loop_step
from pipelines.learning.reference import load_reference, save_reference
from pipelines.offline.model_dir import save_model_dir
from pipelines.streaming.monitor import follow, format_snapshot, open_scores
from pipelines.streaming.replay import send_messages, window_messages
from pipelines.streaming.serving import ENGINES
from pipelines.kafka.kafka_io import broker_answers, create_topics, make_producer, quiet_kafka_logging

if TYPE_CHECKING:
    from agad_stream import AGAD

REPO = Path(__file__).resolve().parents[2]
#: MIT-BIH records with PVC annotations: bundled with the repo, else the shared data folder next to it
DATA_CANDIDATES = (REPO / "data" / "mitdb-mlii-pvc", REPO.parent / "shared" / "data" / "mitdb-mlii-pvc")
KAFKA_SCRIPT = REPO / "scripts" / "kafka-local.sh"
#: MLII records with few PVCs for training; PVC-rich ones held out for the replay
TRAIN_RECORDS = "100,105,108,116,121,123"
REPLAY_RECORDS = "119,200"
SCORER_READY_TIMEOUT_S = 120.0


def ensure_broker(bootstrap_servers: str) -> bool:
    """True if this call started the local broker (so the demo must stop it)."""
    if broker_answers(bootstrap_servers):
        return False
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"no Kafka broker answers at {bootstrap_servers}; start it, or use a local address")
    print(f"no broker at {bootstrap_servers}: starting the local one ({KAFKA_SCRIPT.name} start)", flush=True)
    done = subprocess.run(["bash", str(KAFKA_SCRIPT), "start"], env={**os.environ, "KAFKA_PORT": port})
    if done.returncode != 0:
        raise RuntimeError(f"{KAFKA_SCRIPT} start failed (exit {done.returncode})")
    return True


def stop_broker(bootstrap_servers: str) -> None:
    port = bootstrap_servers.split(",")[0].rpartition(":")[2]
    subprocess.run(["bash", str(KAFKA_SCRIPT), "stop"], env={**os.environ, "KAFKA_PORT": port})


def find_data(given: str | None) -> Path:
    candidates = [Path(given)] if given else list(DATA_CANDIDATES)
    for path in candidates:
        if path.is_dir() and any(path.glob("*.hea")):
            return path
    raise FileNotFoundError(
        f"MIT-BIH records not found in {', '.join(map(str, candidates))}: pass --data DIR, a directory of "
        f"WFDB records with '.pvc' annotations (such as ../shared/data/mitdb-mlii-pvc)"
    )


def train_first_version(modality: Modality, data: Path, registry: ModelRegistry, args: argparse.Namespace) -> AGAD:
    """Store the training records' normal beats as the registry's reference windows (retraining
    keeps training on them) and train on their training share."""
    windows = modality.load(data, records=args.train_records.split(","))
    normals = windows.X[windows.y == 0]
    modality.fit_quality(normals)
    save_reference(registry, normals[np.random.default_rng(0).permutation(len(normals))[: args.max_train_windows]])
    normals = load_reference(registry)[0]
    print(f"training on {len(normals)} normal beats of records {args.train_records} "
          f"({args.epochs} epochs, channels {args.channels})", flush=True)
    from agad_stream import AGAD

    channels = tuple(int(c) for c in args.channels.split(","))
    model = AGAD(channels=channels, latent_dim=32, epochs=args.epochs, batch_size=128, random_state=args.seed,
                 device=args.device, verbose=True)
    return model.fit(modality.prepare(normals))


def start_scorer(registry: Path, topics: dict[str, str], args: argparse.Namespace, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "pipelines.cli", "score", "--model-registry", str(registry),
        "--bootstrap-servers", args.bootstrap_servers, "--in-topic", topics["in"], "--out-topic", topics["out"],
        "--dlq-topic", topics["dlq"], "--group", topics["group"], "--device", args.device, "--engine", args.engine,
        "--metrics-port", str(args.metrics_port), "--torch-threads", str(args.torch_threads),
        *(["--review-topic", topics["review"]] if "review" in topics else []),
    ]
    with open(log_path, "w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def wait_until_assigned(scorer: subprocess.Popen, log_path: Path, topic: str) -> None:
    """The scorer joined its group and owns partitions (so replay latencies are not startup time)."""
    deadline = time.monotonic() + SCORER_READY_TIMEOUT_S
    while f"event=partitions_assigned partitions={topic}" not in log_path.read_text():
        if scorer.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the scorer did not start; its log ({log_path}):\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


def stop_scorer(scorer: subprocess.Popen) -> None:
    if scorer.poll() is None:
        scorer.send_signal(signal.SIGTERM)
        try:
            scorer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            scorer.kill()
            scorer.wait()


def replay_in_background(windows: Windows, topic: str, args: argparse.Namespace) -> threading.Thread:
    def replay() -> None:
        producer = make_producer(args.bootstrap_servers)
        try:
            send_messages(producer, topic, window_messages(windows, args.encoding), rate=args.rate, total=len(windows))
        finally:
            producer.close()

    thread = threading.Thread(target=replay, name="replay", daemon=True)
    thread.start()
    return thread


def stop_when_exited(process: subprocess.Popen, stop: threading.Event) -> None:
    process.wait()
    stop.set()


def watch_scores(windows: Windows, topics: dict[str, str], scorer: subprocess.Popen,
                 args: argparse.Namespace) -> dict:
    """Replay the windows and follow their scores (only those of this pass) until each one is
    scored (or the scorer dies); the summary has recall and FPR at the scorer's threshold."""
    consumer = open_scores(args.bootstrap_servers, topics["out"], from_beginning=False)
    for partition in consumer.assignment():
        consumer.position(partition)  # fix the start at the current end before the replay begins
    stop = threading.Event()
    threading.Thread(target=stop_when_exited, args=(scorer, stop), daemon=True).start()
    try:
        replay = replay_in_background(windows, topics["in"], args)
        final = follow(consumer, loop_step.PassSummary(), expect=len(windows), idle_timeout_s=args.idle_timeout,
                       interval_s=2.0, report=lambda s: tqdm.write("  live: " + format_snapshot(s)), stop=stop)
        replay.join()
    finally:
        consumer.close()
    return final


def learning_loop(model: AGAD, modality: Modality, data: Path, registry: ModelRegistry, topics: dict[str, str],
                  args: argparse.Namespace, work: Path) -> dict:
    """Confirm PVCs and false alarms of the --confirm-records, then one `retrain --once`
    (fine-tuning with the first version's budget, --epochs); returns the gate's decision."""
    records = args.confirm_records or args.train_records
    windows = modality.load(data, records=records.split(","))
    counts = loop_step.confirm(model, modality, windows, args.confirmations, registry.current_version(),
                               args.bootstrap_servers, topics["labels"], seed=args.seed)
    print(f"\nlearning loop: a reviewer confirmed {counts['anomalies']} PVCs and {counts['false_alarms']} false alarms "
          f"of records {records} on {topics['labels']}; retraining once "
          f"(fine-tune, {args.epochs} epoch(s))", flush=True)
    started = time.monotonic()
    decision = loop_step.retrain(registry.root, args.bootstrap_servers, topics["labels"], f"{topics['group']}-retrain",
                                 args.epochs, args.torch_threads, args.seed, work / "retrain.log", REPO)
    seconds = time.monotonic() - started
    print(f"retrain --once took {seconds:.0f} s: {loop_step.format_decision(decision)}")
    print(f"replaying records {args.replay_records} again; the registry's current version is "
          f"{registry.current_version()}", flush=True)
    return {"confirmed": counts, "retrain_seconds": round(seconds, 1), **decision}


def run_demo(args: argparse.Namespace, data: Path) -> int:
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    registry = ModelRegistry(work / "registry")
    shutil.rmtree(registry.root, ignore_errors=True)  # every demo starts from version 1
    modality = get_modality("ecg", ann="pvc")
    started = time.monotonic()
    model = train_first_version(modality, data, registry, args)
    from agad_stream.onnx_export import export_checkpoint

    model_dir = save_model_dir(work / "model", model, modality)
    export_checkpoint(model_dir, model)  # as `publish` does: the scorer serves it on ONNX Runtime, without torch
    version = registry.publish(model_dir)
    print(f"model trained in {time.monotonic() - started:.0f} s, published as version {version} of {registry.root}")

    run_id = uuid.uuid4().hex[:8]
    topics = {"in": f"agad-demo-{run_id}-windows", "out": f"agad-demo-{run_id}-scores",
              "dlq": f"agad-demo-{run_id}-dead-letters", "group": f"agad-demo-{run_id}"}
    if args.console or args.learning_loop:
        topics["labels"] = f"agad-demo-{run_id}-labels"
    if args.console:
        topics["review"] = f"agad-demo-{run_id}-review"
    create_topics(args.bootstrap_servers, [t for k, t in topics.items() if k != "group"], partitions=args.partitions)
    replay = modality.load(data, records=args.replay_records.split(","))
    log_path = work / "scorer.log"
    scorer = start_scorer(registry.root, topics, args, log_path)
    console = None
    passes, decision = {}, None
    try:
        wait_until_assigned(scorer, log_path, topics["in"])
        if args.console:
            console, token = start_console_process(registry.root, topics, args.bootstrap_servers, args.console_port,
                                                   args.metrics_port, work / "console.log")
            print(f"review console: http://127.0.0.1:{args.console_port}/  (log in with the token {token})", flush=True)
        print(f"scorer running (log: {log_path}); replaying {len(replay)} beats of records {args.replay_records} "
              f"({int(replay.y.sum())} PVCs) {f'at {args.rate:g}/s' if args.rate else 'as fast as possible'} "
              f"into {topics['in']}", flush=True)
        passes["before"] = watch_scores(replay, topics, scorer, args)
        if args.learning_loop and passes["before"]["scored"] == len(replay):
            decision = learning_loop(model, modality, data, registry, topics, args, work)
            passes["after"] = watch_scores(replay, topics, scorer, args)
        if console is not None:
            print("\nreview the alarms in the console; Ctrl-C stops the demo", flush=True)
            try:
                console.wait()
            except KeyboardInterrupt:
                pass
    finally:
        stop_scorer(scorer)
        if console is not None:
            stop_scorer(console)
    if args.result:
        loop_step.write_result(Path(args.result), args, passes, decision, time.monotonic() - started)
    return report(passes, len(replay), args.replay_records, log_path)


def report(passes: dict[str, dict], expected: int, records: str, log_path: Path) -> int:
    """Print each pass's figures on the held-out records; 1 if a pass missed scores."""
    print()
    for name, final in passes.items():
        print(f"final ({name}): {format_snapshot(final)}")
    missed = [name for name, final in passes.items() if final["scored"] < expected]
    if missed:
        print(f"pass {', '.join(missed)}: not all {expected} windows were scored; see {log_path}", file=sys.stderr)
        return 1
    print(f"held-out records {records}, at the scorer's threshold:")
    for name, final in passes.items():
        print("  " + loop_step.format_pass(name, final))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="train, serve and replay MIT-BIH ECG through Kafka; prints the live AUROC",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    p.add_argument("--data", help="MIT-BIH records with .pvc annotations (default: the first of "
                                  + ", ".join(str(c) for c in DATA_CANDIDATES) + " that exists)")
    p.add_argument("--train-records", default=TRAIN_RECORDS, help="records whose normal beats train the model")
    p.add_argument("--replay-records", default=REPLAY_RECORDS, help="held-out records replayed through Kafka")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--channels", default="32,64,128", help="conv widths (small, so training takes under a minute)")
    p.add_argument("--max-train-windows", type=int, default=6000, help="normal beats drawn for training")
    p.add_argument("--rate", type=float, default=500.0, help="replay rate, windows per second")
    p.add_argument("--encoding", choices=("json", "binary"), default="binary")
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="the scorer's engine (default auto: ONNX Runtime on a CPU, torch on a GPU)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the first version's training, the reviewer's picks and the retrain (default 0)")
    p.add_argument("--result", metavar="FILE.json",
                   help="also write each pass's figures and the gate's decision here (benchmarks/bench_demo.py)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="CPU threads for training and scoring (default 1, the fastest on a busy 2-core machine)")
    p.add_argument("--metrics-port", type=int, default=0, help="scorer's Prometheus port (0 = off)")
    p.add_argument("--idle-timeout", type=float, default=60.0, help="give up after this many seconds without a score")
    p.add_argument("--work-dir", default=str(REPO / ".work" / "demo"),
                   help="model, registry (replaced by each run) and logs")
    p.add_argument("--no-learning-loop", dest="learning_loop", action="store_false",
                   help="stop after the first pass: no confirmations, no retrain, no second pass")
    p.add_argument("--confirm-records",
                   help="records whose PVCs and false alarms a reviewer confirms (default: the training records)")
    p.add_argument("--confirmations", type=int, default=70, help="at most this many PVCs, and false alarms, confirmed")
    p.add_argument("--console", action="store_true",
                   help="also publish flagged windows to a review topic and serve the review console until Ctrl-C")
    p.add_argument("--console-port", type=int, default=DEFAULT_PORT, help=f"console port (default {DEFAULT_PORT})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    quiet_kafka_logging()
    torch.set_num_threads(args.torch_threads)
    data = find_data(args.data)
    started_broker = ensure_broker(args.bootstrap_servers)
    try:
        return run_demo(args, data)
    finally:
        if started_broker:
            stop_broker(args.bootstrap_servers)
