"""The message contract, as small pure functions (no broker needed to test them).

Input (one raw window per message, key = stream id):
  JSON    value {"id", "stream", "ts", "values"}; values flat or nested per channel;
          content-type header absent or "application/json".
  binary  value = little-endian float32 samples; headers content-type
          "application/x-float32-le", shape (e.g. "1,288") and id; ts header optional.
  Optional header label = "0" / "1" (the truth, when a replay knows it).
Output: JSON {"id", "stream", "ts" (the input's, as given), "model_version", "score", "threshold", "threshold_mode", "is_anomaly",
  "label" (if given), "reason" (if a signal-quality check failed, e.g. "signal_quality: flatline";
  the window is then anomalous whatever its score), "scored_at", "latency_ms", "top_segments"}.
  A window whose score is not finite is an anomaly with "reason": "non_finite_score" and
  "score": null. Every message is strict JSON (no NaN or Infinity).
Keys, stream ids and window ids are at most MAX_ID_BYTES bytes: they are repeated in every
  score message and key the per-stream state, so a longer one is a dead letter
  (`oversize_key`, or `undecodable` for an id).
Dead letters: the original key, value and headers plus an `error` header
  "<reason>: <detail>" and the source topic/partition/offset. A dead letter too large for
  the dead-letter topic keeps only a reference: no value and no original headers (and no
  key, if the key alone is over MAX_ID_BYTES), but `original-size` and `original-sha256`
  of the value (and `original-key-size`, `original-key-sha256`) next to the source headers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/x-float32-le"
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
#: deepest JSON nesting accepted: a window is at most [C, H, W] inside the message object (depth 4)
MAX_JSON_DEPTH = 16
#: the broker's default max.message.bytes, used when a topic's own limit cannot be read
BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: an `error` header longer than this is cut: the detail may quote a hostile header
MAX_ERROR_HEADER_BYTES = 2_000
#: longest key, stream id or window id accepted (UTF-8 bytes)
MAX_ID_BYTES = 256

Headers = list[tuple[str, bytes]]

# Dead-letter reasons: the first word of the `error` header.
OVERSIZE = "oversize"
UNKNOWN_CONTENT_TYPE = "unknown_content_type"
UNDECODABLE = "undecodable"
WRONG_SHAPE = "wrong_shape"
NON_FINITE = "non_finite"
SCORING_FAILED = "scoring_failed"
OVERSIZE_KEY = "oversize_key"
#: a score or review message the broker refused for good (too large for its topic, say)
UNPUBLISHABLE = "unpublishable"
DEAD_LETTER_REASONS = (OVERSIZE, UNKNOWN_CONTENT_TYPE, UNDECODABLE, WRONG_SHAPE, NON_FINITE, SCORING_FAILED,
                       OVERSIZE_KEY, UNPUBLISHABLE)
#: the `reason` of a score message whose score is NaN or infinite
NON_FINITE_SCORE = "non_finite_score"


class InvalidMessage(ValueError):
    """A message that cannot be scored; `reason` is one of DEAD_LETTER_REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Window:
    """One decoded input message, ready for the model's modality."""

    id: str
    stream: str | None
    ts: Any
    raw: np.ndarray
    label: int | None


