"""Kafka security settings (TLS, SASL PLAIN / SCRAM) for every client of the pipeline.

One place, so that score, replay, monitor and retrain reach a secured cluster the same way:
a small config file (`--kafka-config FILE`, JSON or `key=value` properties) and environment
variables `AGAD_KAFKA_<KEY>` (which win over the file). Keys:

    security_protocol    PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL
    ssl_cafile           CA bundle (PEM) that signed the brokers' certificates
    ssl_certfile         client certificate (PEM), for mutual TLS
    ssl_keyfile          client private key (PEM)
    ssl_password         password of the private key (secret)
    ssl_check_hostname   true (default) or false
    sasl_mechanism       PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    sasl_username        SASL user
    sasl_password        SASL password (secret)

Dots may replace underscores (`security.protocol`, as in Kafka's own client files).
Secrets never reach logs, reports or error messages: they are held as `Secret`, a str
whose repr is redacted (kafka-python logs its whole configuration at DEBUG), and
`KafkaSecurity`'s repr masks them too. Once configured, they are also masked in every log
record of the process: at DEBUG, kafka-python logs a SASL PLAIN request byte for byte.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

ENV_PREFIX = "AGAD_KAFKA_"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SECRET_KEYS = ("ssl_password", "sasl_password")
REDACTED = "***"


class Secret(str):
    """A password: a plain str for the Kafka client, but `repr` (what `%s` of a dict and most
    error messages show) never reveals it."""

    def __repr__(self) -> str:
        return f"'{REDACTED}'"


@dataclass(frozen=True)
class KafkaSecurity:
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: Secret | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != f.default}
        for key in SECRET_KEYS:
            if key in shown:
                shown[key] = REDACTED
        return f"KafkaSecurity({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def client_kwargs(self) -> dict:
        """Keyword arguments for kafka-python's KafkaConsumer, KafkaProducer and KafkaAdminClient."""
        kwargs: dict = {"security_protocol": self.security_protocol}
        if "SSL" in self.security_protocol:
            kwargs.update(ssl_cafile=self.ssl_cafile, ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile,
                          ssl_password=self.ssl_password, ssl_check_hostname=self.ssl_check_hostname)
        if self.security_protocol.startswith("SASL"):
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        return kwargs


KEYS = tuple(f.name for f in fields(KafkaSecurity))


def read_file(path: str | Path) -> dict[str, str]:
    """Settings of a JSON object file, or of a properties file (`key=value`, `#` comments)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"cannot read the Kafka config file {path}: {error.strerror}") from None
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:  # the message names the position, never the content
            raise ValueError(f"Kafka config file {path} is not valid JSON: {error.msg} "
                             f"(line {error.lineno}, column {error.colno})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"Kafka config file {path} must hold a JSON object")
        return {str(k): v for k, v in raw.items()}
    settings = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"Kafka config file {path}, line {number}: expected key=value")
        settings[key.strip()] = value.strip()
    return settings


def from_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {name[len(ENV_PREFIX):].lower(): value for name, value in environ.items()
            if name.startswith(ENV_PREFIX) and value != ""}


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """Settings from `path` (optional), overridden by AGAD_KAFKA_* variables; checked."""
    settings = {key.replace(".", "_"): value for key, value in (read_file(path) if path else {}).items()}
    settings.update(from_env(os.environ if environ is None else environ))
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise ValueError(f"unknown Kafka security setting(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")
    return check(KafkaSecurity(**{key: _typed(key, value) for key, value in settings.items()}))


def _typed(key: str, value):
    if key in SECRET_KEYS:
        return Secret(value)
    if key == "ssl_check_hostname":
        if isinstance(value, bool):
            return value
        if str(value).lower() not in ("true", "false"):
            raise ValueError(f"ssl_check_hostname must be true or false, got {value!r}")
        return str(value).lower() == "true"
    if key in ("security_protocol", "sasl_mechanism"):
        return str(value).upper()
    return str(value)


def check(security: KafkaSecurity) -> KafkaSecurity:
    """Refuse settings a client would only fail on later (with a vaguer message)."""
    protocol = security.security_protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"security_protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol.startswith("SASL"):
        if security.sasl_mechanism not in MECHANISMS:
            raise ValueError(f"{protocol} needs sasl_mechanism, one of {', '.join(MECHANISMS)}; "
                             f"got {security.sasl_mechanism!r}")
        missing = [key for key in ("sasl_username", "sasl_password") if not getattr(security, key)]
        if missing:
            raise ValueError(f"{protocol} needs {' and '.join(missing)}")
    if "SSL" in protocol:
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            name = getattr(security, key)
            if name and not Path(name).is_file():
                raise ValueError(f"{key} {name} is not a readable file")
        if bool(security.ssl_certfile) != bool(security.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
    return security


_active: KafkaSecurity | None = None
#: every form in which a configured secret could show up in a log message
_masked: set[str] = set()
_plain_record_factory = None


def configure(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
    """Set the settings every client of this process uses (the CLI calls it once, with --kafka-config)."""
    global _active
    _active = load(path, environ)
    mask_in_logs([getattr(_active, key) for key in SECRET_KEYS if getattr(_active, key)])
    return _active


def mask_in_logs(values: list[str]) -> None:
    """Replace these values (as text, or escaped as in a bytes repr) by *** in every log record."""
    global _plain_record_factory
    _masked.update(form for value in values for form in (value, repr(value.encode())[2:-1]) if form)
    if _masked and _plain_record_factory is None:
        _plain_record_factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(_masking_record_factory)


def _masking_record_factory(*args, **kwargs) -> logging.LogRecord:
    record = _plain_record_factory(*args, **kwargs)
    message = record.getMessage()
    masked = message
    for value in _masked:
        masked = masked.replace(value, REDACTED)
    if masked != message:
        record.msg, record.args = masked, None
    return record


def active() -> KafkaSecurity:
    """The process's settings; from the environment alone until `configure` is called."""
    return _active if _active is not None else configure()


def client_kwargs() -> dict:
    return active().client_kwargs()
