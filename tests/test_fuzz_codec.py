"""Property-based tests of the message decoder: whatever arrives, it either yields a valid
window or raises InvalidMessage with a dead-letter reason; never another exception, never a hang."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_messages import KINDS, hostile_message
from pipelines.kafka import codec

SHAPE = (2, 6)
MAX_BYTES = 20_000
FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(300)


def decode_or_reason(value, headers, key=b"k"):
    """The decoded window, or the dead-letter reason; any other exception fails the test."""
    try:
        window = codec.decode_window(value, key, headers, SHAPE, MAX_BYTES)
    except codec.InvalidMessage as error:
        assert error.reason in codec.DEAD_LETTER_REASONS, error
        assert str(error).startswith(f"{error.reason}: ") and error.detail
        return error.reason
    assert window.raw.shape == SHAPE and window.raw.dtype == np.float32
    assert np.isfinite(window.raw).all()
    assert isinstance(window.id, str) and window.id
    assert window.stream is None or isinstance(window.stream, str)
    assert window.label in (None, 0, 1)
    return window


@FUZZ
@given(st.randoms(use_true_random=False))
def test_every_kind_of_hostile_message_gets_its_reason(rng):
    bad = hostile_message(rng, SHAPE, MAX_BYTES)
    assert decode_or_reason(bad.value, bad.headers) == bad.reason, bad.kind


def test_the_generator_covers_every_kind():
    import random

    rng = random.Random(0)
    assert {hostile_message(rng, SHAPE, MAX_BYTES).kind for _ in range(2000)} == set(KINDS)


header_names = st.sampled_from(["content-type", "Content-Type", "id", "shape", "label", "ts", "x"]) | st.text(max_size=8)
header_values = st.sampled_from([b"", b"application/json", codec.BINARY_CONTENT_TYPE.encode(), b"2,6", b"1", b"\xff"]) \
    | st.binary(max_size=40)
headers = st.lists(st.tuples(header_names, header_values), max_size=5)


@FUZZ
@given(st.binary(max_size=4 * MAX_BYTES // 3), headers, st.none() | st.binary(max_size=20))
def test_arbitrary_bytes_and_headers(value, message_headers, key):
    decode_or_reason(value, message_headers, key)


json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
json_trees = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                          max_leaves=40)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-10**30, max_value=10**30)


@FUZZ
@given(id_=json_trees, stream=json_trees, values=json_trees | st.lists(st.lists(numbers, min_size=6, max_size=6), min_size=2, max_size=2))
def test_arbitrary_json_fields(id_, stream, values):
    result = decode_or_reason(json.dumps({"id": id_, "stream": stream, "values": values}).encode(), [])
    if not isinstance(result, str):
        assert id_ == result.id or str(id_) == result.id


@FUZZ
@given(depth=st.integers(min_value=0, max_value=3000), opener=st.sampled_from([b"[", b"{"]))
def test_any_nesting_depth(depth, opener):
    closer = b"]" if opener == b"[" else b"}"
    value = b'{"id": "x", "values": ' + opener * depth + closer * depth + b"}"
    reason = decode_or_reason(value, [])
    if depth > codec.MAX_JSON_DEPTH - 1:
        assert reason == codec.UNDECODABLE


@FUZZ
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=12, max_size=12),
       st.sampled_from(["json", "binary"]), st.sampled_from([None, 0, 1]))
def test_every_valid_window_round_trips(samples, encoding, label):
    values = np.asarray(samples, dtype=np.float32).reshape(SHAPE)
    if encoding == "json":
        value, message_headers = codec.encode_json_window("w", values), []
    else:
        value, message_headers = codec.encode_binary_window("w", values)
    window = decode_or_reason(value, message_headers + codec.label_header(label))
    assert not isinstance(window, str), window
    assert window.id == "w" and window.label == label
    np.testing.assert_array_equal(window.raw, values)


@FUZZ
@given(st.integers(min_value=0, max_value=3 * math.prod(SHAPE)), st.binary(max_size=8))
def test_binary_lengths_and_shapes(n_floats, shape_header):
    value = np.zeros(n_floats, "<f4").tobytes()
    reason = decode_or_reason(value, [("content-type", codec.BINARY_CONTENT_TYPE.encode()), ("id", b"b"),
                                      ("shape", shape_header)])
    if n_floats != math.prod(SHAPE):
        assert isinstance(reason, str)
