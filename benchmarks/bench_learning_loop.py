"""The learning loop on the demo's MIT-BIH records: global against adaptive per-stream
thresholds, and detection before and after one retrain on confirmations from other records.

Record split: the model trains on the normal beats of the demo's training records
(100, 105, 108, 116, 121, 123); the confirmations come from the same records (their PVCs as
confirmed anomalies, the normal beats the model flags as false alarms). The held-out
records 119 and 200 are only scored, each as one stream in time order. The retrain runs the
same code as `agad-stream retrain` (store, gate, registry), minus the Kafka ingest.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, write_results  # noqa: E402

from agad_stream import AGAD, ModelRegistry  # noqa: E402
from modalities import get_modality  # noqa: E402
from pipelines.learning.labels import Confirmation  # noqa: E402
from pipelines.learning.reference import load_reference, save_reference  # noqa: E402
from pipelines.learning.retrain import INITS, RetrainConfig, retrain_once  # noqa: E402
from pipelines.learning.store import LabelStore  # noqa: E402
from pipelines.offline.model_dir import load_model_dir, save_model_dir  # noqa: E402
from pipelines.streaming.thresholds import StreamThresholds, ThresholdConfig  # noqa: E402

TRAIN_RECORDS = ["100", "105", "108", "116", "121", "123"]
TEST_RECORDS = ["119", "200"]


def parse_args():
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "data" / "mitdb-mlii-pvc")
    p.add_argument("--epochs", type=int, default=3, help="the demo's budget")
    p.add_argument("--channels", default="32,64,128")
    p.add_argument("--max-train-windows", type=int, default=6000)
    p.add_argument("--max-confirmations", type=int, default=150, help="per label")
    p.add_argument("--init", choices=INITS, default="auto")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--quantile", type=float, default=0.99)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    return p.parse_args()


def detection(model: AGAD, modality, windows, records: list[str], warmup: int, quantile: float) -> dict:
    """Recall and FPR at the global and the adaptive threshold, per record (one stream each) and pooled."""
    results, pooled = {}, {"global": [], "adaptive": []}
    for record in records:
        mask = windows.source == record
        order = np.argsort(windows.position[mask], kind="stable")
        raw, y = windows.X[mask][order], windows.y[mask][order]
        scores = model.score_samples(modality.prepare(raw))
        adaptive = StreamThresholds(ThresholdConfig(mode="adaptive", warmup=warmup, window=max(warmup, 1000),
                                                    quantile=quantile))
        thresholds = {"global": np.full(len(scores), model.threshold_),
                      "adaptive": np.array([adaptive.apply(record, s, model.threshold_, 1)[0] for s in scores])}
        results[record] = {}
        for mode, t in thresholds.items():
            flagged = scores > t
            pooled[mode].append((flagged, y))
            results[record][mode] = rates(flagged, y)
        results[record]["auroc"] = round(float(roc_auc_score(y, scores)), 3)
    results["pooled"] = {mode: rates(np.concatenate([f for f, _ in v]), np.concatenate([y for _, y in v]))
                         for mode, v in pooled.items()}
    return results


def rates(flagged: np.ndarray, y: np.ndarray) -> dict:
    return {"recall": round(float(flagged[y == 1].mean()), 3), "fpr": round(float(flagged[y == 0].mean()), 4),
            "alarms": int(flagged.sum()), "anomalies": int((y == 1).sum()), "normals": int((y == 0).sum())}


def version_one_and_retrain(args, seed: int = 0) -> dict:
    """Version 1 trained on the training records' normal beats, then one retrain on
    confirmations from the same records; both models, the gate's entry and the test windows."""
    modality = get_modality("ecg", ann="pvc")
    train = modality.load(args.data, records=TRAIN_RECORDS)
    test = modality.load(args.data, records=TEST_RECORDS)
    rng = np.random.default_rng(seed)
    normal_idx = np.flatnonzero(train.y == 0)
    reference_idx = rng.permutation(normal_idx)[: args.max_train_windows]
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        registry = ModelRegistry(Path(tmp) / "registry")
        save_reference(registry, train.X[reference_idx])
        modality.fit_quality(train.X[normal_idx])
        model = AGAD(channels=tuple(int(c) for c in args.channels.split(",")), latent_dim=32, epochs=args.epochs,
                     batch_size=128, random_state=seed, device="cpu", verbose=False)
        model.fit(modality.prepare(load_reference(registry)[0]))
        registry.publish(save_model_dir(Path(tmp) / "v1", model, modality))

        train_scores = model.score_samples(modality.prepare(train.X))
        anomalies = rng.permutation(np.flatnonzero(train.y == 1))[: args.max_confirmations]
        false_alarms = rng.permutation(np.flatnonzero((train.y == 0) & (train_scores > model.threshold_)))
        false_alarms = false_alarms[: args.max_confirmations]
        store = LabelStore(Path(tmp) / "labels.sqlite")
        confirmations = [
            (Confirmation(f"{train.source[i]}:{train.position[i]}", str(train.source[i]), int(train.y[i]), train.X[i],
                          "benchmark", "", "1"), f"bench/0/{n}")
            for n, i in enumerate(np.concatenate([anomalies, false_alarms]))]
        store.add(confirmations)
        retrain_started = time.monotonic()
        entry = retrain_once(registry, store, RetrainConfig(min_new=1, init=args.init, seed=seed))
        retrain_s = time.monotonic() - retrain_started
        after_model = load_model_dir(registry.path(entry["version"]), device="cpu")[0]
    return {"modality": modality, "test": test, "before": model, "after": after_model, "entry": entry,
            "anomalies": len(anomalies), "false_alarms": len(false_alarms), "retrain_s": retrain_s}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    run = version_one_and_retrain(args)
    modality, test, entry, retrain_s = run["modality"], run["test"], run["entry"], run["retrain_s"]
    anomalies, false_alarms = run["anomalies"], run["false_alarms"]
    before = detection(run["before"], modality, test, TEST_RECORDS, args.warmup, args.quantile)
    after = detection(run["after"], modality, test, TEST_RECORDS, args.warmup, args.quantile)
    results = {"split": {"train_and_confirmations": TRAIN_RECORDS, "scored": TEST_RECORDS},
               "confirmed": {"anomalies": anomalies, "false_alarms": false_alarms},
               "gate": {k: entry[k] for k in ("event", "init", "reasons", "current", "candidate")},
               "retrain_seconds": round(retrain_s, 1), "before": before, "after_candidate": after}
    print(f"confirmations from records {','.join(TRAIN_RECORDS)}: {anomalies} PVCs, {false_alarms} false "
          f"alarms; retrain ({entry['init']}) took {retrain_s:.0f} s; gate: {entry['event']}: {'; '.join(entry['reasons'])}")
    for name, figures in (("v1", before), ("candidate", after)):
        print(f"{name} AUROC: " + ", ".join(f"{r} {figures[r]['auroc']:.3f}" for r in TEST_RECORDS))
    print("| model | threshold | " + " | ".join(f"{r} recall | {r} FPR" for r in [*TEST_RECORDS, "pooled"]) + " |")
    print("|---|---|" + "---|---|" * (len(TEST_RECORDS) + 1))
    for name, figures in (("v1", before), (f"candidate ({entry['event']})", after)):
        for mode in ("global", "adaptive"):
            cells = " | ".join(f"{figures[r][mode]['recall']:.3f} | {figures[r][mode]['fpr']:.4f}"
                               for r in [*TEST_RECORDS, "pooled"])
            print(f"| {name} | {mode} | {cells} |")
    write_results(args, results)


if __name__ == "__main__":
    main()
