"""Tables and the label-efficiency plot of bench_labels_ecg.py, rendered from its JSON cache only.

Every figure in docs/with-labels.md comes from here, so the write-up cannot drift from the
result files: --update rewrites the part of a markdown file between the two marker lines.
Each cell is the mean ± std over the seeds done so far (their number is shown when not 3).

usage: python benchmarks/labels_report.py [benchmarks/results/labels_ecg.json] [--plot PNG] [--update docs/with-labels.md]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from bench_labels_ecg import DEFAULT_OUT, KNOWN, NOVEL
from common import update_block
from labels_protocol import DETECTOR_NAMES, UNSUPERVISED_ONLY

BEGIN, END = "<!-- labels_report:begin -->", "<!-- labels_report:end -->"
#: the label counts of the one-known-type table (gamma 0, .01 and .05 at 2000 normal beats)
GAMMA_COUNTS = (0, 20, 100)
FULL_SEEDS = 3


def grouped(results: dict) -> dict[tuple[str, int], list[dict]]:
    """Results by (detector, labelled count), over seeds."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in results.values():
        groups.setdefault((r["detector"], r["n_labelled"]), []).append(r)
    return groups


def cell(runs: list[dict], pick) -> str:
    values = [pick(r) for r in runs]
    if len(values) == 1:
        return f"{values[0]:.3f} (n=1)"
    text = f"{np.mean(values):.3f} ± {np.std(values):.3f}"
    return text if len(values) == FULL_SEEDS else f"{text} (n={len(values)})"


def ordered(groups: dict, counts) -> list[tuple[str, int]]:
    return [(d, k) for k in counts for d in DETECTOR_NAMES if (d, k) in groups]


