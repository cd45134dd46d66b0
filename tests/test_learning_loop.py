"""The learning loop through a real Kafka broker: confirmations -> label store -> retrain ->
gate -> registry -> the scorer serves the new version; rollback; crash safety.

The anomaly type is a low-voltage beat (80% amplitude) with an inverted T wave (the beat after
its QRS mirrored about the baseline at half amplitude, as in ischaemia): a model trained on
normal beats of record 119 scores it *lower* than normal beats, by construction (its residual
shrinks with the amplitude), so only confirmed examples can teach it (a flat T wave would be
caught by the scorer's flatline check instead of the model). Models are tiny and train in
a few seconds (torch on one thread: tests/conftest.py).

Why the tests that expect a promotion do not gate on FPR: the gate measures FPR at the
model's threshold on the 20 reference validation normals, and the threshold is the largest
score of the 8 normal windows AGAD holds out of training (the 99% quantile of 8 scores).
Over random splits those 28 normal windows are exchangeable, so whatever the model,
P(k or more of the 20 score above the threshold) = (20/28)(19/27)...((21-k)/(29-k)): 0.50
for two false positives, 0.07 for seven (FPR 0.35, what a busy clean clone drew). The seed
fixes the split, but which windows outrank the 8 still moves with every bit of the numerics
(thread count, numpy and torch builds): over `retrain --seed` 0-9, the candidates kept from
the first test's 40 confirmations flagged 0, 0, 1, 1, 1, 1, 2, 2, 2 and 7 of the 20 (allowed:
1; seed 8 drew the 0.35), and seed 0's exactly 1. No pinning makes a 1-in-20 slack hold, so
these tests check recall and AUROC, which move from 0 to 1 and from < 0.6 to > 0.9.
"""

import json
import shutil
import signal

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

pytest.register_assert_rewrite("kafka_support")

from agad_stream import AGAD, ModelRegistry  # noqa: E402
from kafka_support import ECG_SLICE, ThreadScorer, read_topic, scored_ids, scorer_config, send, until_ids  # noqa: E402
from modalities import get_modality  # noqa: E402
from pipelines.cli import main as cli_main  # noqa: E402
from pipelines.learning.labels import encode_confirmation  # noqa: E402
from pipelines.learning.reference import load_reference, save_reference  # noqa: E402
from pipelines.learning.retrain import PAUSE_ENV  # noqa: E402
from pipelines.learning.store import LabelStore, gate_split  # noqa: E402
from pipelines.offline.model_dir import save_model_dir  # noqa: E402
from pipelines.streaming.replay import Message, encode_message  # noqa: E402
from pipelines.kafka.kafka_io import create_topics  # noqa: E402
from pipelines.streaming.serving import ModelSource  # noqa: E402

pytest_plugins = ["kafka_support"]
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

#: small and fast, with a strong bounded anomaly loss so that ~30 confirmations visibly teach it
TINY = dict(channels=(8, 16, 32), latent_dim=16, epochs=15, batch_size=32, lr=5e-3, adcon_margin=0.5, anomaly_loss="margin",
            anomaly_margin=20.0, anomalies_per_batch=16, early_stopping=False, verbose=False, random_state=0,
            device="cpu")
T_WAVE_START = 160  # samples: the beat's T wave lies after this (R peak at 115 of 288)
#: the anomalous beats' amplitude: a reconstruction error shrinks with the amplitude, so a model
#: trained on normal beats scores these below every normal beat (AUROC 0.000 over 4 seeds,
#: where the inverted T wave alone gave 0.36-0.89 as the numerics moved)
LOW_VOLTAGE = 0.8
HOLDOUT = 0.3
#: one false positive among the 20 reference validation normals
FPR_SLACK = 0.06
#: FPR not gated, for the tests that need a promotion (see the module docstring)
NO_FPR_GATE = 1.0
#: the gate's own rule refuses to judge an FPR on 20 validation normals (it needs 713 for a 1%
#: target); these tests gate on recall and AUROC, so they waive that count
FEW_NORMALS = ("--min-validation-normals", "0")
#: confirmed anomalies of the tests that expect a promotion
N_CONFIRMED = 30


def invert_t(raw: np.ndarray) -> np.ndarray:
    baseline = np.median(raw, axis=-1, keepdims=True)
    inverted = baseline + LOW_VOLTAGE * (raw - baseline)
    inverted[..., T_WAVE_START:] = baseline - 0.5 * (inverted[..., T_WAVE_START:] - baseline)
    return inverted


