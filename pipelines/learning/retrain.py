"""`agad-stream retrain`: confirmed labels train a candidate model; the gate decides whether it serves.

A long-lived job (or one pass with --once): it moves the labels topic into the label store,
and when --every has passed and at least --min-new labels are new, it trains a candidate in
AGAD's supervised mode: anomalies = the confirmed ones; normals = the registry's reference
normal windows plus the confirmed false alarms (training split only). The candidate
fine-tunes the current model (`warm_start`) or starts from scratch (--init); `auto` trains
both and keeps the one that validates better. The gate compares it with the current model
on the validation set; the candidate is added to the registry either way, with its
decision, figures, parent, label counts and split in its metadata, becomes current only when
promoted, and the decision is appended to the registry log.

The validation set is the reference normals held out of training plus the confirmations the
gate holds out, chosen at each retrain by stream and by time, never by window id (windows
of one record are alike, so an id split would let a candidate that learned one record's
labels pass on their neighbours):
- confirmations from two or more streams: whole streams are held out, in a fixed order (a
  hash of the stream name), as many as bring the held-out share closest to --holdout, with
  at least one stream left for training;
- confirmations from one stream: its newest --holdout share (by the confirmations' `at`) is
  held out.
A confirmation without a stream counts as one unnamed stream. The rule and what it held out
are in the decision's `split`.

The gate also scores a trusted set that new labels cannot argue with (see `gate.py`); with
--require-signed, only confirmations signed with the shared key (`signing.py`) are stored.

It runs at lowered priority (os.nice) with --torch-threads threads, so a scorer on the same
machine keeps its throughput. A crash at any point leaves the registry at its previous
current version and the store intact; the labels are then simply used by the next run.
One job per registry: a second one is refused (a lock file in the registry).

Exit codes of --once: 0 promoted, 1 failed, 2 bad arguments or setup, 3 nothing to do
(fewer than --min-new new labels), 4 the gate refused the candidate.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import re
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from kafka.errors import KafkaError

from agad_stream import ModelRegistry
from modalities import Modality
from pipelines.learning import signing
from pipelines.learning.gate import (GateRule, Validation, contradictions, decide, near_identical_conflicts,
                                     trusted_figures)
from pipelines.learning.ingest import LabelIngest
from pipelines.learning.labels import SignaturePolicy
from pipelines.learning.reference import load_reference
from pipelines.learning.store import LabelStore
from pipelines.offline.model_dir import load_model_dir, save_model_dir
from pipelines.kafka.kafka_io import quiet_kafka_logging
from pipelines.kafka.metrics import log_event
from pipelines.streaming.serving import resolve_raw_shape

if TYPE_CHECKING:
    from agad_stream import AGAD

log = logging.getLogger("agad_stream.retrain")

INITS = ("auto", "fine-tune", "scratch")
#: pause between two looks at the labels topic: a new label waits at most this long to be stored
IDLE_SLEEP_S = 1.0
#: test hook: when set to "training" or "registry-write", the job logs event=test_pause and waits there
PAUSE_ENV = "AGAD_RETRAIN_TEST_PAUSE"
EXIT_PROMOTED, EXIT_FAILED, EXIT_NOTHING_TO_DO, EXIT_REFUSED = 0, 1, 3, 4
LOCK_FILE = "retrain.lock"


@dataclass
class RetrainConfig:
    min_new: int = 20
    init: str = "auto"
    rule: GateRule = field(default_factory=GateRule)
    #: AGAD parameters that override the current model's for the candidate (e.g. a training budget)
    overrides: dict = field(default_factory=dict)
    seed: int = 0


def test_pause(stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        log_event(log, "test_pause", stage=stage, pid=os.getpid())
        for handler in logging.getLogger().handlers:
            handler.flush()
        time.sleep(3600)


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '2h' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise ValueError(f"duration {text!r} should look like 30s, 10m or 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def train_candidates(current: AGAD, current_dir: Path, X: np.ndarray, y: np.ndarray, config: RetrainConfig) -> dict[str, AGAD]:
    """The candidate(s) --init asks for; fine-tuning needs AGAD's warm_start (else scratch only)."""
    from agad_stream import AGAD

    params = current.get_params()
    budget = {k: v for k, v in config.overrides.items() if k in params}
    inits = ["fine-tune", "scratch"] if config.init == "auto" else [config.init]
    if "warm_start" not in params and "fine-tune" in inits:
        log_event(log, "fine_tune_unavailable", logging.WARNING, note="this AGAD has no warm_start; training from scratch")
        inits = ["scratch"]
    candidates = {}
    for init in inits:
        test_pause("training")
        if init == "fine-tune":
            model = AGAD.load(current_dir, device="cpu")
            model.set_params(warm_start=True, verbose=False, random_state=config.seed, **budget)
        else:
            model = AGAD(**{**params, **budget, "device": "cpu", "verbose": False, "random_state": config.seed})
        started = time.monotonic()
        candidates[init] = model.fit(X, y)
        log_event(log, "candidate_trained", init=init, windows=len(X), anomalies=int(y.sum()),
                  seconds=round(time.monotonic() - started, 2))
    return candidates


