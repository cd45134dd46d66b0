"""Mean ± std over seeds: one table from several --out JSON files of the same benchmark.

Each file is one seed's run (bench_digits, bench_fsdd, bench_ecg_pvc or bench_ecg_aami).
A file's headline per detector is the mean over its classes (digits, FSDD) or directions
(PVC), or one figure per protocol (AAMI); the table gives the mean ± std of those
headlines over the files, so the spread is the seed-to-seed spread.

usage: python benchmarks/aggregate.py results/digits_seed*.json [--title TEXT] [--out summary.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def headlines(results) -> dict[str, dict[str, float]]:
    """{row name: {detector: AUROC}} for one run."""
    if isinstance(results, dict):   # one entry per normal class
        per_class = [r["auroc"] for r in results.values()]
        detectors = per_class[0].keys()
        return {"mean over classes": {d: float(np.mean([c[d] for c in per_class])) for d in detectors},
                "worst class": {d: float(np.min([c[d] for c in per_class])) for d in detectors}}
    if "protocol" in results[0]:    # one entry per protocol
        return {r["protocol"]: r["auroc"] for r in results}
    detectors = results[0]["auroc"].keys()   # one entry per train/test direction
    return {"mean of both directions": {d: float(np.mean([r["auroc"][d] for r in results])) for d in detectors}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--title", default="")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args()
    runs = [headlines(json.loads(f.read_text())["results"]) for f in args.files]
    rows = runs[0].keys()
    for f, run in zip(args.files, runs):
        if run.keys() != rows:
            raise SystemExit(f"{f}: not the same benchmark as {args.files[0]}")
    # the detectors every run has; a seed run without the slow baselines still counts for the rest
    detectors = [d for d in next(iter(runs[0].values())) if all(d in run[row] for run in runs for row in rows)]
    summary = {row: {d: {"mean": float(np.mean([r[row][d] for r in runs])), "std": float(np.std([r[row][d] for r in runs])),
                         "n": len(runs)} for d in detectors} for row in rows}
    if args.title:
        print(f"## {args.title}\n")
    print("| | " + " | ".join(detectors) + " |")
    print("|---|" + "---|" * len(detectors))
    for row in rows:
        cells = [f"{summary[row][d]['mean']:.4f} ± {summary[row][d]['std']:.4f}" for d in detectors]
        print(f"| {row} | " + " | ".join(cells) + " |")
    print(f"\n{len(runs)} runs: {', '.join(str(f) for f in args.files)}")
    if args.out:
        args.out.write_text(json.dumps({"files": [str(f) for f in args.files], "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