@pytest.fixture(scope="module")
def template(tmp_path_factory, ecg_windows):
    """A registry with version 1 (trained on the reference normals) and its reference windows,
    plus the normal beats left out of it (for evaluation) and the PVCs."""
    normal = ecg_windows.X[ecg_windows.y == 0]
    order = np.random.default_rng(0).permutation(len(normal))
    root = tmp_path_factory.mktemp("learning")
    registry = ModelRegistry(root / "registry")
    save_reference(registry, normal[order[:100]])
    modality = get_modality("ecg", ann="pvc")
    modality.load(ECG_SLICE)
    params = {k: v for k, v in TINY.items() if k in AGAD().get_params()}
    model = AGAD(**params).fit(modality.prepare(load_reference(registry)[0]))
    registry.publish(save_model_dir(root / "v1", model, modality))
    return registry.root, normal[order[:100]], normal[order[100:]], ecg_windows.X[ecg_windows.y == 1]


@pytest.fixture
def registry(template, tmp_path) -> ModelRegistry:
    shutil.copytree(template[0], tmp_path / "registry")
    return ModelRegistry(tmp_path / "registry")


@pytest.fixture
def labels_topic(make_topics):
    topics = make_topics()
    create_topics(topics.bootstrap, [f"{topics.input}-labels", f"{topics.input}-labels-dead"])
    return topics, f"{topics.input}-labels"


def windows_messages(prefix: str, windows: np.ndarray, label: int) -> list[Message]:
    return [encode_message(f"{prefix}-{n}", "119", w, label, "json") for n, w in enumerate(windows)]


def confirm(bootstrap: str, topic: str, prefix: str, windows: np.ndarray, label: int, ids=None,
            at: str | None = None) -> list[str]:
    ids = ids or [f"{prefix}-{n}" for n in range(len(windows))]
    send(bootstrap, topic, [Message(i, b"119", encode_confirmation(i, label, w, "test-reviewer", "119", 1, at), [])
                            for i, w in zip(ids, windows)])
    return ids


def retrain(registry: ModelRegistry, bootstrap: str, topic: str, *extra: str, fpr_slack: float = FPR_SLACK) -> int:
    return cli_main(["retrain", "--model-registry", str(registry.root), "--bootstrap-servers", bootstrap,
                     "--labels-topic", topic, "--group", f"{topic}-retrain", "--once", "--min-new", "5",
                     "--holdout", str(HOLDOUT), "--nice", "0", "--max-fpr-increase", str(fpr_slack), *FEW_NORMALS,
                     *extra])


def figures(records, prefix_normal: str, prefix_anomaly: str) -> tuple[float, float]:
    """AUROC and recall at the served threshold of score messages for two groups of ids."""
    rows = [r.json() for r in records if r.json()["id"].startswith((prefix_normal, prefix_anomaly))]
    y = [int(m["id"].startswith(prefix_anomaly)) for m in rows]
    scores = [m["score"] for m in rows]
    recall = np.mean([m["is_anomaly"] for m in rows if m["id"].startswith(prefix_anomaly)])
    return roc_auc_score(y, scores), float(recall)


@pytest.mark.slow
def test_confirmations_retrain_promote_and_the_scorer_switches_then_rolls_back(registry, template, labels_topic):
    topics, labels = labels_topic
    _, reference, held, _ = template
    before = windows_messages("before-normal", held, 0) + windows_messages("before-inverted", invert_t(held), 1)
    after = windows_messages("after-normal", held, 0) + windows_messages("after-inverted", invert_t(held), 1)
    back = windows_messages("back-normal", held[:10], 0)
    with ThreadScorer(scorer_config(topics), ModelSource(registry=registry.root, device="cpu")):
        send(topics.bootstrap, topics.input, before)
        read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in before}))
        confirm(topics.bootstrap, labels, "confirmed-inverted", invert_t(reference[:40]), 1)  # never in `held`
        assert retrain(registry, topics.bootstrap, labels, fpr_slack=NO_FPR_GATE) == 0
        entry = registry.read_log()[-1]
        assert entry["event"] == "promoted", entry["reasons"]
        assert registry.current_version() == entry["version"] == 2
        send(topics.bootstrap, topics.input, after)
        read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in after}))
        assert cli_main(["models", "--model-registry", str(registry.root), "rollback"]) == 0
        send(topics.bootstrap, topics.input, back)
        scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in back}))
    sent = before + after + back
    assert scored_ids(scores) == {m.id: 1 for m in sent}  # nothing lost or doubled across both switches
    version = {r.json()["id"]: r.json()["model_version"] for r in scores}
    assert {version[m.id] for m in before} == {1}
    assert {version[m.id] for m in after} == {2}  # the first batch after the promotion already uses it
    assert {version[m.id] for m in back} == {1}
    auroc_before, recall_before = figures(scores, "before-normal", "before-inverted")
    auroc_after, recall_after = figures(scores, "after-normal", "after-inverted")
    assert auroc_before < 0.6 and auroc_after > 0.9, (auroc_before, auroc_after)
    assert recall_after >= recall_before + 0.2, (recall_before, recall_after)
    meta = registry.metadata(2)
    assert meta["decision"] == "promoted" and meta["parent"] == 1
    assert meta["labels"]["train_anomalies"] + meta["labels"]["validation_anomalies"] == 40
    assert meta["candidate"]["recall"] > meta["current"]["recall"]
    assert [e["event"] for e in registry.read_log()] == ["promoted", "rollback"]
    assert registry.read_log()[-1] == {**registry.read_log()[-1], "version": 1, "previous": 2}


