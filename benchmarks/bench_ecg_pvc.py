"""Benchmark 1: MIT-BIH PVC detection, inter-patient, on the MLII records of mitdb-mlii-pvc.

Protocol (fixed before any run): the nine MLII records, sorted, are dealt alternately into
two folds, A = 100, 106, 116, 121, 200 and B = 105, 108, 119, 123. Each fold's model is
trained on normal ('Q') beats of one fold's records and tested on every beat of the
other fold's records ('V' = PVC = anomalous, 'Q' = any other beat = normal), so no test
patient is ever seen in training; the headline is the mean AUROC of the two directions.
Records 102, 104 and 114 are left out: their only signal is V5, not MLII.
Training beats are a seeded random subset (--max-train-beats) to fit the CPU budget.
Settings are tuned with --validation only, which never scores the test records.
The same windows feed AGAD and the baselines.

usage: nice python benchmarks/bench_ecg_pvc.py [--data DIR] [--agad NAME=VALUE] ...
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import roc_auc_score

from common import (agad_settings, add_ecg_options, write_results, detectors, auroc_by_detector, base_parser, fit_agad, footer, markdown_table, mean_std,
                    setup)
from modalities.ecg import ECGModality

FOLD_A = ["100", "106", "116", "121", "200"]
FOLD_B = ["105", "108", "119", "123"]
#: (train records, test records): each fold trains once and tests on the other
DIRECTIONS = [(FOLD_A, FOLD_B), (FOLD_B, FOLD_A)]


def parse_args():
    parser = base_parser(__doc__.splitlines()[0], "mitdb-mlii-pvc")
    add_ecg_options(parser)
    parser.add_argument("--max-train-beats", type=int, default=3000)
    parser.add_argument("--validation", action="store_true",
                        help="tuning mode: never scores the test records; in each direction the training record "
                             "with the most PVCs is held out as validation and the rest are trained on")
    return parser.parse_args()


def training_subset(n: int, limit: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, limit), replace=False))


def run_direction(modality: ECGModality, windows, train_records, test_records, args) -> dict:
    train = windows.subset(np.isin(windows.group, train_records) & (windows.y == 0))
    train = train.subset(training_subset(len(train), args.max_train_beats, args.seed))
    test = windows.subset(np.isin(windows.group, test_records))
    X_train, X_test = modality.prepare(train.X), modality.prepare(test.X)
    model, agad_seconds = fit_agad(X_train, None, args)
    aurocs, seconds = auroc_by_detector(model, X_train, X_test, test.y, args)
    seconds["AGAD"] = agad_seconds
    return {
        "agad_per_test_record": per_record(model, X_test, test),
        "train_records": train_records, "test_records": test_records, "n_train": len(X_train),
        "n_test_normal": int(np.sum(test.y == 0)), "n_test_pvc": int(np.sum(test.y == 1)),
        "auroc": aurocs, "fit_seconds": seconds, "agad_steps": model.n_steps_, "agad_kept_step": model.best_step_,
        "agad_final_epoch": model.history_[-1],
    }


def per_record(model, X_test: np.ndarray, test) -> dict[str, dict]:
    """AGAD's AUROC and missed PVCs (below the calibrated threshold) per test record: where the errors are."""
    scores = model.score_samples(X_test)
    rows = {}
    for record in sorted(set(test.group)):
        y, s = test.y[test.group == record], scores[test.group == record]
        rows[str(record)] = {
            "normal": int(np.sum(y == 0)), "pvc": int(np.sum(y == 1)),
            "auroc": float(roc_auc_score(y, s)) if len(set(y)) == 2 else None,
            "missed_pvc": int(np.sum((y == 1) & (s <= model.threshold_))),
            "false_alarms": int(np.sum((y == 0) & (s > model.threshold_))),
        }
    return rows


def validation_direction(windows, train_records: list[str]) -> tuple[list[str], list[str]]:
    """(training records minus the one with the most PVCs, [that record]) for tuning without test data."""
    pvcs = {r: int(np.sum(windows.y[windows.group == r])) for r in train_records}
    held = max(train_records, key=pvcs.get)
    return [r for r in train_records if r != held], [held]


def main() -> None:
    args = parse_args()
    started = setup(args)
    modality = ECGModality(fs=args.fs, window_s=args.window_s, ann="pvc")
    windows = modality.load(args.data, records=FOLD_A + FOLD_B)
    directions = [validation_direction(windows, train) for train, _ in DIRECTIONS] if args.validation else DIRECTIONS
    results = []
    for train_records, test_records in directions:
        t0 = time.perf_counter()
        results.append(run_direction(modality, windows, train_records, test_records, args))
        print(f"train {','.join(train_records)} -> test {','.join(test_records)}: "
              f"{results[-1]['auroc']} ({time.perf_counter() - t0:.0f} s)", flush=True)

    rows = [[f"{','.join(r['train_records'])} → {','.join(r['test_records'])}", r["n_train"],
             f"{r['n_test_normal']}/{r['n_test_pvc']}", *[r["auroc"][d] for d in detectors(args)]] for r in results]
    rows.append(["mean of both directions", "", "", *[float(np.mean([r["auroc"][d] for r in results])) for d in detectors(args)]])
    scored_on = "VALIDATION records (tuning run)" if args.validation else "test records"
    print(f"\n## MIT-BIH PVC, inter-patient (MLII records), AUROC on {scored_on}\n")
    print(markdown_table(["train → test records", "train beats", "test normal/PVC", *detectors(args)], rows))
    print(f"\nAGAD mean over directions: {mean_std([r['auroc']['AGAD'] for r in results])}")
    print("\nAGAD per test record (missed PVCs and false alarms at the calibrated threshold):\n")
    record_rows = [[record, row["normal"], row["pvc"], "n/a" if row["auroc"] is None else row["auroc"],
                    row["missed_pvc"], row["false_alarms"]]
                   for r in results for record, row in r["agad_per_test_record"].items()]
    print(markdown_table(["record", "normal", "PVC", "AUROC", "missed PVC", "false alarms"], record_rows))
    print(f"\nfs {args.fs:g} Hz, window {args.window_s} s, ≤{args.max_train_beats} training beats; {agad_settings(args)}")
    print(footer(started, args))
    write_results(args, results)


if __name__ == "__main__":
    main()
