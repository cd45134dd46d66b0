"""The gate measures generalisation: a candidate that learned one record's confirmations is
judged on a record it was not trained on (real MIT-BIH beats, a real label store and registry,
no broker: `retrain_once` is what `agad-stream retrain` runs after ingesting).

The construction. Version 1 is trained on normal beats of record 119. The reviewer of record
119 dismisses its PVCs as false alarms (the patient's known ectopy) and confirms beats with an
inverted T wave; the reviewer of record 208 confirms its PVCs. A candidate trained on record
119's confirmations learns that PVCs are normal: it gets better on record 119's own labels and
misses the PVCs of record 208, where the current model catches them. Record 208's stream is
the one the gate holds out, so the gate sees that, and refuses.
"""

from pathlib import Path

import numpy as np
import pytest

from agad_stream import AGAD, ModelRegistry
from modalities import get_modality
from pipelines.learning.gate import GateRule
from pipelines.learning.labels import Confirmation
from pipelines.learning.reference import load_reference, save_reference
from pipelines.learning.retrain import RetrainConfig, retrain_once
from pipelines.learning.store import LabelStore, held_out_streams
from pipelines.offline.model_dir import load_model_dir, save_model_dir
from pipelines.kafka import codec

DATA = Path(__file__).parent / "data"
TRAINING_STREAM, HELD_OUT_STREAM = "record-119", "record-208"
T_WAVE_START = 160  # samples: the beat's T wave lies after this (R peak at 115 of 288)
#: tiny and fast, with a strong bounded anomaly loss, as in test_learning_loop.py
TINY = dict(channels=(8, 16, 32), latent_dim=16, epochs=15, batch_size=32, lr=5e-3, adcon_margin=0.5,
            anomaly_loss="margin", anomaly_margin=20.0, anomalies_per_batch=16, early_stopping=False, verbose=False,
            random_state=0, device="cpu")


def invert_t(raw: np.ndarray) -> np.ndarray:
    baseline = np.median(raw, axis=-1, keepdims=True)
    inverted = raw.copy()
    inverted[..., T_WAVE_START:] = baseline - 0.5 * (raw[..., T_WAVE_START:] - baseline)
    return inverted


def confirmations(stream: str, windows: np.ndarray, label: int, first_s: float) -> list[tuple[Confirmation, str]]:
    """(confirmation, source) pairs, one a second from `first_s` (seconds since the epoch)."""
    return [(Confirmation(f"{stream}-{label}-{n}", stream, label, w, "reviewer", codec.iso_utc(first_s + n), "1"),
             f"labels/0/{stream}-{label}-{n}") for n, w in enumerate(windows)]


@pytest.mark.timeout(300)
def test_a_candidate_that_learned_one_records_labels_is_refused_on_a_held_out_record(tmp_path):
    record_119 = get_modality("ecg", ann="pvc")
    beats_119 = record_119.load(DATA / "mitdb-pvc" / "119")
    beats_208 = get_modality("ecg", leads=["MLII"], anomaly_symbols="V").load(DATA / "mitdb" / "208")
    normal_119, pvc_119 = beats_119.X[beats_119.y == 0], beats_119.X[beats_119.y == 1]
    pvc_208 = beats_208.X[beats_208.y == 1]
    assert held_out_streams({TRAINING_STREAM: 1, HELD_OUT_STREAM: 1}, 0.3) == [HELD_OUT_STREAM]

    registry = ModelRegistry(tmp_path / "registry")
    save_reference(registry, normal_119[:100])
    model = AGAD(**TINY).fit(record_119.prepare(load_reference(registry)[0]))
    registry.publish(save_model_dir(tmp_path / "v1", model, record_119))
    store = LabelStore(registry.root / "labels.sqlite", holdout=0.3)
    # the held-out stream confirms first: neither the time nor the order of arrival decides the split
    day = 1_767_261_600.0  # 2026-01-01 10:00 UTC
    store.add(confirmations(HELD_OUT_STREAM, pvc_208[:40], 1, day)
              + confirmations(TRAINING_STREAM, pvc_119, 0, day + 100)
              + confirmations(TRAINING_STREAM, invert_t(normal_119[100:130]), 1, day + 200))

    # FPR not gated: on 20 validation normals it moves by chance (test_learning_loop.py's docstring)
    rule = GateRule(max_fpr_increase=1.0, min_validation_normals=0)
    entry = retrain_once(registry, store, RetrainConfig(min_new=1, init="scratch", rule=rule, overrides={}, seed=0))

    assert entry["split"]["by"] == "stream" and entry["split"]["validation_streams"] == [HELD_OUT_STREAM]
    assert entry["training_windows"]["anomalies"] == 30  # record 119's inverted T waves, and nothing of 208
    assert entry["candidate"]["anomalies"] == 40
    assert entry["event"] == "rejected" and registry.current_version() == 1
    recall = next(r for r in entry["reasons"] if r.startswith("recall on confirmed anomalies"))
    assert "worse by" in recall, entry["reasons"]
    assert entry["candidate"]["recall"] < entry["current"]["recall"]

    # on its own record the candidate did learn what it was told: this is overfitting, not a broken fit
    candidate, _ = load_model_dir(registry.path(entry["version"]), device="cpu")
    current, _ = load_model_dir(registry.path(1), device="cpu")
    own_labels = record_119.prepare(pvc_119)
    assert (candidate.score_samples(own_labels) > candidate.threshold_).mean() \
        < (current.score_samples(own_labels) > current.threshold_).mean()