def test_the_gate_rejects_a_candidate_trained_on_mislabelled_confirmations(registry, template, labels_topic):
    """A reviewer wrongly dismisses PVCs as false alarms, and those go to training; later ones
    are confirmed correctly, and the gate holds out the newest confirmations of a stream."""
    topics, labels = labels_topic
    pvc = template[3]
    ids = [f"pvc-{n}" for n in range(len(pvc))]
    split = gate_split(ids, ["119"] * len(ids), list(range(len(ids))), HOLDOUT).split
    validation = [n for n, i in enumerate(ids) if split[i] == "validation"]
    training = [n for n, i in enumerate(ids) if split[i] == "train"]
    assert validation == list(range(len(ids) - len(validation), len(ids)))  # the newest
    confirm(topics.bootstrap, labels, "", pvc[training], 0, [ids[n] for n in training],  # mislabelled
            at="2026-01-01T10:00:00.000Z")
    confirm(topics.bootstrap, labels, "", pvc[validation], 1, [ids[n] for n in validation], at="2026-01-01T11:00:00.000Z")
    assert retrain(registry, topics.bootstrap, labels) == 4  # refused by the gate
    entry = registry.read_log()[-1]
    assert entry["event"] == "rejected"
    assert any("recall on confirmed anomalies" in r and "worse by" in r for r in entry["reasons"]), entry["reasons"]
    assert registry.current_version() == 1 and registry.metadata(entry["version"])["decision"] == "rejected"
    assert retrain(registry, topics.bootstrap, labels) == 3  # nothing new: no second candidate
    assert len(registry.read_log()) == 1


def test_bad_confirmations_are_dead_lettered_and_good_ones_kept(registry, template, labels_topic):
    topics, labels = labels_topic
    good = confirm(topics.bootstrap, labels, "good", template[3][:3], 1)
    bad = [b"{not json", json.dumps({"id": "x", "label": 5, "values": [0.0] * 288, "labelled_by": "a"}).encode()]
    send(topics.bootstrap, labels, [Message(f"bad-{n}", b"119", v, [("probe", b"kept")]) for n, v in enumerate(bad)])
    assert retrain(registry, topics.bootstrap, labels, "--min-new", "100") == 3  # stored; too few to retrain
    dead = read_topic(topics.bootstrap, f"{labels}-dead", lambda records: len(records) >= 2)
    assert [r.value for r in dead] == bad
    assert dead[0].headers["error"].startswith(b"undecodable: not JSON") and dead[0].headers["probe"] == b"kept"
    assert b"'label' must be 1" in dead[1].headers["error"]
    store = LabelStore(registry.root / "labels.sqlite")
    assert store.counts()["confirmations"] == 3 and sorted(h for i in good for h in [store.model_version(i)]) == ["1"] * 3


def test_a_reference_set_replaced_in_the_one_channel_shape_trains_the_next_candidate(registry, template, labels_topic,
                                                                                     tmp_path):
    """What wedged a new user's loop: normals saved as [N, L], then `retrain --once`."""
    topics, labels = labels_topic
    np.save(tmp_path / "normals.npy", template[1][:, 0])  # [100, 288]
    assert cli_main(["models", "--model-registry", str(registry.root), "reference", "--replace",
                     "--windows", str(tmp_path / "normals.npy")]) == 0
    confirm(topics.bootstrap, labels, "inverted", invert_t(template[1][:10]), 1)
    assert retrain(registry, topics.bootstrap, labels, "--init", "scratch", "--epochs", "1") in (0, 4)  # trained
    assert registry.versions() == [1, 2] and registry.read_log()[-1]["labels"]["confirmations"] == 10


