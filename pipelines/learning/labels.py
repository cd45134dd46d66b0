"""The labels-topic contract: a reviewer's confirmation of one window (pure, no Kafka).

JSON value ``{"id", "stream", "label": 1 | 0, "values", "labelled_by", "at"}``; label 1 is
a confirmed anomaly, 0 a false alarm. ``values`` is the raw window (flat or nested per
channel, as in the review message). ``model_version`` may be copied from the review
message: the version that flagged the window (absent for a missed anomaly). ``anomaly_type``
(an AAMI class N/S/V/F/Q for ECG, free text otherwise; at most 64 characters) and ``note``
(at most 2000) are optional. ``signature`` is optional (see `signing.py`). A bad confirmation raises ``codec.InvalidMessage`` with the
dead-letter reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipelines.learning import signing
from pipelines.kafka import codec

REQUIRED = ("id", "label", "values", "labelled_by")
#: dead-letter reasons of the labels topic, besides the codec's
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
#: the optional free-text fields of a confirmation, and their longest value in characters
TEXT_LIMITS = {"anomaly_type": 64, "note": 2000}
#: the anomaly types offered for ECG beats: the AAMI EC57 classes
AAMI_CLASSES = {"N": "normal or bundle branch block", "S": "supraventricular ectopic", "V": "ventricular ectopic",
                "F": "fusion", "Q": "unknown or paced"}


@dataclass
class SignaturePolicy:
    """What the retrain job asks of signatures: with a key, a bad signature is always refused,
    and with `required` a missing one too."""

    key: bytes | None = None
    required: bool = False

    def check(self, message: dict) -> None:
        if self.key is None:
            return
        problem = signing.verify(message, self.key)
        if problem == "unsigned":
            if self.required:
                raise codec.InvalidMessage(UNSIGNED, "the confirmation carries no signature, and signed ones are required")
        elif problem is not None:
            raise codec.InvalidMessage(BAD_SIGNATURE, problem)


@dataclass
class Confirmation:
    id: str
    stream: str | None
    label: int
    values: np.ndarray
    labelled_by: str
    at: str
    model_version: str | None
    anomaly_type: str | None = None
    note: str | None = None


def check_text_field(name: str, value) -> str | None:
    """An optional text field of a confirmation (see TEXT_LIMITS): None, or a string within its limit."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise codec.InvalidMessage(codec.UNDECODABLE, f"{name!r} must be a string or null, got {type(value).__name__}")
    if len(value) > TEXT_LIMITS[name]:
        raise codec.InvalidMessage(codec.UNDECODABLE,
                                   f"{name!r} holds {len(value)} characters; at most {TEXT_LIMITS[name]} are accepted")
    return value or None


def decode_confirmation(value: bytes | None, key: bytes | None, raw_shape: tuple[int, ...],
                        max_bytes: int = codec.DEFAULT_MAX_MESSAGE_BYTES,
                        signatures: SignaturePolicy | None = None) -> Confirmation:
    """Decode and check one confirmation against the served model's raw window shape.

    Raises InvalidMessage and nothing else: an unforeseen error is wrapped as `undecodable`,
    so one message can never stop the retrain job.
    """
    try:
        return _decode_confirmation(value, key, raw_shape, max_bytes, signatures or SignaturePolicy())
    except codec.InvalidMessage:
        raise
    except Exception as error:
        raise codec.InvalidMessage(codec.UNDECODABLE, f"unexpected {type(error).__name__}: {error}") from None


def _decode_confirmation(value: bytes | None, key: bytes | None, raw_shape: tuple[int, ...], max_bytes: int,
                         signatures: SignaturePolicy) -> Confirmation:
    if not value:
        raise codec.InvalidMessage(codec.UNDECODABLE, "empty message value")
    if len(value) > max_bytes:
        raise codec.InvalidMessage(codec.OVERSIZE, f"{len(value)} bytes exceeds the limit of {max_bytes}")
    message = codec.load_json_object(value)
    missing = [name for name in REQUIRED if message.get(name) in (None, "")]
    if missing:
        raise codec.InvalidMessage(codec.UNDECODABLE, f"confirmation lacks {missing}")
    window_id = message["id"]
    if isinstance(window_id, bool) or not isinstance(window_id, (str, int)):
        raise codec.InvalidMessage(codec.UNDECODABLE, f"'id' must be a string or an integer, got {window_id!r}")
    label = message["label"]
    if isinstance(label, bool) or label not in (0, 1):
        raise codec.InvalidMessage(codec.UNDECODABLE, f"'label' must be 1 (anomaly) or 0 (false alarm), got {label!r}")
    for name in ("labelled_by", "at", "stream"):
        if message.get(name) is not None and not isinstance(message[name], str):
            raise codec.InvalidMessage(codec.UNDECODABLE, f"{name!r} must be a string, got {message[name]!r}")
    codec.check_id_length("key", key)
    for name in ("id", "stream", "labelled_by", "at"):
        if message.get(name) is not None:
            codec.check_id_length(repr(name), str(message[name]).encode("utf-8", "surrogatepass"))
    values = codec.fit_shape(codec.parse_values(message["values"]), raw_shape)
    if not np.isfinite(values).all():
        raise codec.InvalidMessage(codec.NON_FINITE, f"{int((~np.isfinite(values)).sum())} value(s) are NaN or inf")
    texts = {name: check_text_field(name, message.get(name)) for name in TEXT_LIMITS}
    signatures.check(message)
    version = message.get("model_version")
    return Confirmation(
        id=str(window_id), stream=message.get("stream") or (key.decode("utf-8", "replace") if key else None),
        label=int(label), values=values, labelled_by=message["labelled_by"],
        at=message.get("at") or codec.iso_utc(time.time()), model_version=None if version is None else str(version),
        **texts,
    )


def encode_confirmation(window_id: str, label: int, values: np.ndarray, labelled_by: str, stream: str | None = None,
                        model_version: int | str | None = None, at: str | None = None,
                        signing_key: bytes | None = None, anomaly_type: str | None = None,
                        note: str | None = None) -> bytes:
    """The JSON value a reviewer publishes, signed when `signing_key` is given: the helper for
    any producer of confirmations (the console, the demo, the tests)."""
    message = {"id": window_id, "stream": stream, "label": int(label), "values": np.asarray(values).tolist(),
               "labelled_by": labelled_by, "at": at or codec.iso_utc(time.time())}
    if model_version is not None:
        message["model_version"] = model_version
    for name, text in (("anomaly_type", anomaly_type), ("note", note)):
        if check_text_field(name, text) is not None:
            message[name] = text
    if signing_key is not None:
        message = signing.sign(message, signing_key)
    return codec.strict_json(message)
