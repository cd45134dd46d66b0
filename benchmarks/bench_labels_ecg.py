"""With labels: MIT-BIH inter-patient (DS1 -> DS2), one known beat type (V), against detectors using the same labels.

Protocol (fixed before any run), Deep SAD's "one known type" (Ruff et al. 2020) on the
inter-patient split of de Chazal et al. (2004); paced records 102, 104, 107, 217 left out:
- windows: lead MLII (chosen by sig_name), 0.8 s beats at 180 Hz, per-window median removed
  (the project's ECG modality); AAMI classes N, S, V, F, Q from the reference annotations;
- training: --normal-beats DS1 N beats, stratified by record (each record in proportion to
  its N beats), drawn per seed; plus the first k of a seeded permutation of DS1 V beats
  (nested: k = 20 holds the 5 of k = 5). gamma = k / normal beats (2000: k = 20 is
  gamma .01, k = 100 is gamma .05). No S, F or Q beat ever enters training;
- test: every DS2 beat. AUROC of V (known type), S and F (novel types) each against DS2 N;
  recall per class at 1% FPR on DS2 N; recall and FPR at the detector's own threshold (set on
  held-out DS1 normal beats at 1% FPR, as AGAD does);
- detectors: AGAD (defaults), AGAD without L_adcon, AGAD's plain autoencoder (L_con; given
  labels, plus AGAD's labelled-anomaly margin loss), Deep SAD (deepod), AGAD's discriminator
  alone as a classifier, a gradient-boosted classifier; IsolationForest and PCA at k = 0 only.
  AGAD's variants and D alone share one step budget (--max-steps) and every detector its seed.

Every (detector, k, seed) result lands in --out as soon as it is done; a rerun skips those.
The first seed runs at every count first (one whole picture soonest), counts in the order given.

usage: nice env OMP_NUM_THREADS=1 python benchmarks/bench_labels_ecg.py [--data DIR] [--out FILE] ...
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from common import REPO, add_ecg_options, agad_params, data_path, setup
from labels_protocol import (DETECTOR_NAMES, NEEDS_LABELS, UNSUPERVISED_ONLY, aami_classes, build_detector, load_cache,
                             one_known_type_split, save_cache)
from modalities.ecg import ECGModality

DS1 = ["101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
       "201", "203", "205", "207", "208", "209", "215", "220", "223", "230"]
DS2 = ["100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234"]
#: --split validation: DS1 alone, halved by patient (every other record), for choosing defaults
#: without looking at DS2
DS1_FIT, DS1_VALIDATION = DS1[0::2], DS1[1::2]
SPLITS = {"test": (DS1, DS2), "validation": (DS1_FIT, DS1_VALIDATION)}
KNOWN = "V"
NOVEL = ("S", "F")
DEFAULT_OUT = REPO / "benchmarks" / "results" / "labels_ecg.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_path("mitdb-full"),
                        help="the whole MIT-BIH database (default $AGAD_DATA/mitdb-full or ../shared/data/mitdb-full)")
    parser.add_argument("--out", type=Path, help="the JSON cache of results, resumed when it exists (default "
                        "benchmarks/results/labels_ecg.json, or labels_ecg_validation.json with --split validation)")
    parser.add_argument("--labels", default="0,20,100,5,10,50,200",
                        help="labelled V beats per run, in the order they run")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--detectors", default=",".join(DETECTOR_NAMES))
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="test: DS1 -> DS2; validation: half of DS1's patients -> the other half, to choose on")
    parser.add_argument("--normal-beats", type=int, default=2000, help="DS1 N beats in training, stratified by record")
    parser.add_argument("--max-steps", type=int, default=300, help="step budget of every AGAD variant and of D alone")
    parser.add_argument("--deep-sad-epochs", type=int, default=50,
                        help="Deep SAD training epochs (deepod ships 100; 50 fits the CPU budget)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--agad", action="append", default=[], metavar="NAME=VALUE",
                        help="an AGAD constructor parameter for every AGAD variant, e.g. --agad anomaly_loss=relative-margin "
                             "(VALUE read as JSON when it parses); recorded in the cache's settings")
    add_ecg_options(parser)
    args = parser.parse_args()
    args.device, args.seed = "cpu", 0
    if args.out is None:
        args.out = DEFAULT_OUT if args.split == "test" else DEFAULT_OUT.with_name("labels_ecg_validation.json")
    try:
        args.label_counts = [int(k) for k in args.labels.split(",")]
        args.seed_list = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--labels {args.labels!r} and --seeds {args.seeds!r} must be comma-separated integers") from None
    args.agad_options = agad_params(args)
    args.detector_list = [d for d in args.detectors.split(",") if d]
    unknown = sorted(set(args.detector_list) - set(DETECTOR_NAMES))
    if unknown:
        raise SystemExit(f"--detectors: unknown {', '.join(unknown)}; choose from {', '.join(DETECTOR_NAMES)}")
    if "deep-sad" in args.detector_list and importlib.util.find_spec("deepod") is None:
        raise SystemExit("deep-sad needs the deepod package: pip install --no-deps deepod==0.4.1 (its metadata pins "
                         "torch<1.13.1, which it does not need), or leave deep-sad out of --detectors")
    return args


def settings(args: argparse.Namespace) -> dict:
    """What a cached result depends on; a cache written under other settings is refused."""
    return {"normal_beats": args.normal_beats, "max_steps": args.max_steps, "deep_sad_epochs": args.deep_sad_epochs,
            "fs": args.fs, "window_s": args.window_s, "lead": "MLII", "known": KNOWN,
            **({"agad": args.agad_options} if args.agad_options else {}),
            **({"train": "DS1", "test": "DS2"} if args.split == "test" else {"train": DS1_FIT, "test": DS1_VALIDATION})}


def jobs(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """(detector, labelled count, seed): the first seed at every count, then the other seeds."""
    first, *others = args.seed_list
    return [(d, k, s) for seeds in ([first], others) for s in seeds for k in args.label_counts for d in args.detector_list
            if not (k == 0 and d in NEEDS_LABELS) and not (k > 0 and d in UNSUPERVISED_ONLY)]


def key(detector: str, k: int, seed: int) -> str:
    return f"{detector}|{k}|{seed}"


def evaluate(scores: np.ndarray, threshold: float, classes: np.ndarray) -> dict:
    """Per anomalous class against N: AUROC, recall at 1% FPR on N, and recall at the detector's threshold."""
    from sklearn.metrics import roc_auc_score

    normal = scores[classes == "N"]
    at_1pct = float(np.quantile(normal, 0.99, method="higher"))
    result = {"auroc": {}, "recall_at_1pct_fpr": {}, "recall_at_threshold": {},
              "fpr_at_threshold": float(np.mean(normal > threshold)), "threshold": float(threshold)}
    for c in (KNOWN, *NOVEL):
        s = scores[classes == c]
        y = np.r_[np.zeros(len(normal)), np.ones(len(s))]
        result["auroc"][c] = float(roc_auc_score(y, np.r_[normal, s]))
        result["recall_at_1pct_fpr"][c] = float(np.mean(s > at_1pct))
        result["recall_at_threshold"][c] = float(np.mean(s > threshold))
    return result