def header(headers: Headers | None, name: str) -> bytes | None:
    """The last value of header `name` (case-insensitive), or None."""
    found = None
    for key, value in headers or ():
        if key.lower() == name:
            found = value
    return found


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def decode_window(
    value: bytes | None,
    key: bytes | None,
    headers: Headers | None,
    raw_shape: tuple[int, ...],
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Window:
    """Decode and validate one input message against the served model's raw window shape.

    Raises InvalidMessage naming the dead-letter reason, and nothing else: any other error
    (a case not foreseen here) is wrapped as `undecodable`, so one message can never stop
    the scorer.
    """
    try:
        return _decode_window(value, key, headers, raw_shape, max_bytes)
    except InvalidMessage:
        raise
    except Exception as error:
        raise InvalidMessage(UNDECODABLE, f"unexpected {type(error).__name__}: {error}") from None


def _decode_window(value, key, headers, raw_shape, max_bytes) -> Window:
    if value is None or len(value) == 0:
        raise InvalidMessage(UNDECODABLE, "empty message value")
    if len(value) > max_bytes:
        raise InvalidMessage(OVERSIZE, f"{len(value)} bytes exceeds the limit of {max_bytes}")
    content_type = _text(header(headers, "content-type"))
    content_type = JSON_CONTENT_TYPE if content_type is None else content_type.split(";")[0].strip().lower()
    label = parse_label(header(headers, "label"))
    check_id_length("key", key)
    stream = _text(key)
    if content_type == JSON_CONTENT_TYPE:
        window_id, stream, ts, values = _parse_json(value, stream)
    elif content_type == BINARY_CONTENT_TYPE:
        window_id, ts, values = _parse_binary(value, headers)
    else:
        raise InvalidMessage(
            UNKNOWN_CONTENT_TYPE, f"{content_type!r}; use {JSON_CONTENT_TYPE!r} or {BINARY_CONTENT_TYPE!r}"
        )
    check_id_length("'stream'", None if stream is None else stream.encode("utf-8", "surrogatepass"))
    check_id_length("'id'", window_id.encode("utf-8", "surrogatepass"), reason=UNDECODABLE)
    raw = fit_shape(values, raw_shape)
    if not np.isfinite(raw).all():
        raise InvalidMessage(NON_FINITE, f"{int((~np.isfinite(raw)).sum())} value(s) are NaN or inf")
    return Window(id=window_id, stream=stream, ts=ts, raw=raw, label=label)


def check_id_length(name: str, value: bytes | None, reason: str = OVERSIZE_KEY) -> None:
    """Refuse a key, stream id or window id over MAX_ID_BYTES: each is copied into every score
    message, so an unbounded one could make that message too large for any topic."""
    if value is not None and len(value) > MAX_ID_BYTES:
        raise InvalidMessage(reason, f"{name} is {len(value)} bytes; at most {MAX_ID_BYTES} are accepted")


def strict_json(message: Any) -> bytes:
    """`message` as strict JSON bytes: NaN and Infinity are refused, since strict parsers
    (JavaScript's JSON.parse among them) reject the whole message for one of them."""
    return json.dumps(message, allow_nan=False).encode()


def parse_label(value: bytes | None) -> int | None:
    if value is None:
        return None
    text = value.decode("ascii", errors="replace").strip()
    if text not in ("0", "1"):
        raise InvalidMessage(UNDECODABLE, f"label header must be 0 or 1, got {text!r}")
    return int(text)


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[list(b"[{")] = 1
_BRACKET_STEP[list(b"]}")] = -1


def json_depth(value: bytes) -> int:
    """Deepest nesting of brackets outside strings, found without parsing (C-speed regex and
    numpy), so a hostile message cannot exhaust the JSON decoder's recursion."""
    brackets = _JSON_STRING.sub(b"", value).translate(None, _NOT_A_BRACKET)
    if not brackets:
        return 0
    return int(np.cumsum(_BRACKET_STEP[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int64).max())


def load_json_object(value: bytes) -> dict:
    """A JSON object from untrusted bytes: nesting bounded before decoding (scanned only when
    there are enough brackets to go too deep); InvalidMessage otherwise."""
    opening = value.count(b"[") + value.count(b"{")
    if opening > MAX_JSON_DEPTH and (depth := json_depth(value)) > MAX_JSON_DEPTH:
        raise InvalidMessage(UNDECODABLE, f"JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH} are accepted")
    try:
        message = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidMessage(UNDECODABLE, f"not JSON ({error})") from None
    if not isinstance(message, dict):
        raise InvalidMessage(UNDECODABLE, f"JSON value must be an object, got {type(message).__name__}")
    return message


def _parse_json(value: bytes, stream: str | None) -> tuple[str, str | None, Any, np.ndarray]:
    message = load_json_object(value)
    missing = [k for k in ("id", "values") if k not in message]
    if missing:
        raise InvalidMessage(UNDECODABLE, f"JSON object lacks {missing}")
    window_id = message["id"]
    if isinstance(window_id, bool) or not isinstance(window_id, (str, int)) or window_id == "":
        raise InvalidMessage(UNDECODABLE, f"'id' must be a non-empty string or an integer, got {json.dumps(window_id)[:80]}")
    stream = message.get("stream", stream)
    if stream is not None and not isinstance(stream, str):
        raise InvalidMessage(UNDECODABLE, f"'stream' must be a string or null, got {type(stream).__name__}")
    return str(window_id), stream, check_ts(message.get("ts")), parse_values(message["values"])


def check_ts(ts: Any) -> Any:
    """The window's recording time as given (copied into its score): a string of at most
    MAX_ID_BYTES, a finite number (e.g. epoch seconds) or None."""
    if isinstance(ts, str):
        check_id_length("'ts'", ts.encode("utf-8", "surrogatepass"), reason=UNDECODABLE)
    elif ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts)):
        raise InvalidMessage(UNDECODABLE, f"'ts' must be a string, a finite number or null, got {json.dumps(ts)[:80]}")
    return ts


