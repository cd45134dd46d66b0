"""UCR sets through `--modality array`: each class in turn normal, the other classes anomalous.

--split validation never reads a TEST file: the normal TRAIN windows of the class are cut into
three folds, seed s trains on two and validates on fold s (plus every TRAIN window of the other
classes), so three seeds validate every normal TRAIN window once. This is where the array
modality's defaults are chosen. --split test trains on every normal TRAIN window of the class
and scores the TEST file, only after the choice.

Models are built as `agad-stream train --modality array --normal LABEL --seed S` builds them
(its parser, `build_modality`, `build_model`), then given a candidate's settings; the
baselines are those `evaluate` fits beside the model (`score_detectors`): its plain
autoencoder, PyOD's IsolationForest and PCA. Every fit is cached in --cache (one JSON line
each, keyed by the model's settings), so a run stopped half-way goes on where it was.

usage: python benchmarks/bench_ucr.py --data DIR --split validation --out benchmarks/results/array_validation.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import REPO, data_path

from agad_stream.training import TrainingConfig
from pipelines.cli import build_parser
from pipelines.offline.command import build_modality, build_model, score_detectors
from pipelines.offline.reports import ranking_metrics
from ucr_sets import SETS, write_npz

#: the AGAD settings compared on validation, over what `train --modality array` builds; "defaults"
#: is exactly what it builds (the array modality's agad_defaults), whatever they are at the time
_CORE = TrainingConfig()
CANDIDATES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "full": {"lambda_adv": _CORE.lambda_adv, "lambda_adcon": _CORE.lambda_adcon, "lambda_lat": _CORE.lambda_lat,
             "aux_bn": _CORE.aux_bn},
    "no-adcon": {"lambda_adcon": 0.0, "aux_bn": False},
    "full-m0.05": {"lambda_adcon": _CORE.lambda_adcon, "aux_bn": True, "adcon_margin": 0.05},
    "no-adcon-latent8": {"lambda_adcon": 0.0, "aux_bn": False, "latent_dim": 8},
    "full-latent8": {"lambda_adcon": _CORE.lambda_adcon, "aux_bn": True, "latent_dim": 8},
}
BASELINES = ("plain-autoencoder", "isolation-forest", "pca")
FOLDS = 3
#: the settings a candidate may change, recorded with each fit
TUNED = ("lambda_adv", "lambda_adcon", "lambda_lat", "aux_bn", "adcon_margin", "latent_dim")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_path("ucr"),
                        help="where the wheels were unpacked (default $AGAD_DATA/ucr or ../shared/data/ucr)")
    parser.add_argument("--split", choices=("validation", "test"), required=True)
    parser.add_argument("--datasets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--candidates", default="defaults",
                        help=f"comma-separated, from {', '.join(CANDIDATES)}; the baselines come with 'defaults'")
    parser.add_argument("--cache", type=Path, help="one JSON line per fit (default runs/ucr/SPLIT.jsonl)")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args()
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.candidates = [c for c in args.candidates.split(",") if c]
    unknown = sorted(set(args.datasets) - set(SETS)) + sorted(set(args.candidates) - set(CANDIDATES))
    if unknown:
        raise SystemExit(f"unknown data sets or candidates: {', '.join(unknown)}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.cache = args.cache or REPO / "runs" / "ucr" / f"{args.split}.jsonl"
    return args


def train_args(train_file: Path, label: str, seed: int) -> argparse.Namespace:
    """What `agad-stream train` parses for this class and seed (every other option at its default)."""
    return build_parser(["train"]).parse_args(
        ["train", "--modality", "array", "--data", str(train_file), "--out", "unused", "--normal", label,
         "--seed", str(seed), "--device", "cpu", "--quiet"])


def settings_key(params: dict[str, Any]) -> str:
    """A short digest of a model's settings (what it was, not what it was called)."""
    kept = {k: v for k, v in params.items() if k not in ("verbose", "device")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def split_windows(train_file: Path, test_file: Path, label: str, seed: int, split: str):
    """(modality, normal fit windows [N, C, L], evaluation windows, their labels) for one class and seed."""
    args = train_args(train_file, label, seed)
    modality = build_modality("array", args)
    train = modality.load(train_file)
    normal = np.flatnonzero(train.y == 0)
    if split == "validation":
        folds = np.array_split(np.random.default_rng(0).permutation(normal), FOLDS)
        held = folds[seed % FOLDS]
        fit = np.setdiff1d(normal, held)
        evaluation = train.subset(np.sort(np.concatenate([held, np.flatnonzero(train.y == 1)])))
    else:
        fit = normal
        evaluation = modality.load(test_file)
    return args, modality, modality.prepare(train.X[fit]), modality.prepare(evaluation.X), evaluation.y


def read_cache(path: Path) -> dict[tuple, dict[str, Any]]:
    """Fits by (data set, class, seed, settings): a fit is the same whatever candidate name asked for it."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["dataset"], r["class"], r["seed"], r["settings"]): r for r in rows}


def run_task(args, cache: dict, name: str, dataset: str, label: str, seed: int, files: tuple[Path, Path]) -> list[dict]:
    """One candidate (with 'defaults', the baselines too) on one class and seed; a cached fit is reused."""
    targs, modality, X_fit, X_eval, y_eval = split_windows(*files, label, seed, args.split)
    model = build_model(modality, targs).set_params(**CANDIDATES[name])
    key = settings_key(model.get_params())
    baselines = BASELINES if name == "defaults" else ()
    keys = {"AGAD": key, **{b: f"{b}@{key}" for b in baselines}}
    if any((dataset, label, seed, k) not in cache for k in keys.values()):
        started = time.perf_counter()
        model.fit(X_fit)
        seconds = time.perf_counter() - started
        scored = score_detectors(model, X_fit, None, X_eval, list(baselines))
        for detector, s in scored.items():
            row = {"dataset": dataset, "class": label, "seed": seed, "settings": keys[detector],
                   "auroc": ranking_metrics(y_eval.astype(int), s.scores)["auroc"],
                   "fit_seconds": round(seconds if detector == "AGAD" else s.fit_seconds, 2),
                   "n_fit": len(X_fit), "n_normal": int(np.sum(y_eval == 0)),
                   "n_anomalous": int(np.sum(y_eval == 1))}
            if detector == "AGAD":
                row.update(steps=model.n_steps_, kept_step=model.best_step_, latent_dim=model.latent_dim_,
                           params={k: v for k, v in model.get_params().items() if k in TUNED})
            cache[dataset, label, seed, keys[detector]] = row
            with open(args.cache, "a") as f:
                f.write(json.dumps(row) + "\n")
        print(f"  {dataset} class {label} seed {seed} {name}: "
              + ", ".join(f"{d} {cache[dataset, label, seed, k]['auroc']:.4f}" for d, k in keys.items())
              + f" ({model.n_steps_} steps, {seconds:.0f} s)", flush=True)
    return [{**cache[dataset, label, seed, k], "detector": name if d == "AGAD" else d} for d, k in keys.items()]


def summary(rows: list[dict], datasets: list[str], seeds: list[int]) -> dict[str, Any]:
    """Per set and detector: each seed's mean AUROC over the classes, their mean and std, and per class."""
    out: dict[str, Any] = {}
    for dataset in datasets:
        mine = [r for r in rows if r["dataset"] == dataset]
        detectors = sorted({r["detector"] for r in mine}, key=lambda d: [r["detector"] for r in mine].index(d))
        classes = sorted({r["class"] for r in mine})
        block = {}
        for d in detectors:
            auroc = {(r["class"], r["seed"]): r["auroc"] for r in mine if r["detector"] == d}
            per_seed = [float(np.mean([auroc[c, s] for c in classes])) for s in seeds]
            block[d] = {"mean": float(np.mean(per_seed)), "std": float(np.std(per_seed)), "per_seed": per_seed,
                        "per_class": {c: [auroc[c, s] for s in seeds] for c in classes},
                        "fit_seconds": float(np.mean([r["fit_seconds"] for r in mine if r["detector"] == d]))}
            params = next((r.get("params") for r in mine if r["detector"] == d and "params" in r), None)
            if params:
                block[d]["params"] = params
        out[dataset] = {"classes": classes, "n_fit": {c: next(r["n_fit"] for r in mine if r["class"] == c) for c in classes},
                        "detectors": block}
    return out


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*calibration windows cannot support")  # 10-30 normals per fit
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    cache = read_cache(args.cache)
    started = time.perf_counter()
    files = {d: write_npz(args.data, SETS[d], REPO / "runs" / "ucr" / "npz") for d in args.datasets}
    rows = []
    for name in args.candidates:  # candidate by candidate, so the first ones are complete first
        for dataset in args.datasets:
            labels = sorted(set(np.load(files[dataset][0])["y"].tolist()))
            print(f"{name} on {dataset}: classes {', '.join(labels)}", flush=True)
            for label in labels:
                for seed in args.seeds:
                    rows += run_task(args, cache, name, dataset, label, seed, files[dataset])
    result = summary(rows, args.datasets, args.seeds)
    for dataset, block in result.items():
        print(f"\n{dataset} ({args.split}, mean over {len(block['classes'])} classes, ± std over seeds {args.seeds})")
        for d, r in block["detectors"].items():
            print(f"  {d:22s} {r['mean']:.4f} ± {r['std']:.4f}")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                        "command": " ".join(["python", *sys.argv]),
                                        "wall_seconds": round(time.perf_counter() - started),
                                        "results": result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
