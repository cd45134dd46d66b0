"""The message contract as pure functions: no broker needed."""

import hashlib
import json

import numpy as np
import pytest

from pipelines.kafka import codec

SHAPE = (2, 6)


def window_values() -> np.ndarray:
    return np.arange(12, dtype=np.float32).reshape(SHAPE) / 10


def decode(value, headers=None, key=b"stream-1", max_bytes=codec.DEFAULT_MAX_MESSAGE_BYTES):
    return codec.decode_window(value, key, headers or [], SHAPE, max_bytes)


def reason_of(value, headers=None, **kwargs) -> str:
    with pytest.raises(codec.InvalidMessage) as caught:
        decode(value, headers, **kwargs)
    return caught.value.reason


def test_json_round_trip_nested_and_flat():
    values = window_values()
    nested = decode(codec.encode_json_window("a", values, stream="s", ts=1.5))
    assert (nested.id, nested.stream, nested.ts, nested.label) == ("a", "s", 1.5, None)
    np.testing.assert_array_equal(nested.raw, values)
    flat = decode(json.dumps({"id": 7, "values": values.ravel().tolist()}).encode())
    assert flat.id == "7" and flat.stream == "stream-1"  # stream falls back to the message key
    np.testing.assert_array_equal(flat.raw, values)


def test_binary_round_trip_with_label():
    values = window_values()
    value, headers = codec.encode_binary_window("b", values, ts="2026-01-01T00:00:00Z")
    window = decode(value, headers + codec.label_header(1))
    assert (window.id, window.stream, window.ts, window.label) == ("b", "stream-1", "2026-01-01T00:00:00Z", 1)
    np.testing.assert_array_equal(window.raw, values)
    assert window.raw.dtype == np.float32


@pytest.mark.parametrize("value, headers, reason", [
    (b"", None, codec.UNDECODABLE),
    (b"{not json", None, codec.UNDECODABLE),
    (b"\xff\xfe", None, codec.UNDECODABLE),
    (b"[1, 2, 3]", None, codec.UNDECODABLE),
    (b'{"values": [1, 2]}', None, codec.UNDECODABLE),
    (b'{"id": "x", "values": "abc"}', None, codec.UNDECODABLE),
    (b'{"id": "x", "values": [[1, 2], [3]]}', None, codec.UNDECODABLE),
    (b'{"id": "x", "values": ["1", "2"]}', None, codec.UNDECODABLE),
    (b'{"id": "x", "values": [1, 2, 3]}', None, codec.WRONG_SHAPE),
    (json.dumps({"id": "x", "values": [[0.0] * 6] * 3}).encode(), None, codec.WRONG_SHAPE),
    (json.dumps({"id": "x", "values": [float("nan")] + [0.0] * 11}).encode(), None, codec.NON_FINITE),
    (b'{"id": "x", "values": [Infinity, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', None, codec.NON_FINITE),
    (b"x" * 12, [("content-type", b"text/csv")], codec.UNKNOWN_CONTENT_TYPE),
    (b"\x00" * 48, [("content-type", codec.BINARY_CONTENT_TYPE.encode()), ("id", b"x")], codec.UNDECODABLE),
    (b"\x00" * 40, [("content-type", codec.BINARY_CONTENT_TYPE.encode()), ("id", b"x"), ("shape", b"2,6")],
     codec.WRONG_SHAPE),
    (b"\x00" * 48, [("content-type", codec.BINARY_CONTENT_TYPE.encode()), ("id", b"x"), ("shape", b"4,3")],
     codec.WRONG_SHAPE),
    (b"\x00" * 48, [("content-type", codec.BINARY_CONTENT_TYPE.encode()), ("shape", b"2,6")], codec.UNDECODABLE),
    (b"\x00" * 48, [("content-type", codec.BINARY_CONTENT_TYPE.encode()), ("id", b"x"), ("shape", b"two,six")],
     codec.UNDECODABLE),
    (np.full(12, np.nan, "<f4").tobytes(),
     [("content-type", codec.BINARY_CONTENT_TYPE.encode()), ("id", b"x"), ("shape", b"2,6")], codec.NON_FINITE),
    (b'{"id": "x", "values": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', [("label", b"yes")], codec.UNDECODABLE),
    (b'{"id": "x", "values": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', [("content-type", b"")],
     codec.UNKNOWN_CONTENT_TYPE),
    (b'{"id": null, "values": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', None, codec.UNDECODABLE),
    (b'{"id": "", "values": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', None, codec.UNDECODABLE),
    (b'{"id": true, "values": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', None, codec.UNDECODABLE),
    (b'{"id": 1.5, "values": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', None, codec.UNDECODABLE),
    (b'{"id": ["x"], "values": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', None, codec.UNDECODABLE),
    (b'{"id": "x", "stream": {"a": 1}, "values": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', None, codec.UNDECODABLE),
    (b'{"id": "x", "values": ' + b"[" * 1000 + b"]" * 1000 + b"}", None, codec.UNDECODABLE),
    (b'{"id": "x", "values": ' + b"[" * 100_000, None, codec.UNDECODABLE),
])
def test_bad_messages_name_their_reason(value, headers, reason):
    assert reason_of(value, headers) == reason


