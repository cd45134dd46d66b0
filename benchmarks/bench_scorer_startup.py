"""Launch to first score, and peak RSS, of `agad-stream score` on each engine (onnx, torch).

    python benchmarks/bench_scorer_startup.py [--bootstrap-servers 127.0.0.1:9092] [--repeats 3] [--out FILE]

A model of the demo's architecture is trained for one epoch on real ECG beats
(tests/data/mitdb-pvc/119) and published with `agad-stream publish`, which exports
generator.onnx. Per run: fresh topics holding the beats, then the scorer is launched
under /usr/bin/time; the figure is the time from launch until its first score is read
back from the output topic, and the process's peak resident set size (VmHWM) once it has
scored all 256. Runs alternate
between the engines, and each line carries the load average at its start.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_kafka_throughput import (  # noqa: E402
    OutputReader, build_model, ecg_beats, published, send_all, unique_messages,
)
from pipelines.kafka.kafka_io import create_topics, quiet_kafka_logging  # noqa: E402

ENGINES = ("onnx", "torch")


def one_run(model_dir: Path, engine: str, args) -> dict:
    run = uuid.uuid4().hex[:8]
    topics = {"in": f"startup-{run}-in", "out": f"startup-{run}-out", "dlq": f"startup-{run}-dlq"}
    create_topics(args.bootstrap_servers, list(topics.values()))
    send_all(args.bootstrap_servers, topics["in"], unique_messages(ecg_beats(), "binary", 0, 256))
    reader = OutputReader(args.bootstrap_servers, topics["out"])
    load = os.getloadavg()[0]
    launched = time.time()
    scorer = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "score", "--model", str(model_dir), "--engine", engine,
         "--device", "cpu", "--bootstrap-servers", args.bootstrap_servers, "--in-topic", topics["in"],
         "--out-topic", topics["out"], "--dlq-topic", topics["dlq"], "--group", f"startup-{run}"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        reader.wait_for(1, timeout_s=180)
        first_score_s = reader.arrivals[0][0] - launched
        reader.wait_for(256, timeout_s=180)
        peak_kb = peak_rss_kb(scorer.pid)
    finally:
        scorer.send_signal(signal.SIGTERM)
        scorer.wait(60)
        reader.close()
    return {"engine": engine, "first_score_s": first_score_s, "peak_rss_mb": peak_kb / 1024, "load_average": load}


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident set size so far (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--channels", default="32,64,128", help="conv widths of the trained model (default: the demo's)")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="where the benchmark trains its model")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write every run and the medians to this JSON file")
    args = parser.parse_args()
    quiet_kafka_logging()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = published(build_model(work, args), work)
        runs = [one_run(model_dir, engine, args) for _ in range(args.repeats) for engine in ENGINES]
    for run in runs:
        print(f"{run['engine']:5s} first score {run['first_score_s']:5.2f} s after launch, peak RSS "
              f"{run['peak_rss_mb']:4.0f} MB (load average {run['load_average']:.1f})")
    medians = {}
    for engine in ENGINES:
        mine = [r for r in runs if r["engine"] == engine]
        medians[engine] = {"first_score_s": float(np.median([r["first_score_s"] for r in mine])),
                           "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in mine]))}
        print(f"{engine:5s} median: first score {medians[engine]['first_score_s']:.2f} s, peak RSS "
              f"{medians[engine]['peak_rss_mb']:.0f} MB")
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": runs, "median": medians, "cpus": os.cpu_count()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
