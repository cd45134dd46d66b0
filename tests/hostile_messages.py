"""Hostile input messages, each with the dead-letter reason the scorer must give it.

One generator serves the property-based decoder tests (driven by hypothesis's `randoms()`)
and the live broker test (driven by a seeded `random.Random`), so both try the same kinds:
deep nesting, non-UTF-8 bytes, truncated JSON, wrong types, NaN/inf, wrong length or
channel count, bad or empty headers, unknown content types, oversize values.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

import numpy as np

from pipelines.kafka import codec


@dataclass
class Hostile:
    kind: str
    value: bytes
    headers: codec.Headers
    reason: str
    #: the record's key, for the kinds whose key is the attack (else the sender picks one)
    key: bytes | None = None


def _json(message: dict) -> bytes:
    return json.dumps(message).encode()


def _good_values(rng: random.Random, shape: tuple[int, ...]) -> list:
    return np.asarray([rng.uniform(-2, 2) for _ in range(math.prod(shape))]).reshape(shape).tolist()


def _binary_headers(rng: random.Random, shape: tuple[int, ...], drop: str = "") -> codec.Headers:
    headers = [("content-type", codec.BINARY_CONTENT_TYPE.encode()), ("shape", ",".join(map(str, shape)).encode()),
               ("id", f"bin-{rng.randrange(10**6)}".encode())]
    return [h for h in headers if h[0] != drop]


def _not_a_content_type(rng: random.Random) -> bytes:
    text = rng.choice(["", " ", "text/csv", "application/octet-stream", "application/jsonx", "\x00", "json"])
    return text.encode() if rng.random() < 0.8 else bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20)))


def _wrong_id(rng: random.Random):
    return rng.choice([None, True, False, 1.5, "", [], ["x"], {"a": 1}, float("inf")])


def _wrong_values(rng: random.Random, shape: tuple[int, ...]):
    ragged = [[0.0] * shape[-1], [0.0] * (shape[-1] + 1)]
    return rng.choice(["abc", 3, None, {"a": [1]}, [["1", "2"]], [[1, None]], ragged, [[True, False]], [[[1], 2]]])


def hostile_message(rng: random.Random, shape: tuple[int, ...], max_bytes: int, kind: str | None = None) -> Hostile:
    """One bad message for a model whose raw windows have `shape`, with its dead-letter reason;
    of a random kind, or of `kind` (an "oversize" value is about `max_bytes` long)."""
    n = math.prod(shape)
    good = {"id": f"x-{rng.randrange(10**6)}", "values": _good_values(rng, shape)}
    kind = kind or rng.choice(KINDS)
    if kind == "deep_nesting":
        depth = rng.randrange(codec.MAX_JSON_DEPTH + 1, 5000)
        return Hostile(kind, b'{"id": "deep", "values": ' + b"[" * depth + b"]" * depth + b"}", [], codec.UNDECODABLE)
    if kind == "unclosed_nesting":
        # under max_bytes, or the size check (rightly) answers first with "oversize"
        return Hostile(kind, b"[" * rng.randrange(20, min(200_000, max_bytes)), [], codec.UNDECODABLE)
    if kind == "not_utf8":
        junk = bytes(rng.randrange(128, 256) for _ in range(rng.randrange(1, 2000)))
        return Hostile(kind, b"\xc3\x28" + junk, [], codec.UNDECODABLE)
    if kind == "truncated_json":
        whole = _json(good)
        return Hostile(kind, whole[: rng.randrange(1, len(whole))], [], codec.UNDECODABLE)
    if kind == "not_an_object":
        return Hostile(kind, rng.choice([b"[1, 2]", b"42", b'"text"', b"null", b"true"]), [], codec.UNDECODABLE)
    if kind == "wrong_id":
        return Hostile(kind, _json({**good, "id": _wrong_id(rng)}), [], codec.UNDECODABLE)
    if kind == "missing_field":
        missing = rng.choice(["id", "values"])
        return Hostile(kind, _json({k: v for k, v in good.items() if k != missing}), [], codec.UNDECODABLE)
    if kind == "wrong_types":
        return Hostile(kind, _json({**good, "values": _wrong_values(rng, shape)}), [], codec.UNDECODABLE)
    if kind == "non_finite":
        flat = np.ravel(good["values"]).tolist()
        flat[rng.randrange(n)] = rng.choice([float("nan"), float("inf"), float("-inf")])
        return Hostile(kind, _json({**good, "values": flat}), [], codec.NON_FINITE)
    if kind == "wrong_length":
        length = rng.choice([0, 1, n - 1, n + 1, 3 * n])
        return Hostile(kind, _json({**good, "values": [0.5] * length}), [], codec.WRONG_SHAPE)
    if kind == "wrong_channels":
        channels = rng.choice([c for c in (1, 2, 3, 5) if c != shape[0]])
        return Hostile(kind, _json({**good, "values": [[0.5] * shape[-1]] * channels}), [], codec.WRONG_SHAPE)
    if kind == "unknown_content_type":
        return Hostile(kind, _json(good), [("content-type", _not_a_content_type(rng))], codec.UNKNOWN_CONTENT_TYPE)
    if kind == "bad_label":
        label = rng.choice([b"", b"2", b"yes", b"-1", b"\xff", b"0" * 10_000])
        return Hostile(kind, _json(good), [("label", label)], codec.UNDECODABLE)
    if kind == "binary_missing_header":
        values = np.zeros(shape, "<f4").tobytes()
        return Hostile(kind, values, _binary_headers(rng, shape, drop=rng.choice(["id", "shape"])), codec.UNDECODABLE)
    if kind == "binary_bad_shape_header":
        headers = [h if h[0] != "shape" else ("shape", rng.choice([b"", b"a,b", b"0,5", b"-1,3", b"\xff"]))
                   for h in _binary_headers(rng, shape)]
        return Hostile(kind, np.zeros(shape, "<f4").tobytes(), headers, codec.UNDECODABLE)
    if kind == "binary_wrong_length":
        value = np.zeros(n, "<f4").tobytes()[: -rng.randrange(1, 4 * n)]
        return Hostile(kind, value, _binary_headers(rng, shape), codec.WRONG_SHAPE)
    if kind == "binary_wrong_shape":
        other = (shape[0] + 1, *shape[1:])
        return Hostile(kind, np.zeros(other, "<f4").tobytes(), _binary_headers(rng, other), codec.WRONG_SHAPE)
    if kind == "binary_non_finite":
        values = np.zeros(shape, "<f4")
        values.flat[rng.randrange(n)] = rng.choice([np.nan, np.inf])
        return Hostile(kind, values.tobytes(), _binary_headers(rng, shape), codec.NON_FINITE)
    if kind == "empty":
        return Hostile(kind, b"", rng.choice([[], [("content-type", codec.BINARY_CONTENT_TYPE.encode())]]),
                       codec.UNDECODABLE)
    if kind == "oversize_key":  # no "stream" field: the key would be the score's stream
        size = int(math.exp(rng.uniform(math.log(codec.MAX_ID_BYTES + 1), math.log(600_000))))
        key = bytes([0xFF]) * size if rng.random() < 0.5 else b"k" * size
        return Hostile(kind, _json(good), [], codec.OVERSIZE_KEY, key=key)
    assert kind == "oversize", kind
    return Hostile(kind, b"[" + b"0," * (max_bytes // 2) + b"0]", [], codec.OVERSIZE)


def huge_window(rng: random.Random, shape: tuple[int, ...], window_id: str) -> bytes:
    """A window of finite float32 values so large that its score overflows (NaN or infinite):
    it must be scored, as an anomaly, in strict JSON."""
    magnitude = rng.choice([1e18, 1e30, 3e38])
    values = np.where(np.arange(math.prod(shape)) % 2, magnitude, -magnitude).astype(np.float32).reshape(shape)
    return _json({"id": window_id, "values": values.tolist()})


KINDS = ("deep_nesting", "unclosed_nesting", "not_utf8", "truncated_json", "not_an_object", "wrong_id",
         "missing_field", "wrong_types", "non_finite", "wrong_length", "wrong_channels", "unknown_content_type",
         "bad_label", "binary_missing_header", "binary_bad_shape_header", "binary_wrong_length",
         "binary_wrong_shape", "binary_non_finite", "empty", "oversize")
