"""Issue 19's attacks, replayed on a real broker: one record must never stop a partition of
the scorer or the retrain job's ingestion, and nothing the project writes is invalid JSON."""

import hashlib
import json
import math
from collections import Counter

import numpy as np
import pytest
from kafka.admin import ConfigResource, ConfigResourceType

pytest.register_assert_rewrite("kafka_support")

from kafka_support import ThreadScorer, make_producer, messages, read_topic, scored_ids, scorer_config, send, until_ids  # noqa: E402
from pipelines.cli import main as cli_main  # noqa: E402
from pipelines.learning.labels import encode_confirmation  # noqa: E402
from pipelines.learning.reference import save_reference  # noqa: E402
from pipelines.learning.store import LabelStore  # noqa: E402
from pipelines.streaming.replay import Message  # noqa: E402
from pipelines.kafka import codec  # noqa: E402
from pipelines.kafka.kafka_io import create_topics, make_admin  # noqa: E402
from pipelines.streaming.serving import ModelSource  # noqa: E402

pytest_plugins = ["kafka_support"]  # fixtures: kafka_bootstrap, make_topics, ecg_windows, model_dirs
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


def strict(value: bytes) -> dict:
    """Parse as a strict parser (JavaScript's JSON.parse) would: NaN and Infinity are errors."""
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(value, parse_constant=refuse)


def window_without_stream(window_id: str, values: np.ndarray) -> bytes:
    """A JSON window with no "stream" field: its key becomes the stream of its score."""
    return json.dumps({"id": window_id, "values": values.tolist()}).encode()


def set_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    admin = make_admin(bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(limit)})])
    finally:
        admin.close()


def test_a_long_key_is_dead_lettered_and_the_partition_goes_on(make_topics, model_dirs, ecg_windows):
    """Defect 1: a 180,000-byte key of 0xff (or 600 kB of ASCII) became the score's stream,
    6 bytes per U+FFFD in JSON, too large for the output topic: retried for ever, and nothing
    behind it on the partition was scored again."""
    topics = make_topics()
    good = messages(ecg_windows.subset(np.arange(15)))
    hostile_keys = [b"\xff" * 180_000, b"a" * 600_000]
    producer = make_producer(topics.bootstrap)
    for n, message in enumerate(good):
        producer.send(topics.input, key=message.key, value=message.value, headers=message.headers)
        if n in (4, 9):
            key = hostile_keys[n // 5]
            producer.send(topics.input, key=key, value=window_without_stream(f"long-key-{n}", ecg_windows.X[0]))
    producer.flush()
    producer.close()
    with ThreadScorer(scorer_config(topics), ModelSource(model_dir=model_dirs[0], device="cpu")) as running:
        scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in good}), timeout_s=90)
        dead = read_topic(topics.bootstrap, topics.dlq, lambda records: len(records) >= 2)
        assert running.thread.is_alive()
    assert scored_ids(scores) == Counter({m.id: 1 for m in good})
    assert sorted(r.headers["error"].split(b":")[0] for r in dead) == [b"oversize_key"] * 2
    assert sorted(len(r.key) for r in dead) == sorted(map(len, hostile_keys))  # kept whole: they fit the topic
    assert all(len(r.value) < 100_000 for r in scores)


def test_a_score_the_broker_refuses_for_good_becomes_a_dead_letter(make_topics, model_dirs, ecg_windows):
    """A score message refused for good (here the output topic's limit is lowered under the
    scorer's feet) is dead-lettered as `unpublishable`, its source record kept; the scorer
    goes on, and scores again once the topic takes them."""
    topics = make_topics()
    first, refused, after = (messages(ecg_windows.subset(np.arange(a, b))) for a, b in ((0, 5), (5, 10), (10, 15)))
    with ThreadScorer(scorer_config(topics), ModelSource(model_dir=model_dirs[0], device="cpu")) as running:
        send(topics.bootstrap, topics.input, first)
        read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in first}))
        set_max_message_bytes(topics.bootstrap, topics.output, 200)  # smaller than any score message
        send(topics.bootstrap, topics.input, refused)
        dead = read_topic(topics.bootstrap, topics.dlq, lambda records: len(records) >= len(refused), timeout_s=90)
        set_max_message_bytes(topics.bootstrap, topics.output, 1_048_588)
        send(topics.bootstrap, topics.input, after)
        scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in first + after}), timeout_s=90)
        assert running.thread.is_alive()
    assert set(scored_ids(scores)) == {m.id for m in first + after}
    assert [r.headers["error"].split(b":")[0] for r in dead] == [b"unpublishable"] * len(refused)
    assert b"MessageSizeTooLarge" in dead[0].headers["error"]
    assert sorted(r.value for r in dead) == sorted(m.value for m in refused)  # the inputs, to replay later


