"""Offline jobs: `agad-stream train`, `evaluate` and `score-file`.

train: reads a dataset through a modality, keeps the normal windows of the training
groups (records for ECG, speakers or files for audio, files otherwise) and fits AGAD.
The model directory holds the checkpoint, the modality settings and training.json,
which records what was trained on, so evaluate can (1) test only on groups never seen
in training and (2) refit the baselines on exactly the same training windows.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modalities import Modality, Windows, aggregate_scores, available_modalities, get_modality, load_modality
from pipelines.offline import reports
from pipelines.offline.baselines import BASELINE_NAMES, fit_baselines
from pipelines.offline.model_dir import MODALITY_FILE, load_model_dir, save_model_dir

if TYPE_CHECKING:
    from agad_stream import AGAD

logger = logging.getLogger(__name__)

TRAINING_FILE = "training.json"
#: built-in and installed plug-in modalities (entry points, not imported here), for --modality
MODALITIES = tuple(available_modalities())

#: audio settings for known file-name layouts; explicit options override them
AUDIO_PRESETS: dict[str, dict[str, Any]] = {
    "fsdd": {"pattern": "{digit}_{speaker}_{index}.wav", "label_field": "digit", "group_field": "speaker",
             "sample_rate": 8000},
    "dcase": {},
}

#: modality settings that change labels or where windows start but not the model inputs,
#: so evaluate and score-file may override them on a trained model
RELABEL_SETTINGS: dict[str, tuple[str, ...]] = {
    "ecg": ("ann", "normal_symbols", "anomaly_symbols", "other", "mode", "stride_s"),
    "audio": ("pattern", "label_field", "normal_values", "anomaly_values", "group_field", "patch_hop"),
    "image": ("normal_classes",),
    "array": ("normal_label",),
}

#: which modalities each data option applies to
OPTION_MODALITIES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("ann", "records", "fs", "leads", "window_s", "mode", "stride_s", "other"), ("ecg",)),
    **dict.fromkeys(("preset", "sample_rate", "n_mels", "patch_frames", "patch_hop", "layout", "pattern",
                     "label_field", "group_field"), ("audio",)),
    "anomalous": ("ecg", "audio"),
    "split": ("audio", "image"),
    "size": ("image",),
}


# --------------------------------------------------------------------------- options
def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """Options that say how a modality reads the data; the same on every command."""
    ecg = parser.add_argument_group("ECG (WFDB records)")
    ecg.add_argument("--ann", help="annotation extension (default atr; pvc for mitdb-mlii-pvc; 'none' = detect R peaks, no labels)")
    ecg.add_argument("--records", type=_comma_list, help="records to read from the directory (default: every .hea)")
    ecg.add_argument("--fs", type=float, help="common sampling rate in Hz (default 360)")
    ecg.add_argument("--leads", type=_comma_list, help="leads to use, by name or index (default: all)")
    ecg.add_argument("--window-s", type=float, help="beat window length in seconds (default 0.8)")
    ecg.add_argument("--mode", choices=("beats", "sliding"), help="beat-centred (default) or sliding windows")
    ecg.add_argument("--stride-s", type=float, help="stride of sliding windows in seconds (default 0.4)")
    ecg.add_argument("--other", choices=("drop", "normal", "anomaly"),
                     help="beats in neither --normal nor --anomalous (default drop)")

    audio = parser.add_argument_group("audio (WAV clips)")
    audio.add_argument("--preset", choices=sorted(AUDIO_PRESETS),
                       help="fsdd: labels and speaker groups from {digit}_{speaker}_{index}.wav at 8 kHz; "
                            "dcase: normal_*/anomaly_* names with train/ and test/ folders")
    audio.add_argument("--sample-rate", type=int, help="resample to this rate (default 16000; fsdd 8000)")
    audio.add_argument("--n-mels", type=int, help="mel bands (default 64)")
    audio.add_argument("--patch-frames", type=int, help="spectrogram frames per patch (default 32)")
    audio.add_argument("--patch-hop", type=int, help="frames between patch starts (default 16)")
    audio.add_argument("--layout", choices=("2d", "1d"),
                       help="2d: patches as images (default); 1d: mel bands as channels, cheaper to train")
    audio.add_argument("--pattern", help="file-name pattern with {fields}, e.g. '{digit}_{speaker}_{index}.wav'")
    audio.add_argument("--label-field", help="pattern field that holds the class")
    audio.add_argument("--group-field", help="pattern field that keeps recordings apart in splits (e.g. speaker)")

    shared = parser.add_argument_group("labels and splits (all modalities)")
    shared.add_argument("--normal", help="what is normal: ECG beat symbols (e.g. NLRej); audio label values, "
                                         "image classes (comma lists); array class label")
    shared.add_argument("--anomalous", help="what is anomalous: ECG beat symbols (e.g. V); audio label values "
                                            "(default: everything not normal)")
    shared.add_argument("--split", help="subfolder (audio, DCASE layout) or IDX split (image): train or test")
    shared.add_argument("--size", type=int, help="image side after resizing (default 32; 0 = native)")


def _image_classes(values: list[str] | None) -> list[int] | None:
    if values is None:
        return None
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(f"--normal: image classes are integers (e.g. 0 or 0,2), got {','.join(values)!r}") from None


#: each built-in modality's constructor settings from the command line (None: not given)
BUILT_IN_SETTINGS: dict[str, Callable[[argparse.Namespace, list[str] | None, list[str] | None], dict[str, Any]]] = {
    "ecg": lambda args, normal, anomalous: {
        "ann": args.ann, "fs": args.fs, "window_s": args.window_s, "mode": args.mode, "stride_s": args.stride_s,
        "other": args.other, "normal_symbols": args.normal, "anomaly_symbols": args.anomalous,
        "leads": [int(x) if x.isdigit() else x for x in args.leads] if args.leads else None},
    "audio": lambda args, normal, anomalous: {
        "sample_rate": args.sample_rate, "n_mels": args.n_mels, "patch_frames": args.patch_frames,
        "patch_hop": args.patch_hop, "layout": args.layout, "pattern": args.pattern, "label_field": args.label_field,
        "group_field": args.group_field, "normal_values": normal, "anomaly_values": anomalous},
    "image": lambda args, normal, anomalous: {"size": args.size, "normal_classes": _image_classes(normal)},
    "array": lambda args, normal, anomalous: {"normal_label": args.normal},
}


def modality_settings(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor settings given on the command line (options left out keep the modality defaults)."""
    if name not in BUILT_IN_SETTINGS:
        # a plug-in modality takes its defaults: the data options here are the built-ins'
        if args.normal is not None:
            raise ValueError(f"--normal: not an option of the {name} modality")
        return {}
    normal = _comma_list(args.normal) if args.normal else None
    anomalous = _comma_list(args.anomalous) if args.anomalous else None
    settings = {k: v for k, v in BUILT_IN_SETTINGS[name](args, normal, anomalous).items() if v is not None}
    if str(settings.get("ann", "")).lower() == "none":
        settings["ann"] = None  # no annotations: detect R peaks, labels unknown
    if settings.get("size") == 0:
        settings["size"] = None  # native image size
    return settings


