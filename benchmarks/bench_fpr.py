"""Achieved false-positive rate against target_fpr, on held-out normal windows of every
modality's benchmark data, and of the per-stream thresholds on MIT-BIH after a retrain.

Part "calibration" (fixed before any run): per data set and seed, the normal windows are
drawn at random into three disjoint sets: FIT (--fit-windows, default 300: the case of the
issue, 292 windows), SELECTION and TEST (the rest, half each, at most --max-eval windows;
Fashion-MNIST's TEST is its test file's images of the class). AGAD is fitted once on FIT
(calibration="cross-fit" when --sources holds it), and the run keeps the scores of its held-out
windows, of its own training windows and, with cross-fit, the out-of-fold scores, so one fit
yields every calibration: {holdout+training, holdout, cross-fit} x {empirical, pot}. Each
threshold is applied to SELECTION (normal windows never fitted on: the default is chosen
here) and to TEST. The scores are stored, so --combine measures a new calibration on earlier
runs without refitting. Same-distribution hold-outs: a different patient or speaker shifts the scores, which is
what the per-stream thresholds are for (part "adaptive").

Part "adaptive": bench_learning_loop's setting (version 1 on the demo's training records,
one fine-tune retrain on confirmations from them); records 119 and 200 are then scored in
time order, one stream each, under the global, adaptive (median + MAD) and evt (DSPOT)
thresholds.

Training budget: --max-steps (80) per fit and fold, to fit the CPU budget, or 3000 (AGAD's
default, early stopping on): a model that trains longer overfits its training windows more,
which is what "holdout+training" must correct.

usage: nice -n 15 python benchmarks/bench_fpr.py [--data-root DIR] [--seeds 0,1,2] [--parts calibration,adaptive]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_DATA_ROOT, REPO, markdown_table  # noqa: E402

from agad_stream import AGAD  # noqa: E402
from agad_stream.calibration import TAILS, calibrate, rescale_training_scores  # noqa: E402
from modalities import split_by_group  # noqa: E402
from modalities.audio import AudioModality  # noqa: E402
from modalities.ecg import ECGModality  # noqa: E402
from modalities.image import ImageModality  # noqa: E402
from pipelines.streaming.thresholds import MODES, StreamThresholds, ThresholdConfig  # noqa: E402

DATASETS = ("ecg-300", "ecg-3000", "fsdd", "digits", "fashion-mnist")
ECG_RECORDS = ["100", "106", "116", "121", "200"]  # bench_ecg_pvc's fold A
FASHION_CLASS = 0
SOURCES = ("holdout+training", "holdout", "cross-fit")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                   help="folder holding mitdb-mlii-pvc, fsdd/recordings and fashion-mnist (default ../shared/data)")
    p.add_argument("--loop-data", dest="data", type=Path, default=REPO / "data" / "mitdb-mlii-pvc",
                   help="records of the learning-loop part (default the demo's slices)")
    p.add_argument("--parts", default="calibration,adaptive")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--target-fpr", type=float, default=0.01)
    p.add_argument("--fit-windows", type=int, default=300)
    p.add_argument("--max-eval", type=int, default=2000)
    p.add_argument("--max-steps", type=int, default=80)
    p.add_argument("--sources", default=",".join(SOURCES),
                   help="calibration sources to measure; leaving cross-fit out skips its extra fits")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "fpr.json"))
    p.add_argument("--combine", default="",
                   help="comma-separated results of earlier runs (e.g. one per data set, run side by side): "
                        "summarise their runs together into --out instead of running anything")
    # the learning loop's settings (bench_learning_loop.py), for part "adaptive"
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--channels", default="32,64,128")
    p.add_argument("--max-train-windows", type=int, default=6000)
    p.add_argument("--max-confirmations", type=int, default=150)
    p.add_argument("--init", default="fine-tune")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--quantile", type=float, default=0.99)
    return p.parse_args()


# ---------------------------------------------------------------------- data
def normal_windows(name: str, root: Path, seed: int, fit_size: int, max_eval: int):
    """(FIT, SELECTION, TEST) prepared normal windows of one data set."""
    rng = np.random.default_rng(seed)
    if name.startswith("ecg"):
        modality = ECGModality(fs=180.0, window_s=0.8, ann="pvc")
        windows = modality.load(root / "mitdb-mlii-pvc", records=ECG_RECORDS)
        pool, test = modality.prepare(windows.X[windows.y == 0]), None
        fit_size = int(name.split("-")[1])
    elif name == "fsdd":
        modality = AudioModality(sample_rate=8000, n_mels=32, layout="1d", pattern="{digit}_{speaker}_{index}.wav",
                                 group_field="speaker")
        train, _ = split_by_group(modality.load(root / "fsdd" / "recordings"), test_fraction=1 / 3, random_state=0)
        pool, test = modality.prepare(train.X), None  # every clip of the training speakers is normal speech
    elif name == "digits":
        pool, test = load_digits().images.reshape(-1, 1, 8, 8).astype(np.float32), None
    elif name == "fashion-mnist":
        modality = ImageModality(size=32)
        train = modality.load(root / "fashion-mnist", split="train")
        pool = modality.prepare(train.X[train.info["class"] == FASHION_CLASS])
        test_images = modality.load(root / "fashion-mnist", split="test")
        test = modality.prepare(test_images.X[test_images.info["class"] == FASHION_CLASS])
    else:
        raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    order = rng.permutation(len(pool))
    fit, rest = pool[order[:fit_size]], pool[order[fit_size:]]
    if test is None:
        half = len(rest) // 2
        return fit, rest[:min(half, max_eval)], rest[half:half + max_eval]
    return fit, rest[:max_eval], test[:max_eval]


# ---------------------------------------------------------------------- part 1
def calibration_run(name: str, args, seed: int) -> dict:
    fit, selection, test = normal_windows(name, args.data_root, seed, args.fit_windows, args.max_eval)
    started = time.perf_counter()
    sources = args.sources.split(",")
    model = AGAD(calibration="cross-fit" if "cross-fit" in sources else "holdout", max_steps=args.max_steps,
                 target_fpr=args.target_fpr, random_state=seed, device="cpu", verbose=False).fit(fit)
    total_s = time.perf_counter() - started
    scores = {"selection": model.score_samples(selection), "test": model.score_samples(test)}
    n_holdout = model.calibration_["scores_from"]["holdout"]
    # the final model's scores of its own training windows (AGAD.fit holds out the first windows of
    # this permutation), so that every calibration comes from this one fit
    order = np.random.default_rng(seed).permutation(len(fit))
    held_out = model.calibration_scores_[:n_holdout]
    assert np.allclose(model.score_samples(fit[order[:n_holdout]]), held_out, rtol=1e-4), "hold-out moved"
    kept = {"holdout": held_out, "training": model.score_samples(fit[order[n_holdout:]])}
    if "cross-fit" in sources:
        kept["cross-fit"] = model.calibration_scores_
    variants = measure_tails(calibration_pools(kept, sources), scores, args.target_fpr)
    return {"dataset": name, "seed": seed, "n_fit": len(fit), "n_selection": len(selection), "n_test": len(test),
            "steps": model.n_steps_, "kept_step": model.best_step_, "fit_seconds": round(total_s, 1),
            "cross_fit_seconds": model.calibration_["seconds"], "variants": variants,
            # the scores themselves, so that another tail can be measured on them without refitting
            "scores": {name: [round(float(v), 5) for v in values] for name, values in {**kept, **scores}.items()}}


def calibration_pools(kept: dict, sources: list[str]) -> dict:
    """The calibration scores of each source, from the scores one fit kept."""
    pools = {"holdout": kept["holdout"], "cross-fit": kept.get("cross-fit"),
             "holdout+training": np.r_[kept["holdout"], rescale_training_scores(kept["holdout"], kept["training"])]}
    return {source: pools[source] for source in sources if pools[source] is not None}


def measure_tails(pools: dict, scores: dict, target_fpr: float) -> dict:
    """Every calibration source x tail, applied to the SELECTION and TEST scores."""
    variants = {}
    for source, pool in pools.items():
        for tail in TAILS:
            result = calibrate(pool, target_fpr, tail)
            variants[f"{source}/{tail}"] = {
                **{f"fpr_{split}": float(np.mean(np.asarray(s) > result.threshold)) for split, s in scores.items()},
                "expected_fpr": result.expected_fpr, "fpr_interval": list(result.fpr_interval),
                "n_scores": result.n_scores, "tail_used": result.tail}
    return variants


def miss(fpr: float, target: float) -> float:
    """How far an achieved rate is from the target, as |log ratio| (0 = on target; 0.405 = 1.5x off)."""
    return abs(float(np.log(max(fpr, target / 10) / target)))


def summarise_calibration(runs: list[dict], target: float) -> dict:
    variants = list(runs[0]["variants"])
    selection_miss = {v: float(np.mean([miss(r["variants"][v]["fpr_selection"], target) for r in runs]))
                      for v in variants}
    chosen = min(selection_miss, key=selection_miss.get)
    table = {}
    for name in dict.fromkeys(r["dataset"] for r in runs):
        own = [r for r in runs if r["dataset"] == name]
        table[name] = {"n_fit": own[0]["n_fit"], "n_test": own[0]["n_test"],
                       "fit_seconds": float(np.mean([r["fit_seconds"] - r["cross_fit_seconds"] for r in own])),
                       "cross_fit_seconds": float(np.mean([r["cross_fit_seconds"] for r in own])), "variants": {}}
        for v in variants:
            values = {split: [r["variants"][v][f"fpr_{split}"] for r in own] for split in ("selection", "test")}
            table[name]["variants"][v] = {
                **{f"{split}_mean": float(np.mean(x)) for split, x in values.items()},
                **{f"{split}_std": float(np.std(x)) for split, x in values.items()},
                "expected_fpr": float(np.mean([r["variants"][v]["expected_fpr"] for r in own])),
                "interval_upper": float(np.mean([r["variants"][v]["fpr_interval"][1] for r in own]))}
    return {"selection_miss": selection_miss, "chosen_on_selection": chosen, "by_dataset": table}


def print_calibration(summary: dict, target: float) -> None:
    print(f"\n## Achieved FPR at target {target:g} (mean ± std over seeds)\n")
    rows = []
    for name, entry in summary["by_dataset"].items():
        for v, f in entry["variants"].items():
            rows.append([name, entry["n_fit"], v, f"{f['selection_mean']:.4f} ± {f['selection_std']:.4f}",
                         f"{f['test_mean']:.4f} ± {f['test_std']:.4f}", f"{f['expected_fpr']:.4f}",
                         f"{f['interval_upper']:.4f}"])
    print(markdown_table(["data", "fit windows", "calibration/tail", "selection FPR", "test FPR", "expected FPR",
                          "95% upper"], rows))
    print("\nmean |log(FPR / target)| on SELECTION: "
          + ", ".join(f"{v} {m:.3f}" for v, m in summary["selection_miss"].items())
          + f"; chosen: {summary['chosen_on_selection']}")
    print("cost: " + ", ".join(f"{n} fit {e['fit_seconds']:.0f} s + cross-fit {e['cross_fit_seconds']:.0f} s"
                               for n, e in summary["by_dataset"].items()))


# ---------------------------------------------------------------------- part 2
def adaptive_run(args, seed: int) -> dict:
    from bench_learning_loop import TEST_RECORDS, rates, version_one_and_retrain

    run = version_one_and_retrain(args, seed)
    model, modality, test = run["after"], run["modality"], run["test"]
    result = {"seed": seed, "gate": run["entry"]["event"], "retrain_seconds": round(run["retrain_s"], 1)}
    for record in TEST_RECORDS:
        mask = test.source == record
        order = np.argsort(test.position[mask], kind="stable")
        scores, y = model.score_samples(modality.prepare(test.X[mask][order])), test.y[mask][order]
        result[record] = {"best_fpr_at_recall_0.9": best_fpr_at_recall(scores, y, 0.9),
                          "scores": [round(float(v), 5) for v in scores], "y": y.astype(int).tolist()}
        for mode in MODES:
            streams = StreamThresholds(ThresholdConfig(mode=mode, warmup=args.warmup, window=max(args.warmup, 1000),
                                                       quantile=args.quantile))
            started = time.perf_counter()
            thresholds = np.array([streams.apply(record, s, model.threshold_, 1)[0] for s in scores])
            result[record][mode] = {**rates(scores > thresholds, y),
                                    "us_per_window": round(1e6 * (time.perf_counter() - started) / len(scores), 1)}
    return result


def best_fpr_at_recall(scores: np.ndarray, y: np.ndarray, recall: float) -> float:
    """The lowest FPR of any threshold that keeps ``recall`` of the anomalies: what the model's
    ranking allows, whatever the threshold rule (an oracle, for the record only)."""
    anomalous = np.sort(scores[y == 1])
    threshold = anomalous[int(np.floor((1 - recall) * len(anomalous)))]  # flags >= this: at least `recall`
    return round(float(np.mean(scores[y == 0] >= threshold)), 4)


def summarise_adaptive(runs: list[dict]) -> dict:
    records = [k for k in runs[0] if k not in ("seed", "gate", "retrain_seconds")]
    summary = {record: {mode: {f"{k}_{stat}": float(fn([r[record][mode][k] for r in runs]))
                               for k in ("recall", "fpr") for stat, fn in (("mean", np.mean), ("std", np.std))}
                        for mode in MODES} for record in records}
    for record in records:
        best = [r[record]["best_fpr_at_recall_0.9"] for r in runs if "best_fpr_at_recall_0.9" in r[record]]
        if best:
            summary[record]["best possible"] = {"recall_mean": 0.9, "recall_std": 0.0, "fpr_mean": float(np.mean(best)),
                                                "fpr_std": float(np.std(best))}
    return summary


def print_adaptive(summary: dict) -> None:
    print("\n## Per-stream thresholds after one retrain, records in time order (mean ± std over seeds)\n")
    rows = [[record, mode, f"{f['recall_mean']:.3f} ± {f['recall_std']:.3f}", f"{f['fpr_mean']:.4f} ± {f['fpr_std']:.4f}"]
            for record, modes in summary.items() for mode, f in modes.items()]
    print(markdown_table(["record", "threshold", "recall", "FPR"], rows))


def combine(earlier: list[dict], results: dict, target: float) -> None:
    """Summarise the runs of several earlier invocations as if they were one."""
    calibration = [r for e in earlier for r in e.get("calibration", {}).get("runs", [])]
    adaptive = [r for e in earlier for r in e.get("adaptive", {}).get("runs", [])]
    for run in calibration:  # runs that kept their scores are measured again, with every tail there is now
        if "training" in run.get("scores", {}):
            kept = {name: np.asarray(values) for name, values in run["scores"].items()}
            run["variants"] = measure_tails(calibration_pools(kept, list(SOURCES)),
                                            {split: kept[split] for split in ("selection", "test")}, target)
    results["combined_from"] = [e["args"] for e in earlier]
    if calibration:
        results["calibration"] = {"runs": calibration, "summary": summarise_calibration(calibration, target)}
        print_calibration(results["calibration"]["summary"], target)
    if adaptive:
        results["adaptive"] = {"runs": adaptive, "summary": summarise_adaptive(adaptive)}
        print_adaptive(results["adaptive"]["summary"])


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    parts = args.parts.split(",")
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    if args.combine:
        combine([json.loads(Path(f).read_text()) for f in args.combine.split(",")], results, args.target_fpr)
    elif "calibration" in parts:
        runs = []
        for name in args.datasets.split(","):
            for seed in seeds:
                runs.append(calibration_run(name, args, seed))
                Path(args.out).write_text(json.dumps({**results, "calibration": {"runs": runs}}, indent=2))  # so far
                print(f"{name} seed {seed}: " + ", ".join(f"{v} {f['fpr_selection']:.4f}/{f['fpr_test']:.4f}"
                                                          for v, f in runs[-1]["variants"].items())
                      + f" ({runs[-1]['fit_seconds']:.0f} s)", flush=True)
        results["calibration"] = {"runs": runs, "summary": summarise_calibration(runs, args.target_fpr)}
        print_calibration(results["calibration"]["summary"], args.target_fpr)
    if "adaptive" in parts and not args.combine:
        runs = []
        for seed in seeds:
            runs.append(adaptive_run(args, seed))
            Path(args.out).write_text(json.dumps({**results, "adaptive": {"runs": runs}}, indent=2))  # so far
            shown = {k: ({m: f for m, f in v.items() if m not in ("scores", "y")} if isinstance(v, dict) else v)
                     for k, v in runs[-1].items() if k != "seed"}
            print(f"adaptive seed {seed}: " + json.dumps(shown), flush=True)
        results["adaptive"] = {"runs": runs, "summary": summarise_adaptive(runs)}
        print_adaptive(results["adaptive"]["summary"])
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(f"\nwall time {results['wall_seconds']:.0f} s; command: {' '.join(sys.argv)}")
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