def test_finite_but_huge_windows_score_as_strict_json_anomalies(make_topics, model_dirs, ecg_windows):
    """Defect 6: float32 values of +-1e18 and +-3e38 scored Infinity or NaN, written as bare
    Infinity/NaN, which JSON.parse (and so the console) rejects."""
    topics = make_topics()
    good = messages(ecg_windows.subset(np.arange(5)))
    huge = []
    for n, magnitude in enumerate((1e18, 3e38)):
        values = np.where(np.arange(ecg_windows.X[0].size) % 2, magnitude, -magnitude).astype(np.float32)
        huge.append(Message(f"huge-{n}", b"s", window_without_stream(f"huge-{n}", values), []))
    send(topics.bootstrap, topics.input, good + huge)
    with ThreadScorer(scorer_config(topics, review_topic=topics.dlq), ModelSource(model_dir=model_dirs[0],
                                                                                   device="cpu")) as running:
        scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in good + huge}))
        assert running.thread.is_alive()
    parsed = {message["id"]: message for message in map(strict, (r.value for r in scores))}
    for message in (parsed["huge-0"], parsed["huge-1"]):
        assert message["is_anomaly"] is True
        assert message["score"] is None or math.isfinite(message["score"])
    assert any(parsed[f"huge-{n}"].get("reason") == codec.NON_FINITE_SCORE for n in range(2))
    for review in read_topic(topics.bootstrap, topics.dlq):  # the review topic here
        strict(review.value)


def test_an_oversize_confirmation_is_dead_lettered_as_a_reference_and_the_rest_stored(make_topics, tmp_path,
                                                                                        model_dirs, ecg_windows):
    """Defect 2: a 1,048,400-byte confirmation (the broker takes it) was dead-lettered whole with
    headers on top, over the producer's limit: `retrain` exited 1 on every run and the 50
    good confirmations behind it were never stored."""
    from agad_stream import ModelRegistry
    topics = make_topics()
    labels, dead_topic = f"{topics.input}-labels", f"{topics.input}-labels-dead"
    create_topics(topics.bootstrap, [labels, dead_topic])
    registry = ModelRegistry(tmp_path / "registry")
    save_reference(registry, ecg_windows.X[ecg_windows.y == 0][:60])
    registry.publish(model_dirs[0])
    oversize = b'{"id": "big", "label": 1, "values": [' + b" " * (1_048_400 - 40) + b"]}"
    assert len(oversize) > 1_048_300
    good = [Message(f"good-{n}", b"119", encode_confirmation(f"good-{n}", 1, w, "reviewer", "119", 1), [])
            for n, w in enumerate(ecg_windows.X[:50])]
    send(topics.bootstrap, labels, [Message("big", b"119", oversize, [("probe", b"p" * 100)])] + good)
    code = cli_main(["retrain", "--model-registry", str(registry.root), "--bootstrap-servers", topics.bootstrap,
                     "--labels-topic", labels, "--group", f"{labels}-retrain", "--once", "--min-new", "1000"])
    assert code == 3  # stored, then nothing to do: fewer than --min-new labels
    store = LabelStore(registry.root / "labels.sqlite")
    assert store.counts()["confirmations"] == 50
    store.close()
    (dead,) = read_topic(topics.bootstrap, dead_topic, lambda records: len(records) >= 1)
    assert dead.value == b"" and dead.headers["error"].startswith(b"oversize:")
    assert dead.headers["original-sha256"] == hashlib.sha256(oversize).hexdigest().encode()