def run_one(detector: str, k: int, seed: int, data: dict, args: argparse.Namespace) -> dict:
    normals, labelled = one_known_type_split(data["classes"], data["group"], SPLITS[args.split][0], KNOWN,
                                             args.normal_beats, k, seed)
    X = np.concatenate([data["X"][normals], data["X"][labelled]])
    y = np.r_[np.zeros(len(normals), np.int8), np.ones(len(labelled), np.int8)]
    model = build_detector(detector, seed, args.max_steps, args.deep_sad_epochs, **args.agad_options)
    started = time.process_time()
    model.fit(X, y if k else None)
    fitted = time.process_time()
    scores = model.score_samples(data["X_test"])
    result = evaluate(scores, model.threshold_, data["classes_test"])
    result.update(detector=detector, n_labelled=k, gamma=k / args.normal_beats, seed=seed,
                  fit_cpu_s=fitted - started, score_cpu_s=time.process_time() - fitted,
                  steps=getattr(model, "n_steps_", None), kept_step=getattr(model, "best_step_", None))
    if k and hasattr(model, "anomaly_margin"):
        result["labelled_above_margin"] = share_above_margin(model, X[y == 1], X[y == 0])
    return result


def share_above_margin(model, X_labelled: np.ndarray, X_normal: np.ndarray) -> float:
    """Share of the labelled anomalies whose mean |x - G(x)| (normalised units) already reaches AGAD's
    margin after training (anomaly_margin itself, or that many times the normal windows' mean
    error for "relative-margin"): the margin loss gives G nothing to learn from those."""
    def error(X: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (X.ndim - 2)
        return np.abs(model.residuals(X) / model.std_.reshape(shape)).reshape(len(X), -1).mean(axis=1)

    margin = model.anomaly_margin * (error(X_normal).mean() if model.anomaly_loss == "relative-margin" else 1.0)
    return float(np.mean(error(X_labelled) >= margin))


def load_windows(args: argparse.Namespace) -> dict:
    modality = ECGModality(fs=args.fs, window_s=args.window_s, ann="atr", leads=["MLII"])
    try:
        windows = modality.load(args.data, records=[*SPLITS[args.split][0], *SPLITS[args.split][1]])
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"--data {args.data}: {error}") from None
    classes = aami_classes(windows.info["symbol"])
    X = modality.prepare(windows.X)
    test = np.isin(windows.group, SPLITS[args.split][1])
    return {"X": X, "classes": classes, "group": windows.group,
            "X_test": X[test], "classes_test": classes[test],
            "counts": {part: dict(zip(*[a.tolist() for a in np.unique(classes[mask], return_counts=True)]))
                       for part, mask in zip(("DS1", "DS2") if args.split == "test" else ("DS1 fit", "DS1 validation"), (~test, test))}}


def main() -> None:
    args = parse_args()
    setup(args)
    cache = load_cache(args.out, settings(args))
    todo = [j for j in jobs(args) if key(*j) not in cache["results"]]
    if not todo:
        print(f"every run is in {args.out}")
        return
    data = load_windows(args)
    cache["beat_counts"] = data["counts"]
    bar = tqdm(todo, desc="labels ECG", unit="run")
    for detector, k, seed in bar:
        bar.set_postfix_str(f"{detector} k={k} seed={seed}")
        result = run_one(detector, k, seed, data, args)
        cache["results"][key(detector, k, seed)] = result
        save_cache(args.out, cache)
        tqdm.write(f"{detector} k={k} seed={seed}: AUROC {result['auroc']} recall@1%FPR V "
                   f"{result['recall_at_1pct_fpr']['V']:.3f} ({result['fit_cpu_s']:.0f}+{result['score_cpu_s']:.0f} CPU s)")
    print(f"results in {args.out}; tables and plot: python benchmarks/labels_report.py {args.out}")


if __name__ == "__main__":
    main()
