"""The confirmation decoder and the durable label store (no broker needed)."""

import json
import sqlite3

import numpy as np
import pytest

from pipelines.learning import signing
from pipelines.learning.labels import SignaturePolicy, decode_confirmation, encode_confirmation
from pipelines.learning.store import LabelStore, gate_split, held_out_streams
from pipelines.kafka import codec

SHAPE = (1, 8)


def confirmation(window_id="w1", label=1, value=0.5, **extra):
    message = json.loads(encode_confirmation(window_id, label, np.full(SHAPE, value), "alice", stream="s1"))
    message.update(extra)
    return decode_confirmation(json.dumps(message).encode(), b"s1", SHAPE)


def test_a_good_confirmation_decodes_with_its_fields():
    c = decode_confirmation(encode_confirmation("w1", 0, np.arange(8.0), "bob", model_version=3), b"key", SHAPE)
    assert (c.id, c.label, c.labelled_by, c.model_version, c.stream) == ("w1", 0, "bob", "3", "key")
    assert c.values.shape == SHAPE and c.values.dtype == np.float32 and c.at.endswith("Z")


@pytest.mark.parametrize("value, reason, words", [
    (b"", codec.UNDECODABLE, "empty"),
    (b"{nope", codec.UNDECODABLE, "not JSON"),
    (b"[1, 2]", codec.UNDECODABLE, "must be an object"),
    (b'{"id": ' + b"[" * 5000 + b"]" * 5000 + b"}", codec.UNDECODABLE, "nested"),
    (json.dumps({"id": 1.5, "label": 1, "values": [0] * 8, "labelled_by": "x"}).encode(), codec.UNDECODABLE, "'id'"),
    (json.dumps({"id": "a", "label": 1, "values": [0] * 8}).encode(), codec.UNDECODABLE, "labelled_by"),
    (json.dumps({"id": "a", "label": 2, "values": [0] * 8, "labelled_by": "x"}).encode(), codec.UNDECODABLE, "'label'"),
    (json.dumps({"id": "a", "label": True, "values": [0] * 8, "labelled_by": "x"}).encode(), codec.UNDECODABLE, "'label'"),
    (json.dumps({"id": "a", "label": 1, "values": [0] * 5, "labelled_by": "x"}).encode(), codec.WRONG_SHAPE, "expects"),
    (json.dumps({"id": "a", "label": 1, "values": ["x"] * 8, "labelled_by": "x"}).encode(), codec.UNDECODABLE, "numbers"),
    (b'{"id": "a", "label": 1, "values": [NaN, 0, 0, 0, 0, 0, 0, 0], "labelled_by": "x"}', codec.NON_FINITE, "NaN"),
    (json.dumps({"id": "a", "label": 1, "values": [0] * 8, "labelled_by": 7}).encode(), codec.UNDECODABLE, "labelled_by"),
    (json.dumps({"id": "a", "label": 1, "values": [0] * 8, "labelled_by": "x", "anomaly_type": "V" * 65}).encode(),
     codec.UNDECODABLE, "'anomaly_type' holds 65 characters; at most 64"),
    (json.dumps({"id": "a", "label": 1, "values": [0] * 8, "labelled_by": "x", "note": "n" * 2001}).encode(),
     codec.UNDECODABLE, "'note' holds 2001 characters; at most 2000"),
    (json.dumps({"id": "a", "label": 1, "values": [0] * 8, "labelled_by": "x", "note": 5}).encode(),
     codec.UNDECODABLE, "'note' must be a string or null, got int"),
])
def test_bad_confirmations_name_what_is_wrong(value, reason, words):
    with pytest.raises(codec.InvalidMessage, match=words) as error:
        decode_confirmation(value, None, SHAPE)
    assert error.value.reason == reason


