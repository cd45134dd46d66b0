"""With labels on images: Fashion-MNIST one-vs-rest, seen types, one known type, the seed's Table 5 and Figure 4.

Protocol (fixed before any run). Each normal class c of --classes is one task (the paper's
one-vs-rest): the anomalies are the nine other classes. Native 28x28 images in [0, 1].
- training: --normal-images images of class c, drawn per seed, plus k labelled anomalies:
  - "seen" (protocol 1, today's bench-images): the first k of a seeded permutation of every
    other class's training images, so every test anomaly type can be among the labels;
  - "known" (protocol 2, Deep SAD's one known type): the first k of a seeded permutation of
    ONE class's training images, the known class (c + 1 + seed) mod 10: each seed rotates it
    to the next class, so the three seeds of a task label three different types. No image of
    the eight novel classes ever enters training (the result records the classes it trained on).
  k = round(γ n / (1 - γ)) for a supervision level γ = k / (n + k), as in bench-images; the
  draws are nested, so a larger k holds every smaller one.
- test: the whole Fashion-MNIST test set (--test-per-class limits it, for quick runs). AUROC
  of all anomalies against c; per class against c; for "known", the known class and the
  pooled novel classes; recall at 1% FPR on c's test images; recall and FPR at the
  detector's own threshold (its held-out training normals, 1% target FPR).
- budget: every AGAD variant and D alone get --max-steps steps (each AGAD variant stops
  early on held-out normals within them); Deep SAD --deep-sad-epochs; the same for every row.
Protocols (--protocols): "seen" and "known" at --gammas with every detector of
labels_protocol.py (the tabular ones on flattened images); "table5": AGAD with AdvProp (aux
BN) and Freeze-BN each on or off, across --gammas, under "seen" and "known" (--table5-kinds; at γ = 0
Freeze-BN has nothing to freeze: those runs are AGAD's own); "figure4": AGAD at
--figure-gammas, seen types, box plots of class-wise scores with Tukey's fences (seed 0);
"efficiency": one known type at --label-counts labels, every label-using detector.

Every run lands in --out as soon as it is done; a rerun skips the runs already there (runs
shared by protocols run once). The first seed runs everything first. The tables are printed
and the PNGs written beside --out at the end (--report-only: from the cache alone).

usage: nice env OMP_NUM_THREADS=1 python benchmarks/bench_labels_images.py [--data DIR] [--out FILE] [--classes 0,1] ...
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from common import REPO, data_path, update_block
from labels_protocol import (DETECTOR_NAMES, NEEDS_LABELS, UNSUPERVISED_ONLY, build_detector, load_cache,
                             one_known_type_split, save_cache, stratified_sample)
from modalities.image import ImageModality

DEFAULT_OUT = REPO / "benchmarks" / "results" / "labels_images.json"
N_CLASSES = 10
PROTOCOLS = ("seen", "known", "table5", "figure4", "efficiency")
#: the seed's Table 5: AGAD with AdvProp (aux_bn) and Freeze-BN (freeze_bn) on or off
TABLE5 = {"agad": {}, "agad-no-freeze-bn": {"freeze_bn": False}, "agad-no-advprop": {"aux_bn": False},
          "agad-neither": {"aux_bn": False, "freeze_bn": False}}
#: without labelled anomalies Freeze-BN has nothing to freeze: the variant is the same fit as this one
SAME_WITHOUT_LABELS = {"agad-no-freeze-bn": "agad", "agad-neither": "agad-no-advprop"}
ALL_DETECTORS = (*DETECTOR_NAMES, *[name for name in TABLE5 if name != "agad"])


def protocol_parser(description: str, data: Path, data_help: str, normal_option: str, normal_help: str,
                    normal_default: int, protocols: str, out: Path) -> argparse.ArgumentParser:
    """The options of the label protocols, shared by the image and the audio benchmark."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=data, help=data_help)
    parser.add_argument("--out", type=Path, default=out, help="the JSON cache of results (resumed when it exists)")
    parser.add_argument("--classes", default=",".join(map(str, range(N_CLASSES))), help="normal classes, one task each")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--protocols", default=protocols, help=f"from {', '.join(PROTOCOLS)}")
    parser.add_argument("--detectors", default=",".join(DETECTOR_NAMES),
                        help="detectors of the seen, known and efficiency protocols")
    parser.add_argument("--gammas", default="0,0.01,0.03,0.05,0.1", help="supervision levels γ = k / (n + k)")
    parser.add_argument("--table5-kinds", default="seen,known", help="the label protocols Table 5 runs under")
    parser.add_argument("--figure-gammas", default="0.05,0.2", help="γ of the box plots (Figure 4)")
    parser.add_argument("--label-counts", default="5,10,20,50,100,200", help="labelled anomalies of the known class")
    parser.add_argument(normal_option, dest="normal_images", type=int, default=normal_default, help=normal_help)
    parser.add_argument("--max-steps", type=int, default=1000, help="step budget of every AGAD variant and of D alone")
    parser.add_argument("--deep-sad-epochs", type=int, default=50, help="Deep SAD training epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="print the tables and write the PNGs from --out")
    parser.add_argument("--update", type=Path, help="markdown page whose <!-- labels_images:begin NAME --> ... "
                        "<!-- labels_images:end NAME --> block gets the report (NAME: --block)")
    parser.add_argument("--block", default="results", help="the block's name on the --update page")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = protocol_parser(__doc__.splitlines()[0], data_path("fashion-mnist"),
                             "Fashion-MNIST in its IDX layout (default $AGAD_DATA/fashion-mnist or ../shared/data/fashion-mnist)",
                             "--normal-images", "training images of the normal class", 2000, ",".join(PROTOCOLS), DEFAULT_OUT)
    parser.add_argument("--test-per-class", type=int, default=0, help="test images per class (0: all 1,000)")
    return checked(parser.parse_args(argv))


def checked(args: argparse.Namespace) -> argparse.Namespace:
    """The parsed lists of the protocol options, or a SystemExit naming every bad one."""
    try:
        args.class_list = [int(c) for c in args.classes.split(",")]
        args.seed_list = [int(s) for s in args.seeds.split(",")]
        args.gamma_list = [float(g) for g in args.gammas.split(",")]
        args.figure_gamma_list = [float(g) for g in args.figure_gammas.split(",")]
        args.count_list = [int(k) for k in args.label_counts.split(",")]
    except ValueError:
        raise SystemExit("--classes, --seeds and --label-counts take comma-separated integers, --gammas and "
                         "--figure-gammas comma-separated numbers") from None
    problems = [f"--classes: {c} is not a class (0-9)" for c in args.class_list if not 0 <= c < N_CLASSES]
    problems += [f"γ {g} must lie in [0, 1)" for g in args.gamma_list + args.figure_gamma_list if not 0 <= g < 1]
    problems += [f"--label-counts: {k} must be positive" for k in args.count_list if k < 1]
    args.protocol_list = [p for p in args.protocols.split(",") if p]
    problems += [f"--protocols: unknown {p}; choose from {', '.join(PROTOCOLS)}" for p in args.protocol_list
                 if p not in PROTOCOLS]
    args.table5_kind_list = [k for k in args.table5_kinds.split(",") if k]
    problems += [f"--table5-kinds: unknown {k}; choose from seen, known" for k in args.table5_kind_list
                 if k not in ("seen", "known")]
    args.detector_list = [d for d in args.detectors.split(",") if d]
    problems += [f"--detectors: unknown {d}; choose from {', '.join(DETECTOR_NAMES)}" for d in args.detector_list
                 if d not in DETECTOR_NAMES]
    if problems:
        raise SystemExit("; ".join(problems))
    if not args.report_only and "deep-sad" in args.detector_list and importlib.util.find_spec("deepod") is None:
        raise SystemExit("deep-sad needs the deepod package: pip install --no-deps deepod==0.4.1, "
                         "or leave deep-sad out of --detectors")
    return args


def settings(args: argparse.Namespace) -> dict:
    """What a cached result depends on; a cache written under other settings is refused. The
    classes and seeds run so far are recorded beside them (a rerun may add more)."""
    return {"data": "Fashion-MNIST", "size": "28x28 native", "normal_images": args.normal_images,
            "test_per_class": args.test_per_class, "max_steps": args.max_steps, "deep_sad_epochs": args.deep_sad_epochs,
            "known_class": "(normal class + 1 + seed) mod 10", "gamma": "k / (n + k)"}


def labels_for(gamma: float, n_normal: int) -> int:
    """k labelled anomalies for supervision level γ = k / (n + k), at least one when γ > 0."""
    return 0 if gamma == 0 else max(1, int(round(gamma * n_normal / (1 - gamma))))


def known_class(normal_class: int, seed: int) -> int:
    """The labelled type of the one-known-type protocol: the next class after the normal one,
    moved on by one per seed (never the normal class for seeds 0-8)."""
    return (normal_class + 1 + seed) % N_CLASSES


def key(detector: str, kind: str, k: int, normal_class: int, seed: int) -> str:
    return f"{detector}|{kind}|{k}|{normal_class}|{seed}"


def canonical(detector: str, kind: str, k: int) -> tuple[str, str, int]:
    """Runs that are the same fit share one key: no labels means no kind, and no Freeze-BN."""
    if k == 0:
        return SAME_WITHOUT_LABELS.get(detector, detector), "none", 0
    return detector, kind, k


def jobs(args: argparse.Namespace, n_normal: int) -> list[tuple[str, str, int, int, int]]:
    """(detector, kind, k, normal class, seed) of every run the protocols need, each once: the
    first seed in full first, then the other seeds; class by class within a seed."""
    wanted: list[tuple[str, str, int]] = []
    gamma_counts = [labels_for(g, n_normal) for g in args.gamma_list]
    for protocol in args.protocol_list:
        if protocol in ("seen", "known"):
            wanted += [(d, protocol, k) for k in gamma_counts for d in args.detector_list]
        elif protocol == "table5":
            wanted += [(d, kind, k) for kind in args.table5_kind_list for k in gamma_counts for d in TABLE5]
        elif protocol == "figure4":
            wanted += [("agad", "seen", labels_for(g, n_normal)) for g in args.figure_gamma_list]
        else:
            wanted += [(d, "known", k) for k in args.count_list for d in args.detector_list if d not in UNSUPERVISED_ONLY]
    runs = dict.fromkeys(canonical(*w) for w in wanted
                         if not (w[2] == 0 and w[0] in NEEDS_LABELS) and not (w[2] > 0 and w[0] in UNSUPERVISED_ONLY))
    return [(d, kind, k, c, s) for s in args.seed_list for c in args.class_list for d, kind, k in runs]


def training_set(classes: np.ndarray, normal_class: int, kind: str, k: int, n_normal: int, seed: int):
    """(normal indices, labelled-anomaly indices) into the training images, for one run."""
    groups = np.full(len(classes), "train")
    if kind == "known":
        return one_known_type_split(classes, groups, ["train"], known_class(normal_class, seed), n_normal, k, seed,
                                    normal_class=normal_class)
    # the same normals as the one-known-type split draws
    normals = stratified_sample(groups, np.flatnonzero(classes == normal_class), n_normal, np.random.default_rng([seed, 0]))
    others = np.flatnonzero(classes != normal_class)
    if k > len(others):
        raise ValueError(f"{k} labelled anomalies asked for, the other classes hold {len(others)} training images")
    return normals, np.sort(np.random.default_rng([seed, 2]).permutation(others)[:k])


def evaluate(scores: np.ndarray, threshold: float, classes: np.ndarray, normal_class: int,
             known: int | None) -> dict:
    """AUROC and recall at 1% FPR (on the normal test images) of all anomalies, of each class,
    and with a known class of the known and the pooled novel ones; figures at the threshold;
    Tukey box statistics of each class's scores (Figure 4)."""
    from matplotlib.cbook import boxplot_stats

    normal = scores[classes == normal_class]
    at_1pct = float(np.quantile(normal, 0.99, method="higher"))

    def figures(mask: np.ndarray) -> dict:
        s = scores[mask]
        return {"auroc": float(roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(s))], np.r_[normal, s])),
                "recall_at_1pct_fpr": float(np.mean(s > at_1pct)), "recall_at_threshold": float(np.mean(s > threshold))}

    groups = {"all": classes != normal_class, **{str(c): classes == c for c in range(N_CLASSES) if c != normal_class}}
    if known is not None:
        groups.update(known=classes == known, novel=(classes != normal_class) & (classes != known))
    present = sorted(set(classes.tolist()))
    boxes = boxplot_stats([scores[classes == c] for c in present], whis=1.5)
    return {"figures": {name: figures(mask) for name, mask in groups.items() if mask.any()},
            "fpr_at_threshold": float(np.mean(normal > threshold)), "threshold": float(threshold),
            "boxes": {str(c): {**{name: float(b[name]) for name in ("med", "q1", "q3", "whislo", "whishi", "mean")},
                               "outliers": int(len(b["fliers"]))} for c, b in zip(present, boxes)}}


