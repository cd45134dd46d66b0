"""The adaptive threshold state at the largest size its defaults allow: save and load
seconds, file bytes and the loading process's peak RSS (issue 19 medium 3: 10,000 streams x
1,000 scores were a 198 MB JSON file, 12.8 s and 1.17 GB to load, 18.1 s to save, all on
the scoring thread).

The state is filled directly (every stream with a full ring of `window` scores and a key of
--key-bytes): ten million apply() calls would take minutes and measure nothing more. Each
measurement runs in a fresh subprocess, so its peak RSS is its own. --compare-json also writes
and reads the same scores in the previous format (JSON lists of floats, format 1).

usage: nice -n 15 python benchmarks/bench_threshold_state.py [--streams 10000] [--key-bytes 256] [--compare-json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, markdown_table  # noqa: E402

from pipelines.streaming.thresholds import StreamThresholds, ThresholdConfig  # noqa: E402

GLOBAL_THRESHOLD = 10.0


def parse_args():
    defaults = ThresholdConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=defaults.max_streams)
    p.add_argument("--window", type=int, default=defaults.window)
    p.add_argument("--key-bytes", type=int, default=256, help="key length (the longest key the scorer accepts)")
    p.add_argument("--mode", default="adaptive", choices=("adaptive", "evt"))
    p.add_argument("--compare-json", action="store_true", help="also the previous JSON format, for comparison")
    p.add_argument("--phase", choices=("save", "load", "save-json", "load-json"), help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "threshold_state.json"))
    return p.parse_args()


def config(args, path: str | None) -> ThresholdConfig:
    """The defaults at the given bounds; a save is due at every call (save_every_s=0)."""
    return ThresholdConfig(mode=args.mode, window=args.window, max_streams=args.streams, state_path=path,
                           save_every_s=0)


def filled(args, path: str) -> tuple[StreamThresholds, list[np.ndarray]]:
    """A state at its bounds: every stream's ring full."""
    thresholds = StreamThresholds(config(args, path))
    rng = np.random.default_rng(0)
    rings = []
    for n in range(args.streams):
        key = f"{n:08d}".ljust(args.key_bytes, "k")
        ring = rng.lognormal(1.5, 0.2, args.window)
        thresholds.apply(key, 4.0, GLOBAL_THRESHOLD, 1)  # creates the stream through the public path
        thresholds._streams[key].fill(ring)
        rings.append(ring)
    return thresholds, rings


def phase(args) -> dict:
    """One measurement in this process: wall and CPU seconds (CPU: on a loaded machine the
    wall time is mostly waiting), bytes, and the peak RSS (MB) it added to the imports' (torch,
    through agad_stream, alone takes hundreds of MB)."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures: dict = {}
    if args.phase in ("save", "save-json"):
        thresholds, rings = filled(args, args.path if args.phase == "save" else None)
    started, cpu_started = time.perf_counter(), time.process_time()
    if args.phase == "save":
        thresholds.save_if_due()  # what the scoring thread does: a snapshot, then a background write
        figures = {"scoring_pause_s": time.perf_counter() - started,
                   "scoring_pause_cpu_s": time.process_time() - cpu_started}
        thresholds._writer.join()
    elif args.phase == "save-json":  # the previous format: json.dumps on the scoring thread
        state = {"format": 1, "model_version": "1", "config": {},
                 "streams": {f"{n:08d}".ljust(args.key_bytes, "k"): ring.tolist() for n, ring in enumerate(rings)}}
        Path(args.path).write_bytes(json.dumps(state).encode())
    elif args.phase == "load":
        thresholds = StreamThresholds(config(args, args.path))
    else:
        figures = {"streams": len(json.loads(Path(args.path).read_text())["streams"])}
    figures.update(wall_s=time.perf_counter() - started, cpu_s=time.process_time() - cpu_started)
    if args.phase.startswith("save"):
        figures["bytes"] = Path(args.path).stat().st_size
    if args.phase == "load":
        keys = list(thresholds._streams)[-1000:]
        started = time.perf_counter()
        for key in keys:
            thresholds.apply(key, 4.0, GLOBAL_THRESHOLD, 1)
        figures.update(streams=len(thresholds._streams), apply_us=1e6 * (time.perf_counter() - started) / len(keys))
    return {**figures, "added_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before}


def measure(args, name: str, path: Path) -> dict:
    argv = [sys.executable, __file__, "--phase", name, "--path", str(path), "--streams", str(args.streams),
            "--window", str(args.window), "--key-bytes", str(args.key_bytes), "--mode", args.mode]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return
    phases = [("save", "load")] + ([("save-json", "load-json")] if args.compare_json else [])
    results = {"streams": args.streams, "window": args.window, "key_bytes": args.key_bytes, "mode": args.mode}
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        for save, load in phases:
            path = Path(tmp) / save
            results[save], results[load] = measure(args, save, path), measure(args, load, path)
            print(f"{save}: {results[save]}\n{load}: {results[load]}", flush=True)
    rows = [[name, results[save]["bytes"] / 1e6, results[save].get("scoring_pause_s", results[save]["wall_s"]),
             results[save]["wall_s"], results[save]["cpu_s"], results[load]["wall_s"], results[load]["cpu_s"],
             results[load]["added_rss_mb"]]
            for name, (save, load) in zip(("binary (format 2)", "JSON (format 1)"), phases)]
    print(f"\n## Threshold state, {args.streams} streams x {args.window} scores, {args.key_bytes}-byte keys\n")
    print(markdown_table(["format", "MB", "scoring paused s", "save s", "save CPU s", "load s", "load CPU s",
                          "RSS added by the load, MB"], rows))
    print(f"apply() on a loaded state: {results['load']['apply_us']:.0f} µs per window; command: {' '.join(sys.argv)}")
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