def parse_values(values: Any) -> np.ndarray:
    """A JSON 'values' field (flat or nested per channel) as float32; InvalidMessage if it is not numbers."""
    if not isinstance(values, list):
        raise InvalidMessage(UNDECODABLE, "'values' must be a list of numbers (flat or nested per channel)")
    try:
        array = np.asarray(values)
    except ValueError as error:
        raise InvalidMessage(UNDECODABLE, f"'values' is not a rectangular array ({error})") from None
    if array.dtype.kind not in "iuf":
        raise InvalidMessage(UNDECODABLE, f"'values' must hold only numbers, got {array.dtype} values")
    return array.astype(np.float32)


def _parse_binary(value: bytes, headers: Headers | None) -> tuple[str, Any, np.ndarray]:
    window_id = _text(header(headers, "id"))
    if not window_id:
        raise InvalidMessage(UNDECODABLE, "binary message lacks an 'id' header")
    shape = parse_shape(header(headers, "shape"))
    needed = 4 * math.prod(shape)
    if len(value) != needed:
        raise InvalidMessage(WRONG_SHAPE, f"value has {len(value)} bytes, shape {shape} of float32 needs {needed}")
    ts = check_ts(_text(header(headers, "ts")))
    return window_id, ts, np.frombuffer(value, dtype="<f4").reshape(shape).astype(np.float32)


def parse_shape(value: bytes | None) -> tuple[int, ...]:
    """'1,288', '1x288' or '[1, 288]' -> (1, 288)."""
    if value is None:
        raise InvalidMessage(UNDECODABLE, "binary message lacks a 'shape' header")
    text = value.decode("ascii", errors="replace").strip().strip("[]()").replace("x", ",")
    try:
        shape = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidMessage(UNDECODABLE, f"shape header {text!r} is not a list of integers") from None
    if not shape or min(shape) < 1:
        raise InvalidMessage(UNDECODABLE, f"shape header {text!r} must hold positive integers")
    return shape


def fit_shape(values: np.ndarray, raw_shape: tuple[int, ...]) -> np.ndarray:
    """Accept the exact window shape, or a flat list with the right number of samples."""
    if values.shape == tuple(raw_shape):
        return values
    if values.ndim == 1 and values.size == math.prod(raw_shape):
        return values.reshape(raw_shape)
    raise InvalidMessage(
        WRONG_SHAPE,
        f"values have shape {values.shape}; the model expects {tuple(raw_shape)} (or {math.prod(raw_shape)} flat)",
    )


def encode_json_window(window_id: str, values: np.ndarray, stream: str | None = None, ts: Any = None) -> bytes:
    """JSON input message (values nested per channel)."""
    return strict_json({"id": window_id, "stream": stream, "ts": ts, "values": np.asarray(values).tolist()})


def encode_binary_window(window_id: str, values: np.ndarray, ts: Any = None) -> tuple[bytes, Headers]:
    """Binary input message: little-endian float32 value plus content-type, shape and id headers."""
    values = np.asarray(values, dtype="<f4")
    headers = [
        ("content-type", BINARY_CONTENT_TYPE.encode()),
        ("shape", ",".join(map(str, values.shape)).encode()),
        ("id", window_id.encode()),
    ]
    if ts is not None:
        headers.append(("ts", str(ts).encode()))
    return values.tobytes(), headers


def label_header(label: int | None) -> Headers:
    return [] if label is None else [("label", str(int(label)).encode())]


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_score(
    window: Window,
    model_version: int | str,
    score: float,
    threshold: float,
    top_segments: list[dict],
    scored_at: float,
    latency_ms: float,
    quality: str | None = None,
    *,
    threshold_mode: str = "global",
) -> bytes:
    """The output message for one scored window; `quality` names the signal-quality check it failed.
    A NaN or infinite score (finite but huge inputs overflow float32) is published as null,
    flagged anomalous, with the reason `non_finite_score`."""
    finite = math.isfinite(score)
    if not finite or not all(math.isfinite(s["energy"]) and math.isfinite(s["share"]) for s in top_segments):
        top_segments = []  # residuals that overflowed explain nothing
    message = {
        "id": window.id,
        "stream": window.stream,
        "ts": window.ts,
        "model_version": model_version,
        "score": float(score) if finite else None,
        "threshold": float(threshold),
        "threshold_mode": threshold_mode,
        "is_anomaly": not finite or bool(score > threshold) or quality is not None,
        "scored_at": iso_utc(scored_at),
        "latency_ms": round(float(latency_ms), 3),
        "top_segments": top_segments,
    }
    if window.label is not None:
        message["label"] = window.label
    if quality is not None:
        message["reason"] = f"signal_quality: {quality}"
    if not finite:
        message["reason"] = NON_FINITE_SCORE
    return strict_json(message)


#: the headers a dead letter adds to the original ones
DEAD_LETTER_HEADERS = ("error", "source-topic", "source-partition", "source-offset")