def retrain_once(registry: ModelRegistry, store: LabelStore, config: RetrainConfig) -> dict | None:
    """One retrain with gate; the log entry, or None when fewer than min_new labels are new."""
    counts = store.counts()
    if counts["new"] < config.min_new:
        return None
    parent = registry.current_version()
    current_dir = registry.current_path()
    current, modality = load_model_dir(current_dir, device="cpu")
    ref_train, ref_validation = load_reference(registry)
    split = store.gate_split()
    train, validation = store.windows("train", split), store.windows("validation", split)
    X = modality.prepare(np.concatenate([ref_train, *([train.X] if len(train.ids) else [])]))
    y = np.concatenate([np.zeros(len(ref_train), np.int8), train.y])
    X_val = modality.prepare(np.concatenate([ref_validation, *([validation.X] if len(validation.ids) else [])]))
    y_val = np.concatenate([np.zeros(len(ref_validation), np.int8), validation.y])
    trusted_normals = np.concatenate([X[:len(ref_train)], X_val[:len(ref_validation)]])  # the reference, prepared
    stored_trusted = store.trusted_anomalies()
    trusted_anomalies = modality.prepare(stored_trusted) if len(stored_trusted) else trusted_normals[:0]
    new = store.new_windows()
    new_X = modality.prepare(new.X) if len(new.ids) else trusted_normals[:0]
    contradicting = contradictions(current, new_X, new.y, trusted_normals)
    conflicts = {"same_window": store.windows_labelled_both_ways(), "near_identical": near_identical_conflicts(
        np.concatenate([new_X, trusted_anomalies, trusted_normals]),
        np.concatenate([new.y, np.ones(len(trusted_anomalies), np.int8), np.zeros(len(trusted_normals), np.int8)]))}
    log_event(log, "label_conflicts", **conflicts, contradicting_current_model=contradicting["contradicting"],
              new_labels=contradicting["new_labels"])

    candidates = train_candidates(current, current_dir, X, y, config)
    validations = {init: Validation.of(model, X_val, y_val) for init, model in candidates.items()}
    figures = {init: validation.figures() for init, validation in validations.items()}
    init = max(figures, key=lambda k: (figures[k]["auroc"] or 0.0, figures[k]["recall"] or 0.0))
    current_validation = Validation.of(current, X_val, y_val)
    trusted = trusted_figures(current, candidates[init], trusted_anomalies)
    promote, reasons, found = decide(current_validation, validations[init], config.rule, trusted, contradicting)
    entry = {
        "event": "promoted" if promote else "rejected", "parent": parent, "init": init, "reasons": reasons,
        "current": current_validation.figures(), "candidate": figures[init], "intervals": found,
        "rule": config.rule.to_dict(),
        "labels": {**counts, "upto_seq": max(train.upto_seq, validation.upto_seq)},
        "training_windows": {"normals": int((y == 0).sum()), "anomalies": int(y.sum())}, "split": split.describe(),
        "trusted": trusted, "contradicting": contradicting, "conflicts": conflicts,
        **({"alternatives": {k: v for k, v in figures.items() if k != init}} if len(figures) > 1 else {}),
    }
    entry["version"] = publish_candidate(registry, candidates[init], modality, entry)
    if promote:
        registry.set_current(entry["version"])
        store.trust_anomalies(entry["labels"]["upto_seq"], entry["version"])
    registry.append_log(entry)
    store.mark_trained(entry["labels"]["upto_seq"])
    log_event(log, entry["event"], version=entry["version"], parent=parent, reasons="; ".join(reasons))
    return entry


