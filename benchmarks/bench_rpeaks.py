"""R-peak detectors on MIT-BIH (issue 18): ours (`modalities.ecg.detect_r_peaks`) against
wfdb.processing's XQRS and GQRS, each of those also after `wfdb.processing.correct_peaks`.

    nice python benchmarks/bench_rpeaks.py [--data ../shared/data/mitdb-full] [--records 100,208]
        [--tolerance-ms 50] [--out benchmarks/results/rpeaks.json]

Per record: the MLII lead (by `sig_name`; the first lead where a record has none), the
reference beats (the annotation symbols of beats, not rhythm or noise marks), and for each
detector the sensitivity and positive predictivity at +-tolerance through
`wfdb.processing.compare_annotations`, and its seconds. Summary: pooled Se and PPV (over all
beats of all records), the worst record, and the total time. The project keeps the
library's detector unless ours is measurably better (the docs carry this table as the reason).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import wfdb
from tqdm.auto import tqdm
from wfdb import processing

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from modalities.ecg import detect_r_peaks  # noqa: E402

#: annotation symbols that mark a beat (MIT-BIH); the others are rhythm, noise or comment marks
BEATS = set("NLRBAaJSVrFejnE/fQ?")


def lead(record: wfdb.Record) -> tuple[np.ndarray, str]:
    names = list(record.sig_name)
    channel = names.index("MLII") if "MLII" in names else 0
    return record.p_signal[:, channel], names[channel]


def detectors(fs: float) -> dict:
    radius, smooth = int(0.1 * fs), int(0.15 * fs)  # wfdb's own examples use 0.1 s and 0.15 s

    def corrected(detect):
        return lambda x: processing.correct_peaks(x, detect(x), search_radius=radius, smooth_window_size=smooth)

    def xqrs(x):
        return processing.xqrs_detect(x, fs, verbose=False)

    def gqrs(x):
        return processing.gqrs_detect(x, fs)

    return {"ours": lambda x: detect_r_peaks(x, fs), "xqrs": xqrs, "xqrs+correct": corrected(xqrs),
            "gqrs": gqrs, "gqrs+correct": corrected(gqrs)}


def evaluate(path: Path, tolerance_ms: float) -> dict:
    record = wfdb.rdrecord(str(path))
    annotation = wfdb.rdann(str(path), "atr")
    reference = np.asarray([s for s, sym in zip(annotation.sample, annotation.symbol) if sym in BEATS])
    signal, name = lead(record)
    window = int(round(tolerance_ms / 1000 * record.fs))
    row = {"record": path.name, "lead": name, "beats": len(reference)}
    for detector, detect in detectors(record.fs).items():
        started = time.perf_counter()
        found = np.asarray(detect(signal), dtype=np.int64)
        seconds = time.perf_counter() - started
        comparison = processing.compare_annotations(reference, found, window)
        row[detector] = {"tp": int(comparison.tp), "fp": int(comparison.fp), "fn": int(comparison.fn),
                         "se": round(float(comparison.sensitivity), 4),
                         "ppv": round(float(comparison.positive_predictivity), 4), "seconds": round(seconds, 3)}
    return row


def summary(rows: list[dict]) -> dict:
    names = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    result = {}
    for name in names:
        tp, fp, fn = (sum(r[name][k] for r in rows) for k in ("tp", "fp", "fn"))
        worst = min(rows, key=lambda r: min(r[name]["se"], r[name]["ppv"]))
        result[name] = {"se": round(tp / (tp + fn), 4), "ppv": round(tp / (tp + fp), 4),
                        "worst_record": worst["record"], "worst_se": worst[name]["se"], "worst_ppv": worst[name]["ppv"],
                        "seconds": round(sum(r[name]["seconds"] for r in rows), 1)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mitdb-full"),
                        help="a folder of MIT-BIH records (.hea/.dat/.atr)")
    parser.add_argument("--records", help="comma-separated record names (default: every .hea in --data)")
    parser.add_argument("--tolerance-ms", type=float, default=50.0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "rpeaks.json"))
    args = parser.parse_args()
    data = Path(args.data)
    names = args.records.split(",") if args.records else sorted(p.stem for p in data.glob("*.hea"))
    if not names:
        raise SystemExit(f"no records (.hea files) in {data}")
    rows = [evaluate(data / name, args.tolerance_ms) for name in tqdm(names, desc="records")]
    result = {"data": str(data), "tolerance_ms": args.tolerance_ms, "load_average_1m": round(os.getloadavg()[0], 2),
              "summary": summary(rows), "records": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, figures in result["summary"].items():
        print(f"{name:13s} Se {figures['se']:.4f}  PPV {figures['ppv']:.4f}  worst {figures['worst_record']} "
              f"({figures['worst_se']:.3f} / {figures['worst_ppv']:.3f})  {figures['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