def dead_letter_headers(headers: Headers | None, error: InvalidMessage, topic: str, partition: int, offset: int) -> Headers:
    """The original headers plus why the message was rejected and where it came from."""
    return [
        *(headers or []),
        ("error", str(error).encode("utf-8", errors="replace")[:MAX_ERROR_HEADER_BYTES]),
        ("source-topic", topic.encode()),
        ("source-partition", str(partition).encode()),
        ("source-offset", str(offset).encode()),
    ]


def record_size_bound(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """An upper bound of the bytes a record takes alone in a Kafka record batch (v2 format:
    61 bytes of batch header, at most 36 of record framing, at most 10 per header), the
    size the broker compares with a topic's max.message.bytes."""
    framing = 61 + 36 + sum(10 + len(name.encode()) + len(content or b"") for name, content in headers)
    return framing + len(key or b"") + len(value or b"")


DeadLetter = tuple[bytes | None, bytes, Headers]


def dead_letter(key: bytes | None, value: bytes | None, headers: Headers | None, error: InvalidMessage,
                topic: str, partition: int, offset: int, limit: int) -> DeadLetter:
    """(key, value, headers) of the dead letter of one consumed record, sized for a dead-letter
    topic whose max.message.bytes is `limit` (see `fit_dead_letter`). The scorer and the
    retrain job's label ingest both build theirs here."""
    return fit_dead_letter(key, value or b"", dead_letter_headers(headers, error, topic, partition, offset), limit)


def fit_dead_letter(key: bytes | None, value: bytes, headers: Headers, limit: int) -> DeadLetter:
    """(key, value, headers) of a dead letter that fits a topic whose max.message.bytes is `limit`.

    A dead letter that fits is returned unchanged. One that does not becomes a reference:
    an empty value, the `error` and `source-*` headers only, plus `original-size` and
    `original-sha256` of the value, so it can be found again in the source topic.
    """
    if record_size_bound(key, value, headers) <= limit:
        return key, value, headers
    return dead_letter_reference(key, value, headers, f"the record exceeds max.message.bytes {limit}")


def dead_letter_reference(key: bytes | None, value: bytes, headers: Headers, why: str) -> DeadLetter:
    """(key, value, headers) of a dead letter that cannot be kept whole: see `fit_dead_letter`.
    A key over MAX_ID_BYTES is replaced by its size and digest too, so the reference is small."""
    own = {name: content for name, content in headers if name in DEAD_LETTER_HEADERS}  # the last of each: ours
    reference = [
        *own.items(),
        ("original-size", str(len(value)).encode()),
        ("original-sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    if key is not None and len(key) > MAX_ID_BYTES:
        reference += [("original-key-size", str(len(key)).encode()),
                      ("original-key-sha256", hashlib.sha256(key).hexdigest().encode())]
        key = None
    note = f"value and original headers omitted: {why}".encode("utf-8", errors="replace")[:MAX_ERROR_HEADER_BYTES]
    return key, b"", [*reference, ("dlq-note", note)]


def top_segments(residuals: np.ndarray, k: int = 3, n_segments: int = 8) -> list[list[dict]]:
    """The k segments with the largest residual energy, per window: the explanation of a score.

    residuals: [N, C, L] (segments of about L / n_segments samples) or [N, C, H, W]
    (a grid of n_segments x n_segments tiles). Each segment: channel, start, end
    (exclusive; [row, col] pairs for 2D), energy (sum of squared residuals, input units)
    and share (its fraction of the window's residual energy).
    """
    residuals = np.asarray(residuals, dtype=np.float64)
    n, _, *spatial = residuals.shape
    bounds = [np.unique(np.linspace(0, size, min(n_segments, size) + 1).astype(int)) for size in spatial]
    energy = residuals**2
    for axis, edges in enumerate(bounds, start=2):
        energy = np.add.reduceat(energy, edges[:-1], axis=axis)
    flat = energy.reshape(n, -1)
    best = np.argsort(-flat, axis=1, kind="stable")[:, : min(k, flat.shape[1])]
    channel, *cells = np.unravel_index(best, energy.shape[1:])
    top_energy = np.take_along_axis(flat, best, axis=1)
    share = top_energy / np.maximum(flat.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    starts = _positions([edges[cell] for edges, cell in zip(bounds, cells)])
    ends = _positions([edges[cell + 1] for edges, cell in zip(bounds, cells)])
    return [
        [{"channel": c, "start": s, "end": e, "energy": en, "share": sh} for c, s, e, en, sh in zip(*row)]
        for row in zip(channel.tolist(), starts, ends, top_energy.tolist(), share.tolist())
    ]


def _positions(per_axis: list[np.ndarray]) -> list:
    """[N, k] segment positions: ints for 1D windows, [row, col] lists for 2D."""
    if len(per_axis) == 1:
        return per_axis[0].tolist()
    return np.stack(per_axis, axis=-1).tolist()