def run_one(detector: str, kind: str, k: int, normal_class: int, seed: int, data: dict,
            args: argparse.Namespace) -> dict:
    normals, labelled = training_set(data["classes"], normal_class, kind, k, args.normal_images, seed)
    X = np.concatenate([data["X"][normals], data["X"][labelled]])
    y = np.r_[np.zeros(len(normals), np.int8), np.ones(len(labelled), np.int8)]
    base = "agad" if detector in TABLE5 else detector
    model = build_detector(base, seed, args.max_steps, args.deep_sad_epochs, **TABLE5.get(detector, {}))
    started = time.process_time()
    model.fit(X, y if k else None)
    fitted = time.process_time()
    known = known_class(normal_class, seed) if kind == "known" else None
    item = data["item_of_test_window"]  # an item (image, clip) scores the mean of its windows' scores
    scores = np.bincount(item, weights=model.score_samples(data["X_test"])) / np.bincount(item)
    result = evaluate(scores, model.threshold_, data["classes_test"], normal_class, known)
    trained_on = np.concatenate([data["classes"][normals], data["classes"][labelled]])
    result.update(detector=detector, kind=kind, n_labelled=k, n_normal=int(len(normals)),
                  gamma=k / (len(normals) + k), normal_class=normal_class, known_class=known, seed=seed,
                  training_classes={str(c): int(n) for c, n in zip(*np.unique(trained_on, return_counts=True))},
                  fit_cpu_s=fitted - started, score_cpu_s=time.process_time() - fitted,
                  steps=getattr(model, "n_steps_", None), kept_step=getattr(model, "best_step_", None))
    return result