def check_options_apply(name: str, args: argparse.Namespace) -> None:
    """A data option of another modality is a mistake worth saying, not something to ignore."""
    wrong = [dest for dest, owners in OPTION_MODALITIES.items()
             if name not in owners and getattr(args, dest, None) is not None]
    if wrong:
        options = ", ".join(f"--{dest.replace('_', '-')}" for dest in wrong)
        raise ValueError(f"{options}: not an option of the {name} modality")


def build_modality(name: str, args: argparse.Namespace) -> Modality:
    if name not in available_modalities():
        raise ValueError(f"unknown modality {name!r}; choose from {', '.join(available_modalities())}")
    check_options_apply(name, args)
    settings = dict(AUDIO_PRESETS.get(args.preset or "", {})) if name == "audio" else {}
    settings.update(modality_settings(name, args))
    return get_modality(name, **settings)


def relabel(modality: Modality, args: argparse.Namespace) -> Modality:
    """Apply label/window-placement options to a trained modality; refuse ones that change the model inputs."""
    check_options_apply(modality.name, args)
    settings = modality_settings(modality.name, args)
    fixed = sorted(set(settings) - set(RELABEL_SETTINGS.get(modality.name, ())))
    if fixed:
        options = ", ".join(f"--{k.replace('_', '-')}" for k in fixed)
        raise ValueError(f"{options}: fixed by the trained model's preprocessing (see {MODALITY_FILE}); retrain to change")
    for key, value in settings.items():
        setattr(modality, key, value)
    return modality


