"""The paper's one-vs-rest image benchmark, run through the same AGAD core.

For each class c: normal = the training images of c; with supervision level
γ > 0, labelled anomalies (a/(n + a) = γ) are drawn from the other classes'
training images. Test = the whole test set, c normal and everything else
anomalous. AGAD trains with its defaults (early stopping on held-out normal
training images) unless a budget is given: nothing is chosen on the test set.
With --validation the test set is never read: a stratified sixth of the training
images is held out and plays its part, for choosing settings (see --agad).
Baselines (PyOD's PCA, IsolationForest, ECOD, DeepSVDD, ... on pixels) are
unsupervised and fitted on the normal training images; the ablations are AGAD
without pseudo-anomalies (λ_adcon = 0, no auxiliary BN) and the plain
autoencoder (AGAD's generator with L_con only).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from modalities.image import ImageModality
from pipelines.offline.baselines import ALL_BASELINE_NAMES, build_baseline, parse_agad_settings

#: methods that can use labelled anomalies (γ > 0); the other baselines are fitted once, on normals
SUPERVISED = ("AGAD", "agad-no-adcon")
METHODS = ("AGAD", *ALL_BASELINE_NAMES)
DEFAULT_METHODS = ("AGAD", "agad-no-adcon", "plain-autoencoder", "pca", "isolation-forest", "ecod", "deep-svdd")
#: share of each class's training images held out as the evaluation set by --validation
VALIDATION_FRACTION = 1 / 6


def register(subparsers) -> None:
    p = subparsers.add_parser("bench-images", help="one-vs-rest AUROC on Fashion-MNIST/MNIST (the paper's image table)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="directory in the (Fashion-)MNIST IDX layout, or an .npz with X, y")
    p.add_argument("--test-data", help="for .npz input: a second .npz used as the test set")
    p.add_argument("--classes", default="all", help="comma-separated normal classes, or 'all' (default)")
    p.add_argument("--gammas", default="0", help="supervision levels γ = a/(n+a), comma-separated (default 0)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--max-steps", type=int, help="AGAD's step budget (default: AGAD's, with early stopping)")
    p.add_argument("--epochs", type=int, help="AGAD's budget in epochs instead of steps")
    p.add_argument("--batch-size", type=int, help="default: AGAD's auto (the paper: 256)")
    p.add_argument("--channels", help="conv widths of G and D, e.g. 64,128,256 (the paper's); default: AGAD's auto")
    p.add_argument("--generator", default="naive", help="naive, unet or unetpp (the paper's best on images)")
    p.add_argument("--size", type=int, default=32, help="resize images to SIZE x SIZE (paper: 32); 0 keeps native size")
    p.add_argument("--train-limit", type=int, default=0, help="use at most this many normal training images per class (0 = all)")
    p.add_argument("--agad", action="append", default=[], metavar="NAME=VALUE",
                   help="an AGAD constructor parameter, e.g. --agad anomaly_loss=margin (repeatable; VALUE read as JSON when it parses)")
    p.add_argument("--validation", action="store_true",
                   help="choose settings without the test set: evaluate on a held-out sixth of the training images")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the --validation hold-out (default 0)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"which methods to run, from {', '.join(METHODS)}")
    p.add_argument("--device", default="auto")
    p.add_argument("--torch-threads", type=int, default=0,
                   help="CPU threads for torch (default 0: torch's own choice; 1 is faster on a busy machine)")
    p.add_argument("--out", default="bench_images.json", help="results JSON, rewritten after every run")
    p.add_argument("--resume", action="store_true", help="skip runs already present in --out")
    p.add_argument("--verbose", action="store_true", help="show per-epoch progress bars too")
    p.set_defaults(func=run)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def load_split(modality: ImageModality, path: Path, split: str, test_path: str | None):
    """Prepared images [N, 1, H, W] and class ids for one split."""
    source = Path(test_path) if (split == "test" and test_path) else path
    windows = modality.load(source, split=split)
    if "class" not in windows.info:
        raise ValueError(f"{source}: the benchmark needs class labels")
    return modality.prepare(windows.X), windows.info["class"]


def draw_labelled_anomalies(classes: np.ndarray, normal_class: int, n_normal: int, gamma: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Indices of a = round(γ n / (1 - γ)) training images of other classes, so that a/(n + a) = γ."""
    if gamma <= 0:
        return np.empty(0, dtype=np.int64)
    if gamma >= 1:
        raise ValueError(f"gamma must lie in [0, 1), got {gamma}")
    others = np.flatnonzero(classes != normal_class)
    n_anomalies = min(len(others), int(round(gamma * n_normal / (1 - gamma))))
    return rng.choice(others, size=max(1, n_anomalies), replace=False)