def load_images(args: argparse.Namespace) -> dict:
    modality = ImageModality(size=None)
    try:
        train, test = modality.load(args.data, split="train"), modality.load(args.data, split="test")
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"--data {args.data}: {error}") from None
    classes_test = test.info["class"]
    keep = np.arange(len(classes_test))
    if args.test_per_class:
        keep = np.sort(np.concatenate([np.flatnonzero(classes_test == c)[:args.test_per_class]
                                       for c in range(N_CLASSES)]))
    return {"X": modality.prepare(train.X), "classes": train.info["class"],
            "X_test": modality.prepare(test.X[keep]), "classes_test": classes_test[keep],
            "item_of_test_window": np.arange(len(keep))}


# --------------------------------------------------------------------------- report
def runs_of(cache: dict, detector: str, kind: str, k: int) -> list[dict]:
    detector, kind, k = canonical(detector, kind, k)
    return [r for r in cache["results"].values() if (r["detector"], r["kind"], r["n_labelled"]) == (detector, kind, k)]


def cell(runs: list[dict], group: str, metric: str, percent: bool = False, n_classes_run: int = 1) -> str:
    """Mean ± std over seeds of the mean over the normal classes, with the counts when fewer seeds
    than 3 or fewer classes than the ``n_classes_run`` of the report went into it."""
    if not runs:
        return "–"
    per_seed = {}
    for r in runs:
        if group in r["figures"]:
            per_seed.setdefault(r["seed"], []).append(r["figures"][group][metric])
    means = [np.mean(v) for v in per_seed.values()]
    scale = 100 if percent else 1
    text = f"{scale * np.mean(means):.{1 if percent else 3}f} ± {scale * np.std(means):.{1 if percent else 3}f}"
    n_classes = max(len(v) for v in per_seed.values())
    return text if len(means) == 3 and n_classes >= n_classes_run else f"{text} (seeds {len(means)}, classes {n_classes})"