#: windows of at most this many values (every ECG beat, log-mel patch and image up to 64 x 64) make
#: models so small that one CPU thread trains fastest: more threads cost more in overhead than
#: they gain, and on a busy machine they stall each other (tests/test_core_digits.py: 31 min
#: with torch's 2 threads on 2 busy cores)
SMALL_WINDOW_VALUES = 4096


def set_torch_threads(requested: int | None, window_shape: tuple[int, ...]) -> int:
    """Apply --torch-threads (default: 1 for small windows, else torch's own choice; 0 = torch's);
    returns the thread count in use."""
    import torch

    if requested is not None and requested < 0:
        raise ValueError(f"--torch-threads must be >= 0, got {requested}")
    if requested is None:
        requested = 1 if math.prod(window_shape) <= SMALL_WINDOW_VALUES else 0
    if requested:
        torch.set_num_threads(requested)
    return torch.get_num_threads()


def set_runtime(modality: Modality, device: str, verbose: bool) -> None:
    """Progress bars and (audio) spectrogram device follow the command, not what was saved."""
    if hasattr(modality, "verbose"):
        modality.verbose = verbose
    if hasattr(modality, "device"):
        from agad_stream.estimator import resolve_device

        modality.device = str(resolve_device(device))


def load_options(modality: Modality, data: Path, args: argparse.Namespace, role: str) -> dict[str, Any]:
    """Keyword arguments for modality.load: records (ECG) or split (audio DCASE layout, image IDX)."""
    if modality.name == "ecg" and args.records:
        return {"records": list(args.records)}
    if modality.name in ("audio", "image"):
        split = args.split
        if split is None and (modality.name == "image" or (data / role).is_dir()):
            split = role
        if split is not None:
            return {"split": split}
    return {}


def select_groups(windows: Windows, wanted: list[str] | None, what: str) -> np.ndarray:
    """Mask of windows in the named groups; unknown names are an error (a typo must not shrink a split)."""
    if wanted is None:
        return np.ones(len(windows), dtype=bool)
    unknown = sorted(set(wanted) - set(windows.group))
    if unknown:
        raise ValueError(f"{what} not found in the data: {unknown}; available: {sorted(set(windows.group))}")
    return np.isin(windows.group, wanted)


def training_windows(windows: Windows, args: argparse.Namespace) -> Windows:
    """Windows of the training groups: --train-groups, or everything but --test-groups."""
    in_train = select_groups(windows, args.train_groups, "training groups")
    if args.test_groups:
        in_test = select_groups(windows, args.test_groups, "test groups")
        if args.train_groups and (in_train & in_test).any():
            raise ValueError("--train-groups and --test-groups overlap")
        in_train &= ~in_test
    if not in_train.any():
        raise ValueError("no training windows left after choosing the training groups")
    return windows.subset(in_train)


def labelled_anomaly_count(n_normal: int, n_available: int, gamma: float | None, count: int | None) -> int:
    """a with a / (n + a) = gamma (the paper's supervision level), or an explicit count."""
    if gamma is not None and count is not None:
        raise ValueError("give --gamma or --labelled-anomalies, not both")
    if gamma is not None:
        if not 0 <= gamma < 1:
            raise ValueError(f"--gamma must lie in [0, 1), got {gamma}")
        count = int(round(gamma * n_normal / (1 - gamma)))
    count = count or 0
    if count < 0:
        raise ValueError(f"--labelled-anomalies must be >= 0, got {count}")
    if count > n_available:
        raise ValueError(f"{count} labelled anomalies wanted but the training groups hold only {n_available} "
                         f"(gamma at most {n_available / (n_normal + n_available):.4f})")
    return count


def training_set(train: Windows, args: argparse.Namespace) -> tuple[Windows, np.ndarray]:
    """Normal windows (a seeded subset of --max-train-windows of them, if given) plus, in
    supervised mode, a seeded random draw of labelled anomalies.

    Without labels every window counts as normal (the usual unsupervised assumption).
    """
    y = np.zeros(len(train), dtype=np.int8) if train.y is None else train.y
    if train.y is None and (args.gamma or args.labelled_anomalies):
        raise ValueError("supervised mode needs labelled data, but the training windows have no labels")
    rng = np.random.default_rng(args.seed)
    normal = np.flatnonzero(y == 0)
    anomalous = np.flatnonzero(y == 1)
    if not len(normal):
        raise ValueError("the training groups hold no normal windows")
    if args.max_train_windows is not None and len(normal) > args.max_train_windows:
        normal = np.sort(rng.choice(normal, size=args.max_train_windows, replace=False))
    a = labelled_anomaly_count(len(normal), len(anomalous), args.gamma, args.labelled_anomalies)
    chosen = rng.choice(anomalous, size=a, replace=False) if a else anomalous[:0]
    keep = np.sort(np.concatenate([normal, chosen]))
    return train.subset(keep), y[keep]


