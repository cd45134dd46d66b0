"""Benchmark 2: MIT-BIH records 100 and 208, all AAMI abnormal classes vs normal.

Labels from the full reference annotations (.atr): N, L, R, e, j normal; every other beat
symbol (S, V, F and Q classes: here A, V, F, ...) anomalous; rhythm and noise marks skipped.
Lead MLII only (the second lead is V5 in 100 but V1 in 208, so it is not one channel).

Protocol (fixed before any run): intra-patient time split. One model is trained on the
normal beats of the first 15 minutes of both records and tested on every beat of their
last 15 minutes, which the model never saw. Why not train on one record and test on the
other: record 100 holds 34 abnormal beats in 2273, so testing on 100 says little, and a
model trained on one patient and tested on another measures the change of patient more
than the anomalies. For reference the script also runs that inter-patient direction
(normal beats of all of 100 -> every beat of 208). Final epoch scored.

usage: nice python benchmarks/bench_ecg_aami.py [--data DIR] [--agad NAME=VALUE] ...
"""

from __future__ import annotations

import time

import numpy as np

from common import agad_settings, add_ecg_options, write_results, detectors, auroc_by_detector, base_parser, fit_agad, footer, markdown_table, setup
from modalities.ecg import ECGModality

RECORDS = ["100", "208"]
SPLIT_MINUTES = 15.0


def parse_args():
    parser = base_parser(__doc__.splitlines()[0], "mitdb")
    add_ecg_options(parser)
    return parser.parse_args()


def run(name: str, modality: ECGModality, train, test, args) -> dict:
    X_train, X_test = modality.prepare(train.X), modality.prepare(test.X)
    model, agad_seconds = fit_agad(X_train, None, args)
    aurocs, seconds = auroc_by_detector(model, X_train, X_test, test.y, args)
    seconds["AGAD"] = agad_seconds
    per_record = {}
    for record in sorted(set(test.group)):
        in_record = test.group == record
        if len(set(test.y[in_record])) == 2:
            per_record[str(record)] = float(_auroc(test.y[in_record], model.score_samples(X_test[in_record])))
    symbols, counts = np.unique(test.info["symbol"], return_counts=True)
    return {
        "protocol": name, "n_train": len(X_train), "n_test_normal": int(np.sum(test.y == 0)),
        "n_test_abnormal": int(np.sum(test.y == 1)), "test_symbols": dict(zip(symbols.tolist(), counts.tolist())),
        "auroc": aurocs, "agad_auroc_per_test_record": per_record, "fit_seconds": seconds, "agad_steps": model.n_steps_, "agad_kept_step": model.best_step_,
    }


def _auroc(y, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, scores)


def main() -> None:
    args = parse_args()
    started = setup(args)
    modality = ECGModality(fs=args.fs, window_s=args.window_s, ann="atr", leads=["MLII"])
    windows = modality.load(args.data, records=RECORDS)
    peak = windows.position + modality.pre_samples
    first_part = peak < SPLIT_MINUTES * 60 * modality.fs
    protocols = [
        (f"time split: normal beats of minutes 0-{SPLIT_MINUTES:g} of 100 and 208 → all beats after",
         windows.subset(first_part & (windows.y == 0)), windows.subset(~first_part)),
        ("inter-patient: normal beats of 100 → all beats of 208",
         windows.subset((windows.group == "100") & (windows.y == 0)), windows.subset(windows.group == "208")),
    ]
    results = []
    for name, train, test in protocols:
        t0 = time.perf_counter()
        results.append(run(name, modality, train, test, args))
        print(f"{name}: {results[-1]['auroc']} ({time.perf_counter() - t0:.0f} s)", flush=True)

    rows = [[r["protocol"], r["n_train"], f"{r['n_test_normal']}/{r['n_test_abnormal']}",
             *[r["auroc"][d] for d in detectors(args)]] for r in results]
    print("\n## MIT-BIH 100 + 208, AAMI abnormal (S, V, F, Q) vs normal, AUROC\n")
    print(markdown_table(["protocol", "train beats", "test normal/abnormal", *detectors(args)], rows))
    for r in results:
        print(f"\n{r['protocol']}: test beats by symbol {r['test_symbols']}; "
              f"AGAD AUROC per test record {r['agad_auroc_per_test_record']}")
    print(f"\nfs {args.fs:g} Hz, lead MLII, window {args.window_s} s; {agad_settings(args)}")
    print(footer(started, args))
    write_results(args, results)


if __name__ == "__main__":
    main()
