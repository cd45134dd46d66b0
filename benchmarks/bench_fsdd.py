"""Benchmark 3: Free Spoken Digit Dataset, one-vs-rest over the 10 digits, speaker-disjoint.

Protocol (fixed before any run): 2 of the 6 speakers are drawn as test speakers with
modalities.split_by_group(test_fraction=1/3, random_state=--split-seed). For each digit
d, AGAD and the baselines are trained on the log-mel patches of digit d spoken by the 4
training speakers, and tested on every clip of the 2 test speakers (d normal, the other
9 digits anomalous). Settings were tuned with --validation only, which never scores the
test speakers. Clip score = mean of its patch scores; AUROC per digit, then mean ±
std over the digits. Same windows and budget for every detector; AGAD stops early on held-out training normals.

usage: nice python benchmarks/bench_fsdd.py [--data DIR/recordings] [--agad NAME=VALUE] ...
"""

from __future__ import annotations

import time

import numpy as np

from common import (agad_settings, write_results, detectors, auroc_by_detector, base_parser, fit_agad, footer, markdown_table, mean_std,
                    setup)
from modalities import split_by_group
from modalities.audio import AudioModality

DIGITS = [str(d) for d in range(10)]


def parse_args():
    parser = base_parser(__doc__.splitlines()[0], "fsdd/recordings")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the test-speaker draw")
    parser.add_argument("--sample-rate", type=int, default=8000, help="resample to this rate (FSDD is 8 kHz)")
    parser.add_argument("--n-mels", type=int, default=32)
    parser.add_argument("--layout", choices=("2d", "1d"), default="1d", help="1d: mel bands as channels")
    parser.add_argument("--aggregate", choices=("mean", "max"), default="mean")
    parser.add_argument("--digits", default=",".join(DIGITS), help="normal classes to run (default all 10)")
    parser.add_argument("--validation", action="store_true",
                        help="tuning mode: leave the test speakers out entirely and score 1 of the 4 training "
                             "speakers (drawn with --split-seed) as validation, training on the other 3")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    started = setup(args)
    modality = AudioModality(sample_rate=args.sample_rate, n_mels=args.n_mels, layout=args.layout,
                             pattern="{digit}_{speaker}_{index}.wav", group_field="speaker")
    windows = modality.load(args.data)
    train, test = split_by_group(windows, test_fraction=1 / 3, random_state=args.split_seed)
    if args.validation:
        train, test = split_by_group(train, test_fraction=1 / 4, random_state=args.split_seed)
    X_train_all, X_test = modality.prepare(train.X), modality.prepare(test.X)
    test_digit = test.info["digit"]
    print(f"training speakers {sorted(map(str, set(train.group)))}, test speakers {sorted(map(str, set(test.group)))}; "
          f"{len(set(test.source))} test clips, {len(X_test)} test patches {X_test.shape[1:]}", flush=True)

    results = {}
    for digit in args.digits.split(","):
        t0 = time.perf_counter()
        X_train = X_train_all[train.info["digit"] == digit]
        model, agad_seconds = fit_agad(X_train, None, args)
        y_test = (test_digit != digit).astype(np.int8)
        aurocs, seconds = auroc_by_detector(model, X_train, X_test, y_test, args, test.source, args.aggregate)
        seconds["AGAD"] = agad_seconds
        results[digit] = {"n_train_patches": len(X_train), "auroc": aurocs, "fit_seconds": seconds,
                          "agad_steps": model.n_steps_, "agad_kept_step": model.best_step_}
        print(f"digit {digit}: {', '.join(f'{k} {v:.4f}' for k, v in aurocs.items())} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

    rows = [[f"digit {d}", r["n_train_patches"], *[r["auroc"][k] for k in detectors(args)]] for d, r in results.items()]
    rows.append(["mean ± std", "", *[mean_std([r["auroc"][k] for r in results.values()]) for k in detectors(args)]])
    scored_on = "VALIDATION speaker (tuning run)" if args.validation else "test speakers"
    print(f"\n## FSDD one-vs-rest, speaker-disjoint, clip-level AUROC ({args.aggregate} of patch scores) "
          f"on {scored_on}\n")
    print(markdown_table(["normal class", "train patches", *detectors(args)], rows))
    print(f"\n{args.sample_rate} Hz, log-mel {args.n_mels} bands × 32 frames ({args.layout}); {agad_settings(args)}")
    print(footer(started, args))
    write_results(args, results)


if __name__ == "__main__":
    main()
