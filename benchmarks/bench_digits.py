"""Benchmark 0: scikit-learn's 8x8 digits, one-vs-rest over the 10 classes: does AGAD train well on small data?

Protocol (fixed before any run): the 1,797 images are split, stratified by class and
seeded by --split-seed, into train (50%), validation (25%) and test (25%). For each
digit d, every detector is fitted on the ~90 training images of d alone and scores a
held-out split, where d is normal and the other nine digits are anomalous. Settings are
chosen with --validation (scores the validation split); the test split is scored once,
after choosing. The data ship with scikit-learn, so this runs anywhere in minutes.

usage: nice python benchmarks/bench_digits.py [--validation] [--agad NAME=VALUE] [--seed N] ...
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from common import (agad_settings, auroc_by_detector, base_parser, detectors, fit_agad, footer, markdown_table, mean_std,
                    setup, write_results)

DIGITS = list(range(10))


def parse_args():
    parser = base_parser(__doc__.splitlines()[0], ".")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/validation/test split")
    parser.add_argument("--digits", default=",".join(map(str, DIGITS)), help="normal classes to run (default all 10)")
    parser.add_argument("--validation", action="store_true", help="tuning mode: score the validation split, never the test split")
    return parser.parse_args()


def splits(split_seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(X, y) of train, validation and test; X is [N, 1, 8, 8] in the data's own 0-16 scale."""
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8).astype(np.float32)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.5, stratify=y, random_state=split_seed)
    X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=split_seed)
    return (X_train, y_train), (X_val, y_val), (X_test, y_test)


def main() -> None:
    args = parse_args()
    started = setup(args, needs_data=False)  # the data ship with scikit-learn; --data is unused
    (X_train, y_train), validation, test = splits(args.split_seed)
    X_eval, y_eval = validation if args.validation else test
    results = {}
    for digit in [int(d) for d in args.digits.split(",")]:
        t0 = time.perf_counter()
        X_normal = X_train[y_train == digit]
        model, agad_seconds = fit_agad(X_normal, None, args)
        aurocs, seconds = auroc_by_detector(model, X_normal, X_eval, (y_eval != digit).astype(int), args)
        seconds["AGAD"] = agad_seconds
        results[digit] = {"n_train": len(X_normal), "auroc": aurocs, "fit_seconds": seconds,
                          "agad_steps": model.n_steps_, "agad_kept_step": model.best_step_}
        print(f"digit {digit}: {', '.join(f'{k} {v:.4f}' for k, v in aurocs.items())} "
              f"(AGAD {model.n_steps_} steps, kept {model.best_step_}; {time.perf_counter() - t0:.0f} s)", flush=True)

    names = detectors(args)
    rows = [[f"digit {d}", r["n_train"], *[r["auroc"][k] for k in names]] for d, r in results.items()]
    rows.append(["mean ± std", "", *[mean_std([r["auroc"][k] for r in results.values()]) for k in names]])
    rows.append(["worst class", "", *[min(r["auroc"][k] for r in results.values()) for k in names]])
    scored_on = "VALIDATION split (tuning run)" if args.validation else "test split"
    print(f"\n## sklearn digits one-vs-rest, AUROC on the {scored_on}\n")
    print(markdown_table(["normal class", "train images", *names], rows))
    print(f"\n{agad_settings(args)}")
    print(footer(started, args))
    write_results(args, results)


if __name__ == "__main__":
    main()