def publish_candidate(registry: ModelRegistry, model: AGAD, modality: Modality, entry: dict) -> int:
    """Add the candidate as a new (not yet current) version with the decision as its metadata."""
    from agad_stream.onnx_export import export_checkpoint

    metadata = {"decision": entry["event"], **{k: v for k, v in entry.items() if k != "event"}}
    with tempfile.TemporaryDirectory(prefix="agad-candidate-") as tmp:
        save_model_dir(Path(tmp) / "model", model, modality)
        export_checkpoint(Path(tmp) / "model", model)
        return registry.publish(Path(tmp) / "model", make_current=False, metadata=metadata,
                                before_rename=lambda staging: test_pause("registry-write"))


# --------------------------------------------------------------------------- the command
def register(subparsers) -> None:
    p = subparsers.add_parser("retrain", help="retrain on confirmed labels from Kafka, behind a promotion gate",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-registry", required=True, help="registry whose current version is retrained")
    p.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    p.add_argument("--labels-topic", required=True, help="confirmations (JSON)")
    p.add_argument("--dlq-topic", help="malformed confirmations (default LABELS_TOPIC-dead)")
    p.add_argument("--group", help="consumer group holding the labels topic's offsets (default: agad-retrain- plus a "
                                   "digest of the registry's path, so each registry reads the labels topic once)")
    p.add_argument("--store", help="SQLite label store (default MODEL_REGISTRY/labels.sqlite)")
    p.add_argument("--every", default="10m", help="retrain at most this often: 30s, 10m, 2h (default 10m)")
    p.add_argument("--min-new", type=int, default=20, help="retrain only when this many labels are new (default 20)")
    p.add_argument("--once", action="store_true", help="ingest what the topic holds, retrain if due, and exit")
    p.add_argument("--init", choices=INITS, default="auto",
                   help="fine-tune the current model, train from scratch, or auto: both, keep the better (default)")
    p.add_argument("--epochs", type=int, help="training budget of a candidate (default: the current model's)")
    rule = GateRule()
    p.add_argument("--max-auroc-drop", type=float, default=rule.max_auroc_drop,
                   help="gate: refuse when AUROC falls by more than this, significantly (default %(default)g)")
    p.add_argument("--max-fpr-increase", type=float, default=rule.max_fpr_increase,
                   help="gate: refuse when the FPR rises by more than this, significantly, and is significantly above "
                        "--fpr-tolerance x the model's target FPR (default %(default)g)")
    p.add_argument("--fpr-tolerance", type=float, default=rule.fpr_tolerance,
                   help="gate: the FPR a candidate may show, as a multiple of its target FPR (default %(default)g)")
    p.add_argument("--max-recall-drop", type=float, default=rule.max_recall_drop,
                   help="gate: refuse when recall falls by more than this, significantly (default %(default)g)")
    p.add_argument("--confidence", type=float, default=rule.confidence,
                   help="gate: confidence of each figure's interval (default %(default)g)")
    p.add_argument("--min-validation-anomalies", type=int, default=rule.min_validation_anomalies,
                   help="gate: held-out confirmed anomalies needed to promote (default %(default)s)")
    p.add_argument("--min-validation-normals", type=int,
                   help="gate: validation normals needed to promote (default: as many as find twice the tolerated FPR "
                        "with 80%% power; 713 for a 1%% target)")
    p.add_argument("--max-trusted-recall-drop", type=float, default=0.05,
                   help="gate: share of the trusted anomalies the current model detects that the candidate may miss "
                        "(default 0.05)")
    p.add_argument("--max-contradicting-share", type=float, default=0.5,
                   help="gate: share of new labels that may be false alarms on windows the current model scores above "
                        "every trusted normal (default 0.5)")
    p.add_argument("--signing-key", metavar="FILE",
                   help=f"key of signed confirmations (default ${signing.KEY_ENV}); a bad signature is dead-lettered")
    p.add_argument("--require-signed", action="store_true",
                   help="dead-letter unsigned confirmations too (needs --signing-key or the variable)")
    p.add_argument("--holdout", type=float,
                   help="share of labels the gate holds out, by stream or by time as above (fixed when the store is "
                        "created; default 0.3)")
    p.add_argument("--nice", type=int, default=10, help="lower the job's CPU priority by this much (default 10)")
    p.add_argument("--torch-threads", type=int, default=1, help="CPU threads for training (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> RetrainConfig:
    if args.min_new < 1:
        raise ValueError(f"--min-new must be >= 1, got {args.min_new}")
    if not 0 < args.confidence < 1:
        raise ValueError(f"--confidence must lie in (0, 1), got {args.confidence}")
    if args.fpr_tolerance <= 0:
        raise ValueError(f"--fpr-tolerance must be > 0, got {args.fpr_tolerance}")
    rule = GateRule(args.max_auroc_drop, args.max_fpr_increase, args.max_recall_drop, args.min_validation_anomalies,
                    args.max_trusted_recall_drop, args.max_contradicting_share, args.confidence, args.fpr_tolerance,
                    args.min_validation_normals)
    overrides = {"epochs": args.epochs, "max_steps": None} if args.epochs else {}
    return RetrainConfig(min_new=args.min_new, init=args.init, rule=rule, overrides=overrides, seed=args.seed)


def default_group(registry: ModelRegistry) -> str:
    """One consumer group per registry: two registries fed by one labels topic each read all of it."""
    return f"agad-retrain-{hashlib.sha256(str(registry.root.resolve()).encode()).hexdigest()[:12]}"


def signature_policy(args: argparse.Namespace) -> SignaturePolicy:
    key = signing.load_key(args.signing_key)
    if args.require_signed and key is None:
        raise ValueError(f"--require-signed needs the signing key: --signing-key FILE or ${signing.KEY_ENV}")
    return SignaturePolicy(key, args.require_signed)


def hold_registry_lock(registry: ModelRegistry):
    """An exclusive lock on the registry's retrain lock file for the life of the process (released
    by the kernel when it exits, however it dies); a second job is refused."""
    registry.root.mkdir(parents=True, exist_ok=True)
    lock = open(registry.root / LOCK_FILE, "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "another process"
        lock.close()
        raise ValueError(f"another retrain job ({holder}) holds {registry.root / LOCK_FILE}: run one job per registry")
    lock.truncate(0)
    lock.write(f"pid {os.getpid()} on {os.uname().nodename}")
    lock.flush()
    return lock


def run(args: argparse.Namespace) -> int:
    quiet_kafka_logging()
    config = config_from_args(args)
    every_s = parse_duration(args.every)
    signatures = signature_policy(args)
    import torch

    os.nice(args.nice)
    torch.set_num_threads(args.torch_threads)
    registry = ModelRegistry(args.model_registry)
    model, modality = load_model_dir(registry.current_path(), device="cpu")
    raw_shape = resolve_raw_shape(modality, model.window_shape_)
    load_reference(registry, raw_shape)  # fail now, not at the first retrain
    lock = hold_registry_lock(registry)
    store = LabelStore(args.store or registry.root / "labels.sqlite", holdout=args.holdout)
    ingest = None
    last_retrain = time.monotonic() - every_s  # the first pass may retrain at once
    group = args.group or default_group(registry)
    reported_new = None  # the long-lived job looks every second: it says "not enough" once per count
    try:
        while True:
            try:
                ingest = ingest or LabelIngest(args.bootstrap_servers, args.labels_topic,
                                               args.dlq_topic or f"{args.labels_topic}-dead", group, store, raw_shape,
                                               signatures)
                stats = ingest.drain()
                if stats.received:
                    log_event(log, "labels_ingested", **vars(stats), **store.counts())
            except (KafkaError, sqlite3.Error) as error:  # nothing committed: reconnect, re-read from the committed offsets
                log_event(log, "ingest_failed", logging.WARNING, error=repr(error))
                if ingest is not None:
                    ingest.close()
                ingest = None
                if args.once:
                    return EXIT_FAILED
            entry = None
            if args.once or time.monotonic() - last_retrain >= every_s:
                try:
                    entry = retrain_once(registry, store, config)
                    if entry is not None:
                        last_retrain = time.monotonic()
                    elif (new := store.counts()["new"]) != reported_new:
                        log_event(log, "not_enough_labels", new=new, min_new=config.min_new)
                        reported_new = new
                except Exception as error:  # the registry is as it was and the labels stay new: retry next time
                    if args.once:
                        raise
                    log_event(log, "retrain_failed", logging.ERROR, error=repr(error), retry_in_s=every_s)
                    last_retrain = time.monotonic()
            if args.once:
                return EXIT_NOTHING_TO_DO if entry is None else EXIT_PROMOTED if entry["event"] == "promoted" \
                    else EXIT_REFUSED
            time.sleep(IDLE_SLEEP_S)
    finally:
        if ingest is not None:
            ingest.close()
        store.close()
        lock.close()
