"""Shared pieces of the benchmark scripts: data location, timing, fitting and scoring, tables.

Every benchmark trains AGAD with its defaults (or the --agad settings given) and a fixed
seed; no step count, threshold or setting is chosen on test data: AGAD stops early on its
held-out normal training windows only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agad_stream import AGAD  # noqa: E402
from pipelines.offline.baselines import ALL_BASELINE_NAMES, BASELINE_NAMES, parse_agad_settings  # noqa: E402
from pipelines.offline.command import score_detectors  # noqa: E402
from pipelines.offline.reports import ranking_metrics  # noqa: E402

#: data folder used when neither --data nor AGAD_DATA is given (the shared data beside the repository)
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"


def update_block(page: Path, begin: str, end: str, text: str) -> None:
    """Replace the lines of a markdown page between two marker lines with ``text``: generated
    figures, so the write-up cannot drift from the result files."""
    document = page.read_text()
    if begin not in document or end not in document:
        raise SystemExit(f"{page} has no {begin} ... {end} block to fill")
    head, rest = document.split(begin, 1)
    page.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")


def data_path(subfolder: str) -> Path:
    """$AGAD_DATA/<subfolder>, else ../shared/data/<subfolder> next to the repository."""
    return Path(os.environ.get("AGAD_DATA", DEFAULT_DATA_ROOT)) / subfolder


def base_parser(description: str, subfolder: str) -> argparse.ArgumentParser:
    """Options every benchmark shares: data, seed, device, threads, AGAD's settings, baselines and --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=data_path(subfolder),
                        help=f"dataset folder (default $AGAD_DATA/{subfolder} or ../shared/data/{subfolder})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default, reproducible), cuda or auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a shared 2-core machine, 2 threads per job oversubscribe it badly)")
    parser.add_argument("--verbose", action="store_true", help="progress bars")
    parser.add_argument("--agad", action="append", default=[], metavar="NAME=VALUE",
                        help="an AGAD constructor parameter, e.g. --agad max_steps=500 --agad channels=[32,64,128] "
                             "(VALUE is read as JSON when it parses, else as a string); default: AGAD's own defaults")
    parser.add_argument("--baselines", default=",".join(BASELINE_NAMES),
                        help=f"comma-separated, from {', '.join(ALL_BASELINE_NAMES)}; 'none' for AGAD alone")
    parser.add_argument("--out", help="write the results as JSON here")
    return parser


def agad_params(args: argparse.Namespace) -> dict[str, Any]:
    """The --agad NAME=VALUE settings as constructor keyword arguments."""
    try:
        return parse_agad_settings(args.agad)
    except ValueError as error:
        raise SystemExit(str(error)) from None


def baseline_names(args: argparse.Namespace) -> list[str]:
    if args.baselines == "none":
        return []
    names = [n for n in args.baselines.split(",") if n]
    unknown = sorted(set(names) - set(ALL_BASELINE_NAMES))
    if unknown:
        raise SystemExit(f"--baselines: unknown {', '.join(unknown)}; choose from {', '.join(ALL_BASELINE_NAMES)}")
    return names


def agad_settings(args: argparse.Namespace) -> str:
    return f"AGAD settings: {agad_params(args) or 'defaults'}; each fit stops early on its held-out training normals"


def detectors(args: argparse.Namespace) -> list[str]:
    return ["AGAD", *baseline_names(args)]


def add_ecg_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fs", type=float, default=180.0, help="resample to this rate (Hz)")
    parser.add_argument("--window-s", type=float, default=0.8)


def setup(args: argparse.Namespace, needs_data: bool = True) -> float:
    """Seed and thread count; returns the start time."""
    if needs_data and not args.data.exists():
        raise SystemExit(f"data folder {args.data} not found: pass --data or set AGAD_DATA")
    torch.set_num_threads(args.threads)
    np.random.seed(args.seed)
    return time.perf_counter()


def fit_agad(X: np.ndarray, y: np.ndarray | None, args: argparse.Namespace) -> tuple[AGAD, float]:
    started = time.perf_counter()
    model = AGAD(random_state=args.seed, device=args.device, verbose=args.verbose, **agad_params(args)).fit(X, y)
    return model, time.perf_counter() - started


def auroc_by_detector(
    model: AGAD, X_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, args: argparse.Namespace,
    source: np.ndarray | None = None, aggregate: str | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """AUROC of AGAD and the --baselines (fitted on X_train) on the same test windows,
    optionally on per-source aggregated scores; plus each detector's fit seconds."""
    from modalities import aggregate_scores

    scored = score_detectors(model, X_train, None, X_test, baseline_names(args))
    labels = y_test
    if aggregate:
        _, labels = aggregate_scores(y_test, source, "max")
    aurocs, seconds = {}, {}
    for name, s in scored.items():
        scores = aggregate_scores(s.scores, source, aggregate)[1] if aggregate else s.scores
        aurocs[name] = ranking_metrics(labels.astype(int), scores)["auroc"]
        seconds[name] = s.fit_seconds or 0.0
    return aurocs, seconds


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def footer(started: float, args: argparse.Namespace) -> str:
    return (f"wall time {time.perf_counter() - started:.0f} s on {platform.machine()} "
            f"({args.threads} torch threads, device {args.device}); seed {args.seed}; "
            f"command: {' '.join(sys.argv)}")


def write_results(args: argparse.Namespace, results: Any) -> None:
    """Save the run's arguments and results to --out as JSON (nothing when --out is not given)."""
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, f, indent=2)