def validation_split(classes: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out) with VALIDATION_FRACTION of every class held out."""
    rng = np.random.default_rng(seed)
    held_out = np.concatenate([rng.choice(members, size=max(1, round(len(members) * VALIDATION_FRACTION)), replace=False)
                               for members in (np.flatnonzero(classes == c) for c in np.unique(classes))])
    return np.setdiff1d(np.arange(len(classes)), held_out), np.sort(held_out)


def run(args) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    import torch

    from agad_stream import AGAD

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    modality = ImageModality(size=args.size or None)
    # --agad settings win over the shortcuts (--max-steps, --channels, ...) they repeat
    agad_params = {"max_steps": args.max_steps, "epochs": args.epochs, "batch_size": args.batch_size or "auto",
                   "channels": _ints(args.channels) if args.channels else "auto", "generator": args.generator,
                   "device": args.device, "verbose": args.verbose, **parse_agad_settings(args.agad)}
    X_train, c_train = load_split(modality, Path(args.data_dir), "train", None)
    if args.validation:
        kept, held_out = validation_split(c_train, args.split_seed)
        X_test, c_test = X_train[held_out], c_train[held_out]
        X_train, c_train = X_train[kept], c_train[kept]
    else:
        X_test, c_test = load_split(modality, Path(args.data_dir), "test", args.test_data)
    classes = sorted(set(c_train.tolist())) if args.classes == "all" else _ints(args.classes)
    gammas = [float(g) for g in args.gammas.split(",")]
    seeds = _ints(args.seeds)
    out = Path(args.out)
    results = json.loads(out.read_text())["runs"] if args.resume and out.exists() else []
    done = {(r["method"], r["gamma"], r["seed"], r["class"]) for r in results}

    # Class by class, so an interrupted run (see --resume) still leaves complete rows per class.
    plan = [(m, g, s, c) for s in seeds for c in classes for g in gammas for m in methods
            if m in SUPERVISED or g == gammas[0]]
    for method, gamma, seed, normal_class in tqdm(plan, desc="bench-images", unit="run"):
        if (method, gamma, seed, normal_class) in done:
            continue
        rng = np.random.default_rng([seed, normal_class, int(gamma * 1e6)])
        normal = np.flatnonzero(c_train == normal_class)
        if args.train_limit:
            normal = rng.choice(normal, size=min(args.train_limit, len(normal)), replace=False)
        labelled = draw_labelled_anomalies(c_train, normal_class, len(normal), gamma, rng)
        y_test = (c_test != normal_class).astype(int)
        started = time.perf_counter()
        model = AGAD(**{**agad_params, "random_state": seed})
        if method in SUPERVISED:
            detector = model if method == "AGAD" else build_baseline(method, model)
            idx = np.concatenate([normal, labelled])
            detector.fit(X_train[idx], np.r_[np.zeros(len(normal)), np.ones(len(labelled))])
        else:
            detector = build_baseline(method, model).fit(X_train[normal])
        scores = detector.score_samples(X_test)
        results.append({"method": method, "gamma": gamma, "seed": seed, "class": normal_class,
                        "auroc": float(roc_auc_score(y_test, scores)), "n_normal": int(len(normal)),
                        "n_labelled_anomalies": int(len(labelled)), "seconds": time.perf_counter() - started,
                        "n_steps": getattr(detector, "n_steps_", None)})
        _write_json(out, {"config": {k: v for k, v in vars(args).items() if k != "func"}, "runs": results})

    table = format_table(results, classes, gammas)
    print(table)
    _write_json(out, {"config": {k: v for k, v in vars(args).items() if k != "func"}, "runs": results,
                      "summary": summarise(results, gammas), "table_markdown": table})
    return 0


def summarise(results: list[dict], gammas: list[float]) -> list[dict]:
    """Per method and γ: AUROC per class (mean over seeds), mean ± std over classes, std over seeds."""
    rows = []
    for method in dict.fromkeys(r["method"] for r in results):
        for gamma in gammas:
            runs = [r for r in results if r["method"] == method and (r["gamma"] == gamma or method not in SUPERVISED)]
            if not runs:
                continue
            per_class = {c: float(np.mean([r["auroc"] for r in runs if r["class"] == c]))
                         for c in sorted({r["class"] for r in runs})}
            per_seed = [np.mean([r["auroc"] for r in runs if r["seed"] == s]) for s in sorted({r["seed"] for r in runs})]
            rows.append({"method": method, "gamma": gamma, "per_class": per_class,
                         "mean": float(np.mean(list(per_class.values()))),
                         "std_over_classes": float(np.std(list(per_class.values()))),
                         "std_over_seeds": float(np.std(per_seed))})
    return rows


def format_table(results: list[dict], classes: list[int], gammas: list[float]) -> str:
    """The paper's layout: one row per method and γ, AUROC (%) per normal class, then mean ± std."""
    header = "| method | γ | " + " | ".join(str(c) for c in classes) + " | mean ± std |"
    lines = [header, "|" + "---|" * (len(classes) + 3)]
    for row in summarise(results, gammas):
        cells = [f"{100 * row['per_class'][c]:.1f}" if c in row["per_class"] else "–" for c in classes]
        gamma = f"{row['gamma']:g}" if row["method"] in SUPERVISED else "–"
        lines.append(f"| {row['method']} | {gamma} | " + " | ".join(cells)
                     + f" | {100 * row['mean']:.1f} ± {100 * row['std_over_classes']:.1f} |")
    return "\n".join(dict.fromkeys(lines))


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
