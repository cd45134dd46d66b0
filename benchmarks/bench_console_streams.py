"""The console under a flood of stream keys: the size and time of /api/state, and the console's RSS.

Writes one score message per stream key (KEY_CHARS characters each) to a fresh scores topic on
$KAFKA_BOOTSTRAP, starts `agad-stream console` on it, waits until every score is read, then times
/api/state (median of 5) and reads the console's VmRSS. The topics are deleted at the end.

    python benchmarks/bench_console_streams.py --streams 100000
    python benchmarks/bench_console_streams.py --streams 2000 --key-chars 100000
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.console.command import _answers  # noqa: E402
from pipelines.kafka.kafka_io import create_topics, make_admin, make_producer  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def get(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--key-chars", type=int, default=12)
    parser.add_argument("--port", type=int, default=8791)
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    args = parser.parse_args()
    name = f"bench-console-{uuid.uuid4().hex[:8]}"
    topics = [f"{name}-{part}" for part in ("scores", "review", "labels")]
    create_topics(args.bootstrap_servers, topics)
    token = secrets.token_urlsafe(18)
    console = None
    try:
        producer = make_producer(args.bootstrap_servers)
        for n in range(args.streams):
            key = f"{n:08d}".rjust(args.key_chars, "k")
            score = {"id": f"w{n}", "score": 1.0, "threshold": 2.0, "is_anomaly": False, "model_version": 1}
            producer.send(topics[0], key=key.encode(), value=json.dumps(score).encode())
        producer.flush(600)
        producer.close()
        command = [sys.executable, "-m", "pipelines.cli", "console", "--bootstrap-servers", args.bootstrap_servers,
                   "--scores-topic", topics[0], "--review-topic", topics[1], "--labels-topic", topics[2],
                   "--model-registry", str(REPO / ".work" / "no-registry"), "--port", str(args.port)]
        console = subprocess.Popen(command, cwd=REPO, env={**os.environ, "AGAD_CONSOLE_TOKEN": token},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{args.port}/api/state"
        started = time.monotonic()
        while not _answers(args.port):
            if console.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError("the console did not start")
            time.sleep(0.2)
        while json.loads(get(url, token))["seq"] < args.streams:
            time.sleep(1)
        read_s = time.monotonic() - started
        timings, size = [], 0
        for _ in range(5):
            t0 = time.perf_counter()
            size = len(get(url, token))
            timings.append(time.perf_counter() - t0)
        state = json.loads(get(url, token))
        print(json.dumps({"streams_sent": args.streams, "key_chars": args.key_chars,
                          "streams_total": state.get("streams_total", len(state["streams"])),
                          "rows_in_state": len(state["streams"]), "state_bytes": size,
                          "state_median_s": round(statistics.median(timings), 4),
                          "console_rss_mb": round(rss_mb(console.pid), 1), "start_to_all_read_s": round(read_s, 1)}))
    finally:
        if console is not None:
            console.terminate()
            console.wait(30)
        admin = make_admin(args.bootstrap_servers)
        try:
            admin.delete_topics(topics)
        finally:
            admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