def test_deep_nesting_is_refused_before_the_json_decoder_recurses():
    """~1,000 levels raised RecursionError in json.loads and crashed the scorer (issue 10, defect 1)."""
    deep = b'{"id": "x", "values": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(codec.InvalidMessage, match="nested 1001 levels deep"):
        decode(deep)
    assert codec.json_depth(b'{"a": "[[[\\"[[", "v": [[1]]}') == 3  # brackets inside strings do not count
    assert codec.json_depth(b"[]" * 100) == 1


def test_any_unexpected_error_becomes_an_undecodable_dead_letter(monkeypatch):
    def broken(values):
        raise TypeError("a case nobody foresaw")

    monkeypatch.setattr(codec, "parse_values", broken)
    with pytest.raises(codec.InvalidMessage, match="unexpected TypeError: a case nobody foresaw") as caught:
        decode(codec.encode_json_window("a", window_values()))
    assert caught.value.reason == codec.UNDECODABLE


def test_integer_ids_are_kept_as_text():
    assert decode(json.dumps({"id": 0, "values": window_values().tolist()}).encode()).id == "0"


def test_oversize_is_checked_before_decoding():
    assert reason_of(b"{" * 100, max_bytes=50) == codec.OVERSIZE


def test_shape_header_forms():
    assert codec.parse_shape(b"1,288") == codec.parse_shape(b"[1, 288]") == codec.parse_shape(b"1x288") == (1, 288)


def test_content_type_parameters_and_case_are_ignored():
    value = codec.encode_json_window("a", window_values())
    assert decode(value, [("Content-Type", b"Application/JSON; charset=utf-8")]).id == "a"


def test_score_message_fields():
    window = codec.Window(id="a", stream="s", ts=None, raw=window_values(), label=0)
    message = json.loads(codec.encode_score(window, 3, 2.5, 2.0, [], 1_700_000_000.25, 12.3456))
    assert message == {
        "id": "a", "stream": "s", "ts": None, "model_version": 3, "score": 2.5, "threshold": 2.0, "threshold_mode": "global",
        "is_anomaly": True, "label": 0, "scored_at": "2023-11-14T22:13:20.250Z", "latency_ms": 12.346, "top_segments": [],
    }
    unlabelled = codec.Window(id="b", stream=None, ts=None, raw=window_values(), label=None)
    assert "label" not in json.loads(codec.encode_score(unlabelled, 3, 1.0, 2.0, [], 0.0, 0.0))
    assert json.loads(codec.encode_score(window, 3, 1.0, 0.5, [], 0.0, 0.0, threshold_mode="adaptive"))["threshold_mode"] == "adaptive"