@pytest.mark.slow  # two retrain commands started and one killed: 1-2 minutes on a busy machine
@pytest.mark.parametrize("stage", ["training", "registry-write"])
@pytest.mark.timeout(600)
def test_sigkill_during_retrain_leaves_the_previous_version_and_loses_no_label(
        registry, template, labels_topic, scorer_processes, stage):
    topics, labels = labels_topic
    ids = confirm(topics.bootstrap, labels, "inverted", invert_t(template[1][:N_CONFIRMED]), 1)
    args = ["--model-registry", str(registry.root), "--bootstrap-servers", topics.bootstrap, "--labels-topic", labels,
            "--group", f"{labels}-retrain", "--once", "--min-new", "5", "--holdout", str(HOLDOUT),
            "--max-fpr-increase", str(NO_FPR_GATE), "--init", "scratch",  # one candidate: the crash is the point here
            "--max-auroc-drop", "1", *FEW_NORMALS]  # nor the gate's verdict: AUROC on 9 held-out confirmations moves by chance
    job = scorer_processes(args, command="retrain", env={PAUSE_ENV: stage})
    job.wait_for(f"event=test_pause stage={stage}", timeout_s=240)
    job.process.send_signal(signal.SIGKILL)
    job.process.wait()
    assert registry.versions() == [1] and registry.current_version() == 1 and registry.read_log() == []
    store = LabelStore(registry.root / "labels.sqlite")
    assert store.counts()["confirmations"] == len(ids)  # stored and committed before training began
    store.close()
    again = scorer_processes(args, command="retrain")
    assert again.process.wait(240) == 0, again.log()
    assert registry.read_log()[-1]["event"] == "promoted" and registry.current_version() == 2
    store = LabelStore(registry.root / "labels.sqlite")
    assert store.counts()["confirmations"] == len(ids)  # nothing read twice, nothing lost
    assert sorted(store.windows("train").ids + store.windows("validation").ids) == sorted(ids)


@pytest.mark.slow
def test_the_long_lived_job_retrains_when_due_and_outlives_bad_messages(registry, template, labels_topic,
                                                                         scorer_processes):
    """--min-new is every confirmation sent: the job retrains on all of them, however the
    broker and a busy machine split their arrival."""
    topics, labels = labels_topic
    job = scorer_processes(["--model-registry", str(registry.root), "--bootstrap-servers", topics.bootstrap,
                            "--labels-topic", labels, "--group", f"{labels}-retrain", "--every", "1s",
                            "--min-new", str(N_CONFIRMED), "--holdout", str(HOLDOUT),
                            "--max-fpr-increase", str(NO_FPR_GATE), *FEW_NORMALS], command="retrain")
    send(topics.bootstrap, labels, [Message("bad", b"119", b"{not json", [])])
    job.wait_for("event=dead_letter")
    confirm(topics.bootstrap, labels, "inverted", invert_t(template[1][:N_CONFIRMED]), 1)
    job.wait_for("event=promoted", timeout_s=150)
    assert job.process.poll() is None and registry.current_version() == 2
    labels_used = registry.metadata(2)["labels"]
    assert labels_used["train_anomalies"] + labels_used["validation_anomalies"] == N_CONFIRMED


@pytest.mark.slow
def test_relabelling_the_anomalies_a_promoted_version_learned_is_refused(registry, template, labels_topic):
    """Issue 19: the gate's validation share comes from the same labels as training, so a forger
    who relabels confirmed anomalies as false alarms can argue a blind candidate through it.
    The anomalies version 2 was promoted on are trusted: a candidate that stops detecting them
    is refused, whatever the new labels say (the contradiction check is switched off here)."""
    topics, labels = labels_topic
    _, reference, _, _ = template
    ids = confirm(topics.bootstrap, labels, "confirmed-inverted", invert_t(reference[:40]), 1)
    assert retrain(registry, topics.bootstrap, labels, fpr_slack=NO_FPR_GATE) == 0 and registry.current_version() == 2
    assert LabelStore(registry.root / "labels.sqlite").trusted_anomalies().shape[0] == 40
    confirm(topics.bootstrap, labels, "", invert_t(reference[:40]), 0, ids)  # the same windows, now "normal"
    assert retrain(registry, topics.bootstrap, labels, "--max-contradicting-share", "1", "--init", "fine-tune") == 4
    entry = registry.read_log()[-1]
    assert entry["event"] == "rejected" and registry.current_version() == 2
    assert any(r.startswith("trusted anomalies the current model detects") and "more than" in r
               for r in entry["reasons"]), entry["reasons"]
    assert entry["conflicts"]["same_window"] == 40
