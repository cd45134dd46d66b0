"""Evaluation reports: metrics, report.json, report.md and PNG plots.

Plots use matplotlib's Agg backend, so reports are written on machines without a display.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve  # noqa: E402

ROC_PLOT = "roc.png"
HISTOGRAM_PLOT = "score_histogram.png"
EXPLANATION_PLOT = "explanations.png"
#: 1D windows with more channels than this are drawn as images (e.g. mel bands x frames)
MAX_LINE_CHANNELS = 4


def ranking_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """AUROC and AUPRC (average precision); None when only one class is present."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return {"auroc": None, "auprc": None}
    return {"auroc": float(roc_auc_score(y, scores)), "auprc": float(average_precision_score(y, scores))}


def threshold_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | int]:
    """Precision, recall, F1 and false-positive rate of `score > threshold` (the rule `predict` uses)."""
    y = np.asarray(y).astype(bool)
    flagged = np.asarray(scores) > threshold
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    fn = int(np.sum(~flagged & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_normal = int(np.sum(~y))
    return {
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": fp / n_normal if n_normal else 0.0,
        "flagged": int(flagged.sum()),
    }


def counts(y: np.ndarray) -> dict[str, int]:
    y = np.asarray(y)
    return {"n": int(len(y)), "n_normal": int(np.sum(y == 0)), "n_anomalous": int(np.sum(y == 1))}


def detector_metrics(y: np.ndarray, scores: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """Ranking metrics always; thresholded metrics when the detector has a calibrated threshold."""
    metrics: dict[str, Any] = ranking_metrics(y, scores)
    if threshold is not None:
        metrics.update(threshold_metrics(y, scores, threshold))
    return metrics


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    """report.json (everything) and report.md (the side-by-side tables a person reads)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(markdown_report(report))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def results_table(results: dict[str, dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Markdown table: one row per detector, the given metric columns."""
    lines = ["| detector | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def markdown_report(report: dict[str, Any]) -> str:
    levels = report["levels"]
    parts = [
        f"# AGAD evaluation: {report['model']}",
        "",
        f"- data: `{report['data']}` ({report['modality']}); evaluated groups: {', '.join(report['test_groups'])}",
        f"- trained on: `{report['training'].get('data')}`, groups {', '.join(report['training'].get('train_groups', []))}",
        f"- thresholds: calibrated on held-out normal training windows at a target false-positive rate of "
        f"{report['target_fpr']}; AUROC/AUPRC are threshold-free",
    ]
    for level, block in levels.items():
        parts += [
            "",
            f"## {level} level ({block['counts']['n']} {level}s: {block['counts']['n_normal']} normal, "
            f"{block['counts']['n_anomalous']} anomalous)",
            "",
        ]
        if block.get("note"):
            parts += [block["note"], ""]
        columns = ("auroc", "auprc", "precision", "recall", "f1", "fpr")
        parts.append(results_table(block["results"], columns))
    parts += ["", "## Timings (seconds)", "", "| step | seconds |", "|---|---|"]
    parts += [f"| {step} | {seconds:.2f} |" for step, seconds in report["timings"].items()]
    parts += ["", "## Plots", "", f"![ROC]({ROC_PLOT})", f"![scores]({HISTOGRAM_PLOT})", f"![explanations]({EXPLANATION_PLOT})", ""]
    return "\n".join(parts)


def plot_roc(path: Path, y: np.ndarray, scores_by_detector: dict[str, np.ndarray], title: str) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    if len(np.unique(y)) == 2:
        for name, scores in scores_by_detector.items():
            fpr, tpr, _ = roc_curve(y, scores)
            ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, scores):.3f})")
    else:
        ax.text(0.5, 0.5, "one class only: no ROC curve", ha="center")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_histograms(path: Path, y: np.ndarray, scores: np.ndarray, threshold: float, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(scores, bins=60)
    for label, name, color in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
        chosen = scores[np.asarray(y) == label]
        if len(chosen):
            ax.hist(chosen, bins=bins, alpha=0.6, density=True, color=color, label=f"{name} (n={len(chosen)})")
    ax.axvline(threshold, color="black", linestyle="--", label="calibrated threshold")
    ax.set(xlabel="AGAD anomaly score ||x - G(x)||", ylabel="density", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def explanation_indices(y: np.ndarray, scores: np.ndarray, per_class: int = 2) -> list[int]:
    """The highest-scoring anomalous windows and the median-scoring normal ones: what the model flags vs. a typical normal."""
    y = np.asarray(y)
    chosen: list[int] = []
    anomalous = np.flatnonzero(y == 1)
    chosen += anomalous[np.argsort(scores[anomalous])[::-1][:per_class]].tolist()
    normal = np.flatnonzero(y == 0)
    if len(normal):
        by_score = normal[np.argsort(scores[normal])]
        middle = len(by_score) // 2
        chosen += by_score[middle : middle + per_class].tolist()
    return chosen


def _as_image(window: np.ndarray) -> np.ndarray:
    """[C, H, W] -> its first channel; [C, L] with many channels (mel bands as channels) -> C x L."""
    return window[0] if window.ndim == 3 else window


def plot_explanations(
    path: Path, inputs: np.ndarray, reconstructions: np.ndarray, residuals: np.ndarray, captions: list[str]
) -> None:
    """One row per window: input and reconstruction (1D with few channels: overlaid curves; 2D, or 1D with
    many channels such as mel bands: images side by side) and the residual map."""
    n = len(inputs)
    if n == 0:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no windows to explain", ha="center")
        ax.axis("off")
    elif inputs.ndim == 3 and inputs.shape[1] <= MAX_LINE_CHANNELS:
        fig, axes = plt.subplots(n, 2, figsize=(10, 2.2 * n), squeeze=False)
        for row, caption in enumerate(captions):
            for channel in range(inputs.shape[1]):
                axes[row, 0].plot(inputs[row, channel], color="black", linewidth=1, label="input" if channel == 0 else None)
                axes[row, 0].plot(reconstructions[row, channel], color="tab:orange", linewidth=1,
                                  label="reconstruction G(x)" if channel == 0 else None)
                axes[row, 1].plot(residuals[row, channel], color="tab:red", linewidth=1)
            axes[row, 0].set_title(caption, fontsize=8)
            axes[row, 1].set_title("residual x - G(x)", fontsize=8)
        axes[0, 0].legend(fontsize=7)
    else:
        fig, axes = plt.subplots(n, 3, figsize=(9, 2.6 * n), squeeze=False)
        limit = float(np.abs(residuals).max()) or 1.0
        for row, caption in enumerate(captions):
            image = _as_image(inputs[row])
            shared_scale = {"vmin": float(image.min()), "vmax": float(image.max())}
            axes[row, 0].imshow(image, aspect="auto", origin="lower", cmap="magma", **shared_scale)
            axes[row, 1].imshow(_as_image(reconstructions[row]), aspect="auto", origin="lower", cmap="magma",
                                **shared_scale)
            axes[row, 2].imshow(_as_image(residuals[row]), aspect="auto", origin="lower", cmap="coolwarm",
                                vmin=-limit, vmax=limit)
            axes[row, 0].set_title(caption, fontsize=8)
            axes[row, 1].set_title("reconstruction G(x)", fontsize=8)
            axes[row, 2].set_title("residual x - G(x)", fontsize=8)
            for ax in axes[row]:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