def known_type_table(groups: dict, n_normal: int) -> str:
    header = ["detector", "labelled V (γ)", f"AUROC {KNOWN} (known)", *[f"AUROC {c} (novel)" for c in NOVEL],
              f"recall {KNOWN} at 1% FPR", f"recall {' / '.join((KNOWN, *NOVEL))} at own threshold", "FPR at own threshold"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for d, k in ordered(groups, GAMMA_COUNTS):
        runs = groups[(d, k)]
        at_threshold = " / ".join(f"{np.mean([r['recall_at_threshold'][c] for r in runs]):.3f}" for c in (KNOWN, *NOVEL))
        lines.append("| " + " | ".join([
            d, f"{k} ({k / n_normal:g})", cell(runs, lambda r: r["auroc"][KNOWN]),
            *[cell(runs, lambda r, c=c: r["auroc"][c]) for c in NOVEL],
            cell(runs, lambda r: r["recall_at_1pct_fpr"][KNOWN]), at_threshold,
            cell(runs, lambda r: r["fpr_at_threshold"]),
        ]) + " |")
    return "\n".join(lines)


def efficiency_table(groups: dict) -> str:
    counts = sorted({k for _, k in groups})
    detectors = [d for d in DETECTOR_NAMES if d not in UNSUPERVISED_ONLY and any((d, k) in groups for k in counts)]
    header = ["detector", *[f"{k} labels" for k in counts]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric, pick in ((f"recall {KNOWN} at 1% FPR", lambda r: r["recall_at_1pct_fpr"][KNOWN]),
                         (f"AUROC {KNOWN}", lambda r: r["auroc"][KNOWN])):
        lines.append(f"| **{metric}** |" + " |" * len(counts))
        for d in detectors:
            lines.append("| " + " | ".join([d, *[cell(groups[(d, k)], pick) if (d, k) in groups else "–"
                                                 for k in counts]]) + " |")
    return "\n".join(lines)


def plot_efficiency(groups: dict, path: Path) -> None:
    """Recall at 1% FPR and AUROC on the known type, and AUROC on the novel types, against labelled count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = sorted({k for _, k in groups})
    panels = [(f"{KNOWN} recall at 1% FPR (DS2)", lambda r: r["recall_at_1pct_fpr"][KNOWN]),
              (f"{KNOWN} AUROC (known type)", lambda r: r["auroc"][KNOWN]),
              *[(f"{c} AUROC (novel type)", lambda r, c=c: r["auroc"][c]) for c in NOVEL]]
    figure, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    axes = axes.ravel()
    for ax, (title, pick) in zip(axes, panels):
        for d in DETECTOR_NAMES:
            points = [(i, [pick(r) for r in groups[(d, k)]]) for i, k in enumerate(counts) if (d, k) in groups]
            if not points:
                continue
            if d in UNSUPERVISED_ONLY:
                ax.axhline(np.mean(points[0][1]), linestyle=":", color="grey", linewidth=1)
                ax.annotate(d, (len(counts) - 1, np.mean(points[0][1])), fontsize=7, color="grey", ha="right", va="bottom")
                continue
            x, values = zip(*points)
            ax.errorbar(x, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], marker="o", capsize=3, label=d)
        ax.set_xticks(range(len(counts)), [str(k) for k in counts])
        ax.set_xlabel(f"labelled {KNOWN} beats from DS1 patients")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("MIT-BIH DS1 → DS2 (unseen patients), one known type: mean ± std over seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def selection_table(caches: list[dict], detectors: list[str]) -> str:
    """One row per (AGAD settings, detector) of runs made with --agad on the same split: the means
    over seeds of V AUROC, V recall at 1% FPR, and S / F AUROC, per label count."""
    counts = sorted({r["n_labelled"] for c in caches for r in c["results"].values() if r["n_labelled"]})
    picks = [lambda r: r["auroc"][KNOWN], lambda r: r["recall_at_1pct_fpr"][KNOWN],
             *[lambda r, c=c: r["auroc"][c] for c in NOVEL]]
    header = ["AGAD settings", "detector", *[f"{k} labels: AUROC {KNOWN} / recall {KNOWN} at 1% / AUROC "
                                             f"{' / '.join(NOVEL)}" for k in counts]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cache in caches:
        options = cache["settings"].get("agad")
        groups = grouped(cache["results"])
        for d in detectors:
            cells = []
            for k in counts:
                runs = groups.get((d, k), [])
                cells.append(" / ".join(f"{np.mean([p(r) for r in runs]):.3f}" for p in picks) +
                             (f" (n={len(runs)})" if len(runs) != FULL_SEEDS else "") if runs else "–")
            lines.append("| " + " | ".join([f"`{json.dumps(options)}`" if options else "defaults", d, *cells]) + " |")
    return "\n".join(lines)


def report(cache: dict, plot_name: str) -> str:
    s = cache["settings"]
    groups = grouped(cache["results"])
    seeds = sorted({r["seed"] for r in cache["results"].values()})
    return "\n\n".join([
        f"Settings: {s['normal_beats']} DS1 N beats per seed (stratified by record), lead {s['lead']}, "
        f"{s['window_s']} s windows at {s['fs']:g} Hz; every AGAD variant and D alone {s['max_steps']} steps, "
        f"Deep SAD {s['deep_sad_epochs']} epochs; seeds done: {', '.join(map(str, seeds))}; "
        f"{len(cache['results'])} runs in the cache. Beats: {cache.get('beat_counts', {})}.",
        "One known type (V labelled; S and F never seen), DS2 AUROC against N; recall at the detector's own "
        "threshold (held-out DS1 normals, 1% target FPR) as the mean over seeds:",
        known_type_table(groups, s["normal_beats"]),
        "Label efficiency, V beats of unseen DS2 patients:",
        efficiency_table(groups),
        f"![label efficiency]({plot_name})",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--plot", type=Path, help="PNG of the label-efficiency curves (default: beside the cache)")
    parser.add_argument("--update", type=Path, help=f"markdown file whose lines between {BEGIN} and {END} are replaced")
    parser.add_argument("--block", default="", help="the block's name, for a second result file on one page: "
                        "the markers are then <!-- labels_report:begin NAME --> and <!-- labels_report:end NAME -->")
    parser.add_argument("--compare", help="comma-separated result files of one split run with different --agad "
                        "settings: print their selection table instead (with --update: into the --block)")
    parser.add_argument("--detectors", default="agad-no-adcon,plain-autoencoder", help="the rows of --compare")
    args = parser.parse_args()
    begin, end = (f"{BEGIN[:-4]} {args.block} -->", f"{END[:-4]} {args.block} -->") if args.block else (BEGIN, END)
    if args.compare:
        paths = [Path(p) for p in args.compare.split(",") if p]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise SystemExit(f"--compare: {', '.join(missing)} not found")
        text = selection_table([json.loads(p.read_text()) for p in paths], args.detectors.split(","))
        if args.update:
            update_block(args.update, begin, end, text)
        print(text)
        return
    if not args.cache.exists():
        raise SystemExit(f"{args.cache} not found: run benchmarks/bench_labels_ecg.py first")
    cache = json.loads(args.cache.read_text())
    plot = args.plot or args.cache.with_name(args.cache.stem + "_efficiency.png")
    plot_efficiency(grouped(cache["results"]), plot)
    text = report(cache, os.path.relpath(plot, args.update.parent) if args.update else str(plot))
    if args.update:
        update_block(args.update, begin, end, text)
    print(text)


if __name__ == "__main__":
    main()