def test_last_label_wins_history_is_kept_and_a_redelivery_is_stored_once(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    assert store.add([(confirmation("w1", 1, model_version=2), "t/0/0"), (confirmation("w2", 0), "t/0/1")]) == 2
    assert store.add([(confirmation("w1", 1, model_version=2), "t/0/0")]) == 0  # consumed again after a crash
    assert store.add([(confirmation("w1", 0, value=0.25), "t/0/2")]) == 1  # the reviewer changed their mind
    store.close()
    store = LabelStore(tmp_path / "labels.sqlite")  # reopened: everything is still there
    assert [h["label"] for h in store.history("w1")] == [1, 0]
    assert store.model_version("w1") == "2"  # the later confirmation did not name a version
    split = store.gate_split().split["w1"]
    windows = store.windows(split)
    assert windows.y[windows.ids.index("w1")] == 0
    assert np.allclose(windows.X[windows.ids.index("w1")], 0.25)
    counts = store.counts()
    assert counts["confirmations"] == 3 and counts["new"] == 2
    store.mark_trained(windows.upto_seq)
    assert store.counts()["new"] == 0


def test_one_stream_holds_out_its_newest_confirmations_by_time_not_by_arrival():
    ids = [f"w{n}" for n in range(10)]
    instants = [100.0 + n for n in range(10)]
    instants[0] = 500.0  # confirmed last, arrived first
    split = gate_split(ids, ["s1"] * 10, instants, 0.3)
    assert split.by == "time" and split.validation_streams == []
    assert sorted(i for i, s in split.split.items() if s == "validation") == ["w0", "w8", "w9"]
    assert split.validation_since == 108.0
    tied = gate_split(ids, ["s1"] * 10, [0.0] * 10, 0.3).split  # one instant: the last to arrive are newest
    assert [tied[i] for i in ids] == ["train"] * 7 + ["validation"] * 3
    assert list(gate_split(["a", "b"], ["s"] * 2, [0.0, 1.0], 0.1).split.values()) == ["train", "validation"]


def test_two_or_more_streams_hold_out_whole_streams_near_the_share_in_a_fixed_order():
    per_stream = {f"patient-{n}": 10 + n for n in range(10)}  # 145 windows
    held_out = held_out_streams(per_stream, 0.3)
    share = sum(per_stream[s] for s in held_out) / sum(per_stream.values())
    assert 0.2 < share < 0.4 and 1 <= len(held_out) < 10
    assert held_out_streams(dict(reversed(per_stream.items())), 0.3) == held_out  # order of arrival does not matter
    assert len(held_out_streams({"a": 1000, "b": 1}, 0.3)) == 1  # one stream always stays for training
    ids = [f"w{n}" for n in range(len(per_stream) * 3)]
    streams = [s for s in per_stream for _ in range(3)]
    split = gate_split(ids, streams, [0.0] * len(ids), 0.3)
    assert split.by == "stream" and split.validation_streams
    for window_id, stream in zip(ids, streams):  # never one stream on both sides
        assert split.split[window_id] == ("validation" if stream in split.validation_streams else "train")


def test_the_store_splits_by_stream_once_a_second_stream_confirms(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite", holdout=0.3)
    store.add([(confirmation(f"a{n}", 1, stream="ward-a", at=f"2026-01-01T00:00:{n:02d}Z"), f"t/0/{n}")
               for n in range(10)])
    assert store.gate_split().by == "time" and store.windows("validation").ids == ["a7", "a8", "a9"]
    store.add([(confirmation(f"b{n}", 0, stream="ward-b"), f"t/1/{n}") for n in range(5)])
    split = store.gate_split()
    assert split.by == "stream" and len(split.validation_streams) == 1
    held_out = {"ward-a": [f"a{n}" for n in range(10)], "ward-b": [f"b{n}" for n in range(5)]}[split.validation_streams[0]]
    assert store.windows("validation").ids == held_out
    assert split.describe()["validation_windows"] == len(held_out)
    counts = store.counts()
    assert counts["validation_anomalies"] + counts["validation_false_alarms"] == len(held_out)
    store.close()


def test_the_holdout_cannot_change(tmp_path):
    LabelStore(tmp_path / "labels.sqlite", holdout=0.3).close()
    with pytest.raises(ValueError, match="created with holdout 0.3, not 0.5"):
        LabelStore(tmp_path / "labels.sqlite", holdout=0.5)
    with pytest.raises(ValueError, match="split must be one of"):
        LabelStore(tmp_path / "labels.sqlite").windows("test")


def test_an_unforeseen_error_is_a_dead_letter_not_a_crash(monkeypatch):
    def broken(values, shape):
        raise RecursionError("deep")

    monkeypatch.setattr(codec, "fit_shape", broken)
    with pytest.raises(codec.InvalidMessage, match="unexpected RecursionError: deep") as error:
        decode_confirmation(encode_confirmation("w1", 1, np.zeros(SHAPE), "bob"), None, SHAPE)
    assert error.value.reason == codec.UNDECODABLE


def test_anomaly_type_and_note_are_signed_stored_and_an_old_store_gains_their_columns(tmp_path):
    path = tmp_path / "labels.sqlite"
    old = sqlite3.connect(path)  # a store made before anomaly_type and note existed
    old.executescript("""
        CREATE TABLE confirmations (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, stream TEXT,
            label INTEGER NOT NULL, labelled_by TEXT NOT NULL, at TEXT NOT NULL, model_version TEXT,
            source TEXT NOT NULL UNIQUE, received_at REAL NOT NULL);
        CREATE TABLE windows (id TEXT PRIMARY KEY, stream TEXT, label INTEGER NOT NULL, shape TEXT NOT NULL,
            data BLOB NOT NULL, model_version TEXT, split TEXT NOT NULL, seq INTEGER NOT NULL);
        INSERT INTO confirmations VALUES (1, 'w0', 's1', 1, 'bob', '2026-01-01T00:00:00Z', NULL, 't/0/0', 0);""")
    old.commit()
    old.close()
    key = b"k" * 16
    value = encode_confirmation("w1", 1, np.zeros(SHAPE), "alice", anomaly_type="V", note="wide QRS, 140 ms",
                                signing_key=key)
    policy = SignaturePolicy(key, required=True)
    c = decode_confirmation(value, None, SHAPE, signatures=policy)
    assert (c.anomaly_type, c.note) == ("V", "wide QRS, 140 ms")
    altered = {**json.loads(value), "anomaly_type": "S"}
    assert "does not match" in signing.verify(altered, key)
    dropped = {k: v for k, v in json.loads(value).items() if k != "note"}
    assert "does not match" in signing.verify(dropped, key)
    store = LabelStore(path)
    assert "split" not in store._columns("windows")  # the split by id, dropped: the gate draws its own
    assert store.add([(c, "t/0/1")]) == 1
    assert store.history("w0")[0]["anomaly_type"] is None  # the old row, migrated
    assert (store.history("w1")[0]["anomaly_type"], store.history("w1")[0]["note"]) == ("V", "wide QRS, 140 ms")
    row = store.db.execute("SELECT anomaly_type, note FROM windows WHERE id = 'w1'").fetchone()
    assert row == ("V", "wide QRS, 140 ms")
    store.close()
