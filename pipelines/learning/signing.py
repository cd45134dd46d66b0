"""Signed confirmations: an HMAC-SHA256 over a confirmation's canonical fields and its
reviewer, with a key shared by whoever publishes confirmations (the console, or
`encode_confirmation(..., signing_key=...)`) and `agad-stream retrain --require-signed`.

Kafka ACLs decide who may write to the labels topic; a signature says, in addition, that
a confirmation comes from a holder of the key and was not altered on the way (its label,
its values or its reviewer). It does not stop a key holder from lying, which is why the
gate also keeps a trusted set (see `gate.py`).

The signature is the field ``"signature": "hmac-sha256:<hex>"`` of the confirmation's JSON.
It covers id, stream, label, labelled_by, at, model_version and the SHA-256 of the values
as little-endian float32 (flat), so the values' JSON spelling and nesting do not matter.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

import numpy as np

#: environment variable holding the key itself (the --signing-key file wins over it)
KEY_ENV = "AGAD_LABELS_SIGNING_KEY"
PREFIX = "hmac-sha256:"
SIGNED_FIELDS = ("id", "stream", "label", "labelled_by", "at", "model_version")
#: shortest key accepted, in bytes
MIN_KEY_BYTES = 16


def load_key(path: str | Path | None = None) -> bytes | None:
    """The signing key from `path` (its bytes, surrounding whitespace stripped) or from $AGAD_LABELS_SIGNING_KEY;
    None when neither is set."""
    if path is not None:
        try:
            key = Path(path).read_bytes().strip()
        except OSError as error:
            raise ValueError(f"cannot read the signing key file {path}: {error.strerror}") from None
        source = f"signing key file {path}"
    elif os.environ.get(KEY_ENV):
        key, source = os.environ[KEY_ENV].strip().encode(), f"${KEY_ENV}"
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{source} holds {len(key)} bytes; a signing key needs at least {MIN_KEY_BYTES} "
                         "(e.g. `openssl rand -hex 32`)")
    return key


def canonical(message: dict) -> bytes:
    """The bytes a signature covers (see the module docstring)."""
    values = np.asarray(message["values"], dtype="<f4").ravel()
    fields = {name: message.get(name) for name in SIGNED_FIELDS}
    fields["model_version"] = None if fields["model_version"] is None else str(fields["model_version"])
    fields["id"] = str(fields["id"])
    fields["values_sha256"] = hashlib.sha256(values.tobytes()).hexdigest()
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def signature(message: dict, key: bytes) -> str:
    return PREFIX + hmac.new(key, canonical(message), hashlib.sha256).hexdigest()


def sign(message: dict, key: bytes) -> dict:
    """`message` with its signature field added."""
    return {**message, "signature": signature(message, key)}


def verify(message: dict, key: bytes) -> str | None:
    """None when `message` carries a valid signature under `key`; else why not."""
    given = message.get("signature")
    if given is None:
        return "unsigned"
    if not isinstance(given, str) or not given.startswith(PREFIX):
        return f"signature must be a string starting {PREFIX!r}"
    if not hmac.compare_digest(given.encode(), signature(message, key).encode()):
        return "signature does not match its fields (altered, or signed with another key)"
    return None