def table(rows: list[tuple[str, list[str]]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join([name, *cells]) + " |" for name, cells in rows])


def report(cache: dict, args: argparse.Namespace) -> str:
    n = cache["settings"]["normal_images"]

    def cell_(runs: list[dict], group: str, metric: str, percent: bool = False) -> str:
        return cell(runs, group, metric, percent, len(cache["classes"]))

    gammas = args.gamma_list
    counts = {g: labels_for(g, n) for g in gammas}
    detectors = [d for d in DETECTOR_NAMES if any(r["detector"] == d for r in cache["results"].values())]
    parts = [f"Settings: {json.dumps(cache['settings'])}; classes run: {cache['classes']}; seeds run: {cache['seeds']}; "
             f"{len(cache['results'])} runs. Cells: mean ± std over seeds of the mean over normal classes (AUROC in %)."]
    def ran(kind: str, names) -> bool:
        return any(r["kind"] == kind and r["detector"] in names for r in cache["results"].values())

    if ran("seen", set(DETECTOR_NAMES) - {"agad"}):
        parts.append("Seen types (protocol 1), AUROC of all anomalies:\n\n" + table(
            [(d, [cell_(runs_of(cache, d, "seen", counts[g]), "all", "auroc", True) for g in gammas]) for d in detectors],
            ["detector", *[f"γ={g:g} (k={counts[g]})" for g in gammas]]))
    if ran("known", DETECTOR_NAMES) and any(runs_of(cache, "agad", "known", k) for k in counts.values() if k):
        parts.append("One known type (protocol 2), AUROC known / novel:\n\n" + table(
            [(d, [f"{cell_(runs_of(cache, d, 'known', counts[g]), 'known', 'auroc', True)} / "
                  f"{cell_(runs_of(cache, d, 'known', counts[g]), 'novel', 'auroc', True)}" if counts[g] else
                  cell_(runs_of(cache, d, "none", 0), "all", "auroc", True) for g in gammas]) for d in detectors],
            ["detector", *[f"γ={g:g} (k={counts[g]})" for g in gammas]]))
    for kind, group in (("seen", "all"), ("known", "novel")):
        if not ran(kind, set(TABLE5) - {"agad"}):
            continue
        parts.append(f"Table 5 (AdvProp x Freeze-BN), {kind} types, AUROC {group}:\n\n" + table(
            [(f"{name} (AdvProp {'off' if options.get('aux_bn') is False else 'on'}, Freeze-BN "
              f"{'off' if options.get('freeze_bn') is False else 'on'})",
              [cell_(runs_of(cache, name, kind, counts[g]), group if counts[g] else "all", "auroc", True) for g in gammas])
             for name, options in TABLE5.items()],
            ["AGAD", *[f"γ={g:g}" for g in gammas]]))
    curve = curve_tasks(cache)
    efficiency = sorted({r["n_labelled"] for r in curve["results"].values() if r["kind"] == "known"})
    label_users = [d for d in detectors if d not in UNSUPERVISED_ONLY]
    for metric, group in (("recall_at_1pct_fpr", "known"), ("auroc", "known"), ("auroc", "novel")):
        if len(efficiency) < 2:
            break
        parts.append(f"Label efficiency (one known type; classes {curve['classes']}), {metric} {group}:\n\n" + table(
            [(d, [cell(runs_of(curve, d, "known", k), group, metric, n_classes_run=len(curve["classes"]))
                  for k in efficiency]) for d in label_users],
            ["detector", *[f"{k} labels" for k in efficiency]]))
    return "\n\n".join(parts)