# --------------------------------------------------------------------------- forged labels
@pytest.fixture(scope="module")
def guarded_registry(tmp_path_factory, ecg_windows):
    """A registry whose version 1 (trained on 100 normal beats of record 119, its reference set)
    detects the record's PVCs without any label."""
    import torch

    from agad_stream import AGAD, ModelRegistry
    from kafka_support import ECG_SLICE
    from modalities import get_modality
    from pipelines.learning.reference import load_reference
    from pipelines.offline.model_dir import save_model_dir
    normal = ecg_windows.X[ecg_windows.y == 0]
    root = tmp_path_factory.mktemp("guarded")
    registry = ModelRegistry(root / "registry")
    save_reference(registry, normal[:100])
    modality = get_modality("ecg", ann="pvc")
    modality.load(ECG_SLICE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = AGAD(channels=(8, 16, 32), latent_dim=16, epochs=15, batch_size=32, lr=5e-3, early_stopping=False,
                     verbose=False, random_state=0, device="cpu").fit(modality.prepare(load_reference(registry)[0]))
    finally:
        torch.set_num_threads(threads)
    registry.publish(save_model_dir(root / "v1", model, modality))
    return registry


def test_a_flood_of_forged_labels_cannot_switch_detection_off(guarded_registry, make_topics, ecg_windows, tmp_path,
                                                                caplog, monkeypatch):
    """The attack of issue 19: every PVC of the record sent as a false alarm, plus normal beats
    scaled x30 as anomalies, all by `mallory`. The gate used to promote the candidate (FPR at
    threshold 0.350 -> 0.000) and the record's PVC recall fell from 1.000 to 0.021. Now the
    gate refuses it, and says why."""
    import shutil

    from agad_stream import ModelRegistry
    registry = ModelRegistry(shutil.copytree(guarded_registry.root, tmp_path / "registry"))
    topics = make_topics()
    labels = f"{topics.input}-labels"
    create_topics(topics.bootstrap, [labels, f"{labels}-dead"])
    pvc, normal = ecg_windows.X[ecg_windows.y == 1], ecg_windows.X[ecg_windows.y == 0][100:115]
    forged = [Message(f"pvc-{n}", b"119", encode_confirmation(f"pvc-{n}", 0, w, "mallory", "119", 1), [])
              for n, w in enumerate(pvc)]
    forged += [Message(f"loud-{n}", b"119", encode_confirmation(f"loud-{n}", 1, 30 * w, "mallory", "119", 1), [])
               for n, w in enumerate(normal)]
    send(topics.bootstrap, labels, forged)
    caplog.set_level("INFO", logger="agad_stream.retrain")
    code = cli_main(["retrain", "--model-registry", str(registry.root), "--bootstrap-servers", topics.bootstrap,
                     "--labels-topic", labels, "--once", "--min-new", "5", "--epochs", "5", "--init", "fine-tune",
                     "--nice", "0"])
    entry = registry.read_log()[-1]
    assert code == 4 and entry["event"] == "rejected" and registry.current_version() == 1, entry["reasons"]
    assert entry["contradicting"]["contradicting"] > len(forged) / 2
    assert any("contradicting the current model" in r and "more than" in r for r in entry["reasons"])
    assert "contradicting the current model" in caplog.text
    from console_support import Console, call  # the models view shows the conflicts of each retrain
    monkeypatch.setenv("AGAD_CONSOLE_TOKEN", "t" * 32)
    with Console("--bootstrap-servers", topics.bootstrap, "--scores-topic", topics.output, "--review-topic",
                 topics.dlq, "--labels-topic", labels, "--model-registry", str(registry.root)) as console:
        versions = call(console.url, "/api/models", bearer="t" * 32).body["versions"]
    shown = {v["version"]: v["label_conflicts"] for v in versions}
    assert shown[entry["version"]]["contradicting"] == entry["contradicting"]["contradicting"] and shown[1] is None


def test_unsigned_and_forged_signatures_are_dead_lettered_when_signing_is_required(guarded_registry, make_topics,
                                                                                    ecg_windows, tmp_path):
    import shutil

    from agad_stream import ModelRegistry
    registry = ModelRegistry(shutil.copytree(guarded_registry.root, tmp_path / "registry"))
    key_file = tmp_path / "labels.key"
    key_file.write_text("k" * 32)
    topics = make_topics()
    labels = f"{topics.input}-labels"
    create_topics(topics.bootstrap, [labels, f"{labels}-dead"])
    beats = ecg_windows.X[:6]
    signed = [encode_confirmation(f"ok-{n}", 1, w, "alice", "119", 1, signing_key=b"k" * 32) for n, w in enumerate(beats[:3])]
    unsigned = encode_confirmation("unsigned", 1, beats[3], "mallory", "119", 1)
    other_key = encode_confirmation("other-key", 1, beats[4], "mallory", "119", 1, signing_key=b"m" * 32)
    altered = json.loads(signed[0])
    altered.update(id="altered", label=0)
    values = [*signed, unsigned, other_key, json.dumps(altered).encode()]
    send(topics.bootstrap, labels, [Message(f"m{n}", b"119", v, []) for n, v in enumerate(values)])
    code = cli_main(["retrain", "--model-registry", str(registry.root), "--bootstrap-servers", topics.bootstrap,
                     "--labels-topic", labels, "--once", "--min-new", "100", "--require-signed",
                     "--signing-key", str(key_file)])
    assert code == 3  # nothing to do: three good labels are fewer than --min-new
    store = LabelStore(registry.root / "labels.sqlite")
    assert store.counts()["confirmations"] == 3 and store.history("ok-0")[0]["labelled_by"] == "alice"
    store.close()
    dead = read_topic(topics.bootstrap, f"{labels}-dead", lambda records: len(records) >= 3)
    assert [r.headers["error"].split(b":")[0] for r in dead] == [b"unsigned", b"bad_signature", b"bad_signature"]


def test_a_second_retrain_job_on_one_registry_is_refused(guarded_registry, make_topics, tmp_path, scorer_processes,
                                                         capsys):
    """Two jobs on one registry would train on the same labels and race to publish: the
    second is refused, naming the first; once the first is gone the lock is free again."""
    import shutil

    from agad_stream import ModelRegistry
    registry = ModelRegistry(shutil.copytree(guarded_registry.root, tmp_path / "registry"))
    topics = make_topics()
    labels = f"{topics.input}-labels"
    create_topics(topics.bootstrap, [labels, f"{labels}-dead"])
    args = ["--model-registry", str(registry.root), "--bootstrap-servers", topics.bootstrap, "--labels-topic", labels]
    first = scorer_processes([*args, "--every", "1h"], command="retrain")
    first.wait_for("event=not_enough_labels", timeout_s=300)  # a job starting on a loaded machine
    assert cli_main(["retrain", *args, "--once"]) == 2
    assert f"another retrain job (pid {first.process.pid}" in capsys.readouterr().err
    first.kill()
    assert cli_main(["retrain", *args, "--once"]) == 3  # nothing to do, but it ran


# --------------------------------------------------------------------------- hostile registries
def test_a_huge_modality_json_is_refused_unread_and_the_served_version_stays(model_dirs, tmp_path):
    import shutil

    from agad_stream import ModelRegistry
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(model_dirs[0])
    source = ModelSource(registry=registry.root, device="cpu")
    assert source.load().version == 1
    huge = shutil.copytree(model_dirs[1], tmp_path / "huge")
    settings = json.loads((huge / "modality.json").read_text())
    (huge / "modality.json").write_text(json.dumps({**settings, "padding": " " * (200 << 20)}))
    registry.publish(huge)
    assert not source.refresh() and source.current.version == 1
    code = cli_main(["score", "--model", str(registry.path(2)), "--in-topic", "i", "--out-topic", "o",
                     "--dlq-topic", "d", "--group", "g", "--device", "cpu"])
    assert code == 2


def test_a_version_deleted_while_served_keeps_serving_and_a_restart_names_it(model_dirs, tmp_path, ecg_windows,
                                                                              capsys):
    import shutil

    from agad_stream import ModelRegistry
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(model_dirs[0])
    source = ModelSource(registry=registry.root, device="cpu")
    source.load()
    shutil.rmtree(registry.path(1))  # by hand: `models prune` refuses the current version
    assert not source.refresh() and source.current.version == 1
    assert source.current.score(ecg_windows.X[:2])[0].shape == (2,)  # from memory
    code = cli_main(["score", "--model-registry", str(registry.root), "--in-topic", "i", "--out-topic", "o",
                     "--dlq-topic", "d", "--group", "g", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "model version 1 not found in registry" in err[0], err