def build_model(modality: Modality, args: argparse.Namespace) -> AGAD:
    """AGAD with its own data-sized defaults and the modality's (`Modality.agad_defaults`),
    except what the command line sets."""
    from agad_stream import AGAD

    return AGAD(
        **modality.agad_defaults,
        generator=args.generator or modality.default_generator,
        channels=tuple(args.channels) if args.channels else "auto",
        latent_dim=args.latent_dim or "auto",
        max_steps=args.max_steps,
        epochs=args.epochs,
        batch_size=args.batch_size or "auto",
        lr=args.lr,
        target_fpr=args.target_fpr,
        anomaly_score=args.anomaly_score,
        random_state=args.seed,
        device=args.device,
        verbose=not args.quiet,
    )


# --------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    data = Path(args.data)
    modality = build_modality(args.modality, args)
    set_runtime(modality, args.device, not args.quiet)
    options = load_options(modality, data, args, "train")
    started = time.perf_counter()
    windows = modality.load(data, **options)
    split = training_windows(windows, args)
    train, y = training_set(split, args)
    modality.fit_quality(train.X[y == 0])  # the plausible amplitude range of the signal-quality checks
    X = modality.prepare(train.X)
    loaded = time.perf_counter()
    threads = set_torch_threads(args.torch_threads, X.shape[1:])
    model = build_model(modality, args).fit(X, y)
    trained = time.perf_counter()
    out = save_model_dir(args.out, model, modality)
    record = {
        "data": str(data.resolve()),
        "load_options": options,
        "train_groups": sorted(set(split.group)),
        "test_groups": sorted(set(args.test_groups or [])),
        "n_normal": int(np.sum(y == 0)),
        "n_labelled_anomalies": int(np.sum(y == 1)),
        "gamma": float(np.mean(y == 1)),
        "max_train_windows": args.max_train_windows,
        "seed": args.seed,
        "load_seconds": loaded - started,
        "train_seconds": trained - loaded,
        "torch_threads": threads,
    }
    (out / TRAINING_FILE).write_text(json.dumps(record, indent=2))
    print(f"trained AGAD on {record['n_normal']} normal + {record['n_labelled_anomalies']} labelled anomalous "
          f"windows {X.shape[1:]} from {len(record['train_groups'])} group(s) in {record['train_seconds']:.1f} s; "
          f"threshold {model.threshold_:.4g} (target FPR {model.target_fpr}); model dir: {out}")
    return 0


# --------------------------------------------------------------------------- shared by evaluate / score-file
def read_training_record(model_dir: Path) -> dict[str, Any]:
    path = model_dir / TRAINING_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: evaluate needs a model directory written by `agad-stream train`")
    return json.loads(path.read_text())


def held_out(windows: Windows, training: dict[str, Any], test_groups: list[str] | None) -> Windows:
    """Windows never seen in training: groups used for training are always excluded."""
    mask = select_groups(windows, test_groups, "test groups")
    seen = sorted(set(windows.group[mask]) & set(training["train_groups"]))
    if seen:
        logger.info("excluding %d group(s) used in training: %s", len(seen), ", ".join(seen[:10]))
    mask &= ~np.isin(windows.group, training["train_groups"])
    if not mask.any():
        raise ValueError("every window of the data belongs to a group used in training; train with "
                         "--test-groups/--test-records or evaluate on other data")
    return windows.subset(mask)


@dataclass
class Scored:
    """One detector's window scores and calibrated threshold."""

    scores: np.ndarray
    threshold: float | None
    fit_seconds: float | None
    score_seconds: float


def score_detectors(
    model: AGAD, X_train: np.ndarray | None, y_train: np.ndarray | None, X_test: np.ndarray, baselines: list[str]
) -> dict[str, Scored]:
    """AGAD and the baselines (fitted here on X_train's normal windows) scored on X_test."""
    started = time.perf_counter()
    results = {"AGAD": Scored(model.score_samples(X_test), model.threshold_, None, time.perf_counter() - started)}
    if baselines:
        for fitted in fit_baselines(baselines, model, X_train, y_train):
            started = time.perf_counter()
            scores = fitted.detector.score_samples(X_test)
            results[fitted.name] = Scored(scores, fitted.detector.threshold_, fitted.fit_seconds,
                                          time.perf_counter() - started)
    return results