def test_dead_letter_headers_keep_the_originals():
    error = codec.InvalidMessage(codec.WRONG_SHAPE, "values have shape (3,)")
    headers = dict(codec.dead_letter_headers([("label", b"1")], error, "in", 2, 41))
    assert headers == {"label": b"1", "error": b"wrong_shape: values have shape (3,)", "source-topic": b"in",
                       "source-partition": b"2", "source-offset": b"41"}


def test_error_header_is_bounded():
    error = codec.InvalidMessage(codec.UNDECODABLE, "label header must be 0 or 1, got " + "x" * 100_000)
    headers = dict(codec.dead_letter_headers([], error, "in", 0, 1))
    assert len(headers["error"]) == codec.MAX_ERROR_HEADER_BYTES


def test_a_dead_letter_that_fits_is_kept_whole():
    headers = codec.dead_letter_headers([("probe", b"p")], codec.InvalidMessage(codec.WRONG_SHAPE, "x"), "in", 0, 7)
    value = b"v" * 1000
    assert codec.fit_dead_letter(b"key", value, headers, limit=codec.record_size_bound(b"key", value, headers)) \
        == (b"key", value, headers)


def test_a_dead_letter_too_large_for_its_topic_becomes_a_reference():
    original = [("probe", b"p" * 50), ("error", b"a hostile header of the same name")]
    headers = codec.dead_letter_headers(original, codec.InvalidMessage(codec.WRONG_SHAPE, "x"), "in", 3, 7)
    value = b"v" * 5000
    key, fitted_value, fitted = codec.fit_dead_letter(b"key", value, headers, limit=1000)
    assert key == b"key" and fitted_value == b""
    assert codec.record_size_bound(b"key", fitted_value, fitted) <= 1000
    assert dict(fitted) == {
        "error": b"wrong_shape: x", "source-topic": b"in", "source-partition": b"3", "source-offset": b"7",
        "original-size": b"5000", "original-sha256": hashlib.sha256(value).hexdigest().encode(),
        "dlq-note": b"value and original headers omitted: the record exceeds max.message.bytes 1000",
    }


def test_top_segments_find_the_largest_residuals_1d():
    residuals = np.zeros((2, 2, 80))
    residuals[0, 1, 30:40] = 3.0
    residuals[0, 0, 0:10] = 1.0
    residuals[1, 0, 75:80] = -2.0
    segments = codec.top_segments(residuals, k=2, n_segments=8)
    assert segments[0][0] == {"channel": 1, "start": 30, "end": 40, "energy": 90.0, "share": 0.9}
    assert segments[0][1]["channel"] == 0 and segments[0][1]["start"] == 0
    assert segments[1][0] == {"channel": 0, "start": 70, "end": 80, "energy": 20.0, "share": 1.0}


def test_top_segments_2d_tiles_and_short_windows():
    residuals = np.zeros((1, 1, 8, 8))
    residuals[0, 0, 6, 1] = 2.0
    best = codec.top_segments(residuals, k=1, n_segments=4)[0][0]
    assert best["start"] == [6, 0] and best["end"] == [8, 2] and best["energy"] == 4.0
    short = codec.top_segments(np.ones((1, 1, 3)), k=5, n_segments=8)[0]
    assert len(short) == 3 and {s["end"] - s["start"] for s in short} == {1}


def test_a_reference_drops_a_key_too_long_to_keep():
    key = b"\xff" * 180_000
    error = codec.InvalidMessage(codec.OVERSIZE_KEY, "key is 180000 bytes")
    kept_key, value, headers = codec.dead_letter(key, b"v" * 900_000, [], error, "in", 0, 5, limit=1_000_000)
    assert kept_key is None and value == b""
    assert dict(headers)["original-key-size"] == b"180000"
    assert dict(headers)["original-key-sha256"] == hashlib.sha256(key).hexdigest().encode()
    assert codec.record_size_bound(kept_key, value, headers) < 2_000


