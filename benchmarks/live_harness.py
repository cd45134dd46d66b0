"""What the live benchmarks share (bench_faults, bench_fuzz_live, bench_group_faults): the
options of the model trained for the run, a private broker in a fresh work folder, and the
ending: the result file, PASS or FAIL, and the work folder kept only when something went wrong.

Each benchmark's own part is `run(args, work, broker) -> results` and `passed(results)`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.kafka.kafka_io import quiet_kafka_logging  # noqa: E402
from pipelines.kafka.local_broker import LocalBroker  # noqa: E402


def add_live_options(parser: argparse.ArgumentParser, out_name: str, device: str = "cpu",
                     drain_timeout_s: float = 600.0) -> None:
    """The model trained for the run, how long to wait for the scores, and where the result goes."""
    parser.add_argument("--device", default=device)
    parser.add_argument("--channels", default="8,16,32", help="widths of the model trained for the run")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--drain-timeout-s", type=float, default=drain_timeout_s)
    parser.add_argument("--keep-logs", action="store_true", help="keep the logs and broker data on a pass too")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / out_name))


def run_live(args: argparse.Namespace, name: str, run: Callable[[argparse.Namespace, Path, LocalBroker], dict],
             passed: Callable[[dict], bool], summary: Callable[[dict], str]) -> int:
    """Run `run` against a private broker (scripts/kafka-local.sh, own folder and free ports,
    never the shared one), write --out, print PASS or FAIL; exit status 0 on a pass."""
    quiet_kafka_logging()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # stop the broker on the way out
    work = Path(tempfile.mkdtemp(prefix=f"agad-{name}-"))
    broker = LocalBroker(work / "kafka")
    started = time.monotonic()
    print(f"private broker: {broker.start()}", flush=True)
    broker_start_s = time.monotonic() - started
    try:
        results = run(args, work, broker)
    finally:
        broker.stop()
    results["broker_start_s"] = round(broker_start_s, 1)
    ok = passed(results)
    if ok and not args.keep_logs:  # the logs and broker data matter only when something went wrong
        shutil.rmtree(work)
    else:
        results["logs"] = str(work)
    print(json.dumps(results, indent=2))
    Path(args.out).write_text(json.dumps({"args": vars(args), "passed": ok, "results": results}, indent=2) + "\n")
    print(f"{'PASS' if ok else 'FAIL'}: {summary(results)}" + ("" if ok else f"; logs in {work}"))
    return 0 if ok else 1