def level_block(y: np.ndarray, scored: dict[str, Scored], with_thresholds: bool, note: str = "") -> dict[str, Any]:
    """Counts and every detector's metrics at one level (window or clip)."""
    return {
        "counts": reports.counts(y),
        "note": note,
        "results": {name: reports.detector_metrics(y, s.scores, s.threshold if with_thresholds else None)
                    for name, s in scored.items()},
    }


def clip_scores(scored: dict[str, Scored], source: np.ndarray, how: str) -> dict[str, Scored]:
    """Per-source (clip) scores aggregated from window scores, in order of first appearance."""
    return {name: Scored(aggregate_scores(s.scores, source, how)[1], None, s.fit_seconds, s.score_seconds)
            for name, s in scored.items()}


def default_aggregate(modality: Modality) -> str:
    return "mean" if modality.name == "audio" else "none"


def evaluation_levels(
    test: Windows, scored: dict[str, Scored], aggregate: str
) -> dict[str, dict[str, Any]]:
    """Window-level metrics, plus clip-level ones when window scores are aggregated per source."""
    levels = {"window": level_block(test.y, scored, with_thresholds=True)}
    if aggregate != "none":
        _, clip_labels = aggregate_scores(test.y, test.source, "max")
        clips = clip_scores(scored, test.source, aggregate)
        note = (f"clip score = {aggregate} of its window scores; a clip is anomalous if any window is. "
                "Thresholds are calibrated per window, so only threshold-free metrics are given here.")
        levels["clip"] = level_block(clip_labels.astype(int), clips, with_thresholds=False, note=note)
    return levels


