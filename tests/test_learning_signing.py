"""Signed confirmations (pipelines/learning/signing.py): what a signature covers and how keys load."""

import json

import numpy as np
import pytest

from pipelines.learning import signing
from pipelines.learning.labels import BAD_SIGNATURE, UNSIGNED, SignaturePolicy, decode_confirmation, encode_confirmation
from pipelines.kafka import codec

KEY = b"0123456789abcdef0123456789abcdef"


def confirmation(**changes) -> dict:
    return json.loads(encode_confirmation("w1", 1, np.arange(6, dtype=np.float32).reshape(1, 6) / 7, "alice", "s1", 3,
                                          at="2026-12-02T03:00:00.000Z", signing_key=KEY)) | changes


def test_a_signature_survives_reformatting_of_the_values_but_not_a_changed_field():
    message = confirmation()
    assert signing.verify(message, KEY) is None
    assert signing.verify({**message, "values": np.ravel(message["values"]).tolist()}, KEY) is None  # flat, same floats
    for field, value in [("label", 0), ("labelled_by", "mallory"), ("id", "w2"), ("stream", "s2"),
                         ("model_version", 4), ("values", [[0.0] * 6])]:
        assert "does not match" in signing.verify({**message, field: value}, KEY), field
    assert "does not match" in signing.verify(message, b"another key of enough length")
    assert signing.verify({k: v for k, v in message.items() if k != "signature"}, KEY) == "unsigned"


@pytest.mark.parametrize("required, message, reason", [
    (True, {"signature": None}, UNSIGNED),
    (False, {"signature": "hmac-sha256:00"}, BAD_SIGNATURE),
    (True, {"signature": 5}, BAD_SIGNATURE),
])
def test_the_policy_dead_letters_with_a_reason(required, message, reason):
    value = {**confirmation(), **message}
    if value["signature"] is None:
        del value["signature"]
    with pytest.raises(codec.InvalidMessage) as raised:
        decode_confirmation(json.dumps(value).encode(), b"s1", (1, 6), signatures=SignaturePolicy(KEY, required))
    assert raised.value.reason == reason


def test_unsigned_is_accepted_unless_required_and_a_good_signature_always():
    unsigned = {k: v for k, v in confirmation().items() if k != "signature"}
    assert decode_confirmation(json.dumps(unsigned).encode(), None, (1, 6), signatures=SignaturePolicy(KEY)).label == 1
    assert decode_confirmation(json.dumps(confirmation()).encode(), None, (1, 6),
                               signatures=SignaturePolicy(KEY, required=True)).labelled_by == "alice"


def test_keys_load_from_a_file_or_the_environment_and_short_ones_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(signing.KEY_ENV, raising=False)
    assert signing.load_key() is None
    (tmp_path / "key").write_bytes(KEY + b"\n")
    assert signing.load_key(tmp_path / "key") == KEY
    monkeypatch.setenv(signing.KEY_ENV, "short")
    with pytest.raises(ValueError, match="at least 16"):
        signing.load_key()
    with pytest.raises(ValueError, match="cannot read the signing key file"):
        signing.load_key(tmp_path / "missing")