@pytest.mark.parametrize("key", [b"\xff" * 180_000, b"k" * 600_000, b"s" * 100_000, b"s" * (codec.MAX_ID_BYTES + 1)])
def test_a_key_over_the_bound_is_an_oversize_key(key):
    """Issue 19: 180 kB keys stopped a partition; 2,000 keys of 100 kB made a 200 MB threshold
    state. Refused at decoding, such a key reaches neither a score message nor the state."""
    value = codec.encode_json_window("w1", np.zeros(4))
    with pytest.raises(codec.InvalidMessage) as raised:
        codec.decode_window(value, key, None, (1, 4))
    assert raised.value.reason == codec.OVERSIZE_KEY and f"{len(key)} bytes" in str(raised.value)


def test_stream_and_id_fields_over_the_bound_are_refused():
    long_stream = codec.encode_json_window("w1", np.zeros(4), stream="s" * 300)
    with pytest.raises(codec.InvalidMessage, match="'stream' is 300 bytes") as raised:
        codec.decode_window(long_stream, b"short", None, (1, 4))
    assert raised.value.reason == codec.OVERSIZE_KEY
    with pytest.raises(codec.InvalidMessage, match="'id' is 1000 bytes"):
        codec.decode_window(codec.encode_json_window("i" * 1000, np.zeros(4)), None, None, (1, 4))
    without_stream = json.dumps({"id": "w", "values": [0, 0, 0, 0]}).encode()
    at_bound = codec.decode_window(without_stream, b"k" * codec.MAX_ID_BYTES, None, (1, 4))
    assert at_bound.stream == "k" * codec.MAX_ID_BYTES


@pytest.mark.parametrize("score", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_score_is_a_strict_json_anomaly(score):
    window = codec.Window(id="w", stream="s", ts=None, raw=np.zeros((1, 4), np.float32), label=None)
    segments = [{"channel": 0, "start": 0, "end": 2, "energy": float("inf"), "share": float("nan")}]
    value = codec.encode_score(window, 1, score, 2.0, segments, 0.0, 1.0)

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    message = json.loads(value, parse_constant=refuse)
    assert message["score"] is None and message["is_anomaly"] is True
    assert message["reason"] == codec.NON_FINITE_SCORE and message["top_segments"] == []


def test_the_recording_time_is_copied_into_the_score():
    window = codec.decode_window(codec.encode_json_window("w", np.zeros(4), ts="2026-12-02T03:00:00.125+01:00"),
                                 None, None, (1, 4))
    assert json.loads(codec.encode_score(window, 1, 0.5, 1.0, [], 0.0, 1.0))["ts"] == "2026-12-02T03:00:00.125+01:00"
    value, headers = codec.encode_binary_window("b", np.zeros((1, 4)), ts=1764644400.5)
    assert codec.decode_window(value, None, headers, (1, 4)).ts == "1764644400.5"


@pytest.mark.parametrize("ts, words", [(True, "'ts' must be"), ([1, 2], "'ts' must be"), ({"a": 1}, "'ts' must be"),
                                       ("t" * 300, "'ts' is 300 bytes")])
def test_a_ts_that_cannot_be_copied_into_a_score_is_refused(ts, words):
    value = json.dumps({"id": "w", "ts": ts, "values": [0, 0, 0, 0]}).encode()
    with pytest.raises(codec.InvalidMessage, match=words) as raised:
        codec.decode_window(value, None, None, (1, 4))
    assert raised.value.reason == codec.UNDECODABLE
    nan = b'{"id": "w", "ts": NaN, "values": [0, 0, 0, 0]}'
    with pytest.raises(codec.InvalidMessage, match="finite number"):
        codec.decode_window(nan, None, None, (1, 4))