def curve_tasks(cache: dict) -> dict:
    """The cache's normal classes that ran the one-known-type protocol at several label counts:
    a label-efficiency curve averages those only, so no point mixes in a task the others lack."""
    classes = [c for c in cache["classes"] if len({r["n_labelled"] for r in cache["results"].values()
                                                   if r["kind"] == "known" and r["normal_class"] == c}) > 1]
    return {**cache, "classes": classes,
            "results": {k: r for k, r in cache["results"].items() if r["normal_class"] in classes}}


def plot_efficiency(cache: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({r["n_labelled"] for r in cache["results"].values() if r["kind"] == "known"})
    panels = [("recall_at_1pct_fpr", "known", "recall at 1% FPR, known type"), ("auroc", "known", "AUROC, known type"),
              ("recall_at_1pct_fpr", "novel", "recall at 1% FPR, novel types"), ("auroc", "novel", "AUROC, novel types")]
    figure, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    for ax, (metric, group, title) in zip(axes.ravel(), panels):
        for d in (d for d in DETECTOR_NAMES if d not in UNSUPERVISED_ONLY):
            points = []
            for i, k in enumerate(counts):
                per_seed = {}
                for r in runs_of(cache, d, "known", k):
                    per_seed.setdefault(r["seed"], []).append(r["figures"][group][metric])
                if per_seed:
                    means = [np.mean(v) for v in per_seed.values()]
                    points.append((i, np.mean(means), np.std(means)))
            if points:
                x, mean, std = zip(*points)
                ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=d)
        ax.set_xticks(range(len(counts)), [str(k) for k in counts])
        ax.set_xlabel("labelled anomalies of the known class")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(f"{cache['settings']['data']} one-vs-rest, one known type: mean ± std over seeds of the mean over "
                    "normal classes")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_boxes(cache: dict, gammas: list[float], path: Path) -> None:
    """The seed's Figure 4: class-wise AGAD scores (seed 0, seen types) at each γ, whiskers at
    Tukey's fences (1.5 IQR) and the outliers beyond them left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = cache["settings"]["normal_images"]
    classes = [c for c in cache["classes"] if any(runs_of(cache, "agad", "seen", labels_for(g, n)) for g in gammas)]
    figure, axes = plt.subplots(max(1, len(classes)), len(gammas), figsize=(5 * len(gammas), 3 * max(1, len(classes))),
                                squeeze=False)
    for row, c in enumerate(classes):
        for col, g in enumerate(gammas):
            ax = axes[row, col]
            run = next((r for r in runs_of(cache, "agad", "seen", labels_for(g, n))
                        if r["normal_class"] == c and r["seed"] == min(cache["seeds"])), None)
            if run is None:
                ax.set_axis_off()
                continue
            names = sorted(run["boxes"], key=int)
            ax.bxp([{**run["boxes"][name], "label": f"{name}*" if name == str(c) else name} for name in names],
                   showfliers=False, showmeans=False)
            ax.set_title(f"normal class {c} (*), γ = {g:g} (k = {run['n_labelled']})", fontsize=9)
            ax.set_xlabel("test class")
            ax.set_ylabel("A(x)")
    figure.suptitle("AGAD scores by test class, seen types; whiskers at Tukey's fences, outliers left out")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(cache: dict, args: argparse.Namespace) -> None:
    """The tables that hold figures, and the PNGs of the protocols that ran, for the --classes asked."""
    cache = {**cache, "classes": [c for c in cache["classes"] if c in args.class_list],
             "results": {k: r for k, r in cache["results"].items() if r["normal_class"] in args.class_list}}
    text = report(cache, args)
    pngs = []
    curve = curve_tasks(cache)
    if curve["classes"]:
        pngs.append(args.out.with_name(args.out.stem + "_efficiency.png"))
        plot_efficiency(curve, pngs[-1])
    n = cache["settings"]["normal_images"]
    if any(runs_of(cache, "agad", "seen", labels_for(g, n)) for g in args.figure_gamma_list if g):
        pngs.append(args.out.with_name(args.out.stem + "_figure4.png"))
        plot_boxes(cache, args.figure_gamma_list, pngs[-1])
    if args.update:
        links = [f"![{png.stem}]({os.path.relpath(png, args.update.parent)})" for png in pngs]
        update_block(args.update, f"<!-- labels_images:begin {args.block} -->",
                     f"<!-- labels_images:end {args.block} -->", "\n\n".join([text, *links]))
    print(text)
    print("plots: " + ", ".join(map(str, pngs)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run(args, settings(args), load_images)


def run(args: argparse.Namespace, expected: dict, load) -> None:
    """Every run the protocols need that --out does not hold yet, then the report. ``load(args)``
    gives the data: training windows and classes, test items' classes, test windows and the item
    each one belongs to (an image is one window, a clip one or more)."""
    import torch

    torch.set_num_threads(args.threads)
    cache = load_cache(args.out, expected, classes=[], seeds=[])
    if not args.report_only:
        todo = [j for j in jobs(args, args.normal_images) if key(*j) not in cache["results"]]
        if not todo:
            print(f"every run is in {args.out}")
        data = load(args) if todo else None
        bar = tqdm(todo, desc=f"labels {expected['data']}", unit="run", disable=not todo)
        for detector, kind, k, normal_class, seed in bar:
            bar.set_postfix_str(f"{detector} {kind} k={k} class={normal_class} seed={seed}")
            result = run_one(detector, kind, k, normal_class, seed, data, args)
            cache["results"][key(detector, kind, k, normal_class, seed)] = result
            cache["classes"] = sorted({*cache["classes"], normal_class})
            cache["seeds"] = sorted({*cache["seeds"], seed})
            save_cache(args.out, cache)
            tqdm.write(f"{detector} {kind} k={k} class={normal_class} seed={seed}: AUROC all "
                       f"{result['figures']['all']['auroc']:.3f} ({result['fit_cpu_s']:.0f}+{result['score_cpu_s']:.0f} CPU s)")
    if not cache["results"]:
        raise SystemExit(f"{args.out} holds no runs yet")
    write_report(cache, args)


if __name__ == "__main__":
    main()