# --------------------------------------------------------------------------- evaluate
def reload_training_windows(model_dir: Path, args: argparse.Namespace, training: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The exact training windows (same data, settings, groups and labelled draw) for the baselines."""
    modality = load_modality(json.loads((model_dir / MODALITY_FILE).read_text()))
    set_runtime(modality, args.device, not args.quiet)
    data = Path(args.train_data or training["data"])
    windows = modality.load(data, **training["load_options"])
    replay = argparse.Namespace(train_groups=training["train_groups"], test_groups=None, gamma=None,
                                labelled_anomalies=training["n_labelled_anomalies"], seed=training["seed"],
                                max_train_windows=training.get("max_train_windows"))
    train, y = training_set(training_windows(windows, replay), replay)
    return modality.prepare(train.X), y


def cmd_evaluate(args: argparse.Namespace) -> int:
    model_dir = Path(args.model)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    model, modality = load_model_dir(model_dir, device=args.device)
    set_torch_threads(args.torch_threads, model.window_shape_)
    model.verbose = not args.quiet
    training = read_training_record(model_dir)
    relabel(modality, args)
    set_runtime(modality, args.device, not args.quiet)
    data = Path(args.data or training["data"])
    windows = modality.load(data, **load_options(modality, data, args, "test"))
    test = held_out(windows, training, args.test_groups)
    if test.y is None:
        raise ValueError(f"the windows of {data} have no labels: evaluate needs labels (use score-file to score)")
    X_test = modality.prepare(test.X)
    timings["load_and_prepare_test"] = time.perf_counter() - started

    X_train = y_train = None
    baselines = [] if args.no_baselines else list(BASELINE_NAMES)
    if baselines:
        started = time.perf_counter()
        X_train, y_train = reload_training_windows(model_dir, args, training)
        timings["load_and_prepare_train"] = time.perf_counter() - started
    scored = score_detectors(model, X_train, y_train, X_test, baselines)
    timings.update(detector_timings(scored, training))

    aggregate = args.aggregate or default_aggregate(modality)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "model": str(model_dir),
        "modality": modality.name,
        "data": str(data.resolve()),
        "test_groups": sorted(set(test.group)),
        "training": training,
        "target_fpr": model.target_fpr,
        "aggregate": aggregate,
        "levels": evaluation_levels(test, scored, aggregate),
        "timings": timings,
        "windows_per_second": len(X_test) / max(scored["AGAD"].score_seconds, 1e-9),
    }
    write_plots(out, model, X_test, test, scored)
    reports.write_report(out, report)
    print_summary(report, out)
    return 0


def detector_timings(scored: dict[str, Scored], training: dict[str, Any]) -> dict[str, float]:
    timings = {"train AGAD (from training.json)": float(training.get("train_seconds", 0.0))}
    for name, s in scored.items():
        if s.fit_seconds is not None:
            timings[f"fit {name}"] = s.fit_seconds
        timings[f"score {name}"] = s.score_seconds
    return timings


def write_plots(out: Path, model: AGAD, X_test: np.ndarray, test: Windows, scored: dict[str, Scored]) -> None:
    y, agad = test.y, scored["AGAD"].scores
    reports.plot_roc(out / reports.ROC_PLOT, y, {n: s.scores for n, s in scored.items()}, "ROC, window level")
    reports.plot_histograms(out / reports.HISTOGRAM_PLOT, y, agad, model.threshold_, "AGAD scores on held-out windows")
    chosen = reports.explanation_indices(y, agad)
    _, residuals = model.score_and_residuals(X_test[chosen]) if chosen else (None, X_test[:0])
    captions = [f"{'anomalous' if y[i] else 'normal'} {test.source[i]} @ {test.position[i]}, score {agad[i]:.3g}"
                for i in chosen]
    inputs = X_test[chosen]
    reports.plot_explanations(out / reports.EXPLANATION_PLOT, inputs, inputs - residuals, residuals, captions)


def print_summary(report: dict[str, Any], out: Path) -> None:
    for level, block in report["levels"].items():
        c = block["counts"]
        print(f"\n{level} level: {c['n']} ({c['n_normal']} normal, {c['n_anomalous']} anomalous)")
        print(reports.results_table(block["results"], ("auroc", "auprc", "precision", "recall", "f1")))
    print(f"\nreport: {out / 'report.md'}")


# --------------------------------------------------------------------------- score-file
def cmd_score_file(args: argparse.Namespace) -> int:
    model, modality = load_model_dir(Path(args.model), device=args.device)
    set_torch_threads(args.torch_threads, model.window_shape_)
    relabel(modality, args)
    set_runtime(modality, args.device, not args.quiet)
    data = Path(args.data)
    windows = modality.load(data, **load_options(modality, data, args, "test"))
    scores = model.score_samples(modality.prepare(windows.X))
    flagged = scores > model.threshold_
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "position", "score", "label", "flagged"])
        for i in range(len(windows)):
            label = "" if windows.y is None else int(windows.y[i])
            writer.writerow([windows.source[i], int(windows.position[i]), f"{scores[i]:.6g}", label, int(flagged[i])])
    print(f"scored {len(windows)} windows, {int(flagged.sum())} flagged (threshold {model.threshold_:.4g}): {out}")
    return 0


# --------------------------------------------------------------------------- registration
def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1...")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--torch-threads", type=int,
                        help=f"CPU threads for torch (default: 1 for windows of up to {SMALL_WINDOW_VALUES} values, "
                             "the fastest for such small models, above all on a busy machine; else torch's own "
                             "choice, as with 0)")


def add_group_options(parser: argparse.ArgumentParser, test_help: str) -> None:
    parser.add_argument("--test-groups", "--test-records", dest="test_groups", type=_comma_list, help=test_help)


TRAIN_HELP = """Train AGAD on the normal windows of the training data.

What "training data" means:
  ecg    every record in --data (or --records), minus --test-records; or exactly --train-records.
         Normal beats only (by default: N L R e j with `atr`, Q with `pvc`).
  audio  DCASE layout: the train/ folder; a flat folder (e.g. FSDD): every group (speaker with
         --preset fsdd, else file) minus --test-groups. Windows are log-mel patches of normal clips.
  image  the train split of an IDX folder (or the .npz given); normal = --normal classes.
  array  the file given; normal = --normal label (or y = 0 in an .npz).
--gamma G adds labelled anomalies drawn from the training groups so that a / (n + a) = G.
The model directory keeps the checkpoint, the modality settings and training.json (what
was trained on), so evaluate can test on unseen groups and refit the baselines.

On a small CPU, --max-train-windows (a seeded subset of normal windows) and, for ECG,
--fs 180 keep training to minutes; the ECG benchmarks use --fs 180 --max-train-windows 3000.

example: agad-stream train --modality ecg --data ../shared/data/mitdb-mlii-pvc --ann pvc \\
             --test-records 105,108,119,123 --out models/pvc"""

EVALUATE_HELP = """Evaluate a model on held-out windows and write report.json, report.md and PNG plots.

Groups used in training (training.json) are always left out, so with the training data
(the default --data) the test set is the held-out records / speakers, and with DCASE or
IDX data it is the test split. Baselines (IsolationForest, PCA reconstruction error,
plain autoencoder with only L_con and the same budget) are refitted on exactly the
training windows recorded in training.json (--train-data if the data moved) and scored
on the same test windows; every threshold comes from held-out normal training windows."""


def register(subparsers: argparse._SubParsersAction) -> None:
    formatter = argparse.RawDescriptionHelpFormatter

    train = subparsers.add_parser("train", help="train AGAD on normal windows of a dataset",
                                  description=TRAIN_HELP, formatter_class=formatter)
    train.add_argument("--modality", required=True, choices=MODALITIES)
    train.add_argument("--data", required=True, help="record, file or directory")
    train.add_argument("--out", required=True, help="model directory to write")
    train.add_argument("--train-groups", "--train-records", dest="train_groups", type=_comma_list,
                       help="groups (ECG records, speakers, files) to train on (default: all but the test groups)")
    add_group_options(train, "groups held out of training, for evaluate")
    model = train.add_argument_group("model and budget (default: AGAD's, sized from the data; early stopping)")
    model.add_argument("--max-steps", type=int, help="optimiser steps at most (default 3000; early stopping ends sooner)")
    model.add_argument("--epochs", type=int, help="passes over the normal windows, instead of --max-steps")
    model.add_argument("--batch-size", type=int, help="default: 32 below 2048 training windows, else 64")
    model.add_argument("--channels", type=_int_list, help="conv widths, e.g. 32,64,128 (default: by data size)")
    model.add_argument("--latent-dim", type=int, help="bottleneck size (default: by window size)")
    model.add_argument("--generator", help="registered generator (default: the modality's, usually naive)")
    model.add_argument("--lr", type=float, default=2e-4)
    model.add_argument("--target-fpr", type=float, default=0.01, help="false-positive rate that sets the threshold")
    model.add_argument("--anomaly-score", choices=("reconstruction", "discriminator", "combined"), default="reconstruction",
                       help="what a window's score is: A(x) = ||x - G(x)|| (default), D's opinion, or both on a common "
                            "scale (with labels, 'combined' ranked the labelled type best on ECG validation; a model "
                            "that needs D is served with --engine torch)")
    model.add_argument("--gamma", type=float, help="supervision level a/(n+a) of labelled anomalies")
    model.add_argument("--labelled-anomalies", type=int, help="number of labelled anomalies (instead of --gamma)")
    model.add_argument("--max-train-windows", type=int,
                       help="train on a seeded random subset of this many normal windows (default: all)")
    model.add_argument("--seed", type=int, default=0)
    add_data_options(train)
    add_runtime_options(train)
    train.set_defaults(func=cmd_train)

    evaluate = subparsers.add_parser("evaluate", help="metrics, plots and baselines on held-out windows",
                                     description=EVALUATE_HELP, formatter_class=formatter)
    evaluate.add_argument("--model", required=True, help="model directory written by train")
    evaluate.add_argument("--data", help="labelled data to evaluate on (default: the training data's held-out groups)")
    evaluate.add_argument("--out", required=True, help="report directory to write")
    add_group_options(evaluate, "evaluate only these groups")
    evaluate.add_argument("--train-data", help="where the training data lives now, if it moved since training")
    evaluate.add_argument("--no-baselines", action="store_true", help="score AGAD only")
    evaluate.add_argument("--aggregate", choices=("none", "mean", "max"),
                          help="also report per-source (clip) scores: mean or max of window scores (audio default: mean)")
    add_data_options(evaluate)
    add_runtime_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    score = subparsers.add_parser("score-file", help="score every window of a record or file into a CSV",
                                  description="One CSV row per window: source, position (start sample or index), "
                                              "score, label (empty if unknown), flagged (score > threshold).")
    score.add_argument("--model", required=True, help="model directory written by train")
    score.add_argument("--data", required=True, help="record, file or directory to score")
    score.add_argument("--out", required=True, help="CSV file to write")
    add_data_options(score)
    add_runtime_options(score)
    score.set_defaults(func=cmd_score_file)
