"""Secured clusters (issue 10): one config file or AGAD_KAFKA_* variables give every Kafka
client its TLS / SASL settings, and no secret ever reaches a log, a metric or an error.

The live tests run against a private broker (scripts/kafka-local.sh with a SASL_PLAINTEXT
listener and a SCRAM/PLAIN user created at format time), never against the shared one."""

import json
import logging
import os
import re
import secrets
import subprocess
import urllib.request
from pathlib import Path

import pytest

pytest.register_assert_rewrite("kafka_support")

from kafka_support import read_topic, scored_ids  # noqa: E402
from pipelines import cli  # noqa: E402
from pipelines.kafka import security  # noqa: E402
from kafka.errors import KafkaError  # noqa: E402
from pipelines.kafka.kafka_io import create_topics, make_admin  # noqa: E402
from pipelines.kafka.local_broker import LocalBroker, free_port  # noqa: E402

pytest_plugins = ["kafka_support"]  # fixtures: model_dirs, ecg_windows, scorer_processes

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "benchmarks", "agad_stream", "modalities")
USER = "agad-test"


@pytest.fixture(autouse=True)
def fresh_security(monkeypatch):
    """Each test starts from the environment's settings and leaves no configured state behind."""
    monkeypatch.setattr(security, "_active", None)
    for name in list(security.from_env(os.environ)):
        monkeypatch.delenv(security.ENV_PREFIX + name.upper())


def sasl_env(password: str, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
    return {"AGAD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "AGAD_KAFKA_SASL_MECHANISM": mechanism,
            "AGAD_KAFKA_SASL_USERNAME": USER, "AGAD_KAFKA_SASL_PASSWORD": password}


# --------------------------------------------------------------------------- settings (no broker)
def test_a_file_and_the_environment_make_the_client_settings(tmp_path):
    """Kafka-style dotted keys in a properties file; the environment wins over the file."""
    config = tmp_path / "client.properties"
    config.write_text("# staging cluster\nsecurity.protocol=sasl_plaintext\nsasl.mechanism=SCRAM-SHA-256\n"
                      "sasl.username=alice\nsasl.password=from-file\n")
    settings = security.load(config, environ={"AGAD_KAFKA_SASL_PASSWORD": "from-env"})
    assert settings.client_kwargs() == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                                        "sasl_plain_username": "alice", "sasl_plain_password": "from-env"}


def test_tls_settings_from_json(tmp_path):
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("-----BEGIN-----\n")
    config = tmp_path / "kafka.json"
    config.write_text(json.dumps({"security_protocol": "SSL", "ssl_cafile": str(ca), "ssl_certfile": str(cert),
                                  "ssl_keyfile": str(key), "ssl_password": "key-secret", "ssl_check_hostname": False}))
    kwargs = security.load(config, environ={}).client_kwargs()
    assert kwargs == {"security_protocol": "SSL", "ssl_cafile": str(ca), "ssl_certfile": str(cert),
                      "ssl_keyfile": str(key), "ssl_password": "key-secret", "ssl_check_hostname": False}


def test_no_settings_mean_plaintext():
    assert security.load(environ={}).client_kwargs() == {"security_protocol": "PLAINTEXT"}


def test_secrets_are_redacted_wherever_the_settings_are_shown():
    settings = security.load(environ=sasl_env("hunter2-secret"))
    kwargs = settings.client_kwargs()
    for shown in (repr(settings), str(settings), repr(kwargs), "%s" % kwargs, repr(settings.sasl_password)):
        assert "hunter2-secret" not in shown and "***" in shown
    assert kwargs["sasl_plain_password"] == "hunter2-secret"  # the client itself gets the real one
    assert "agad-test" in repr(settings)  # a user name is not a secret


def test_a_configured_secret_is_masked_in_any_log_record(caplog):
    """kafka-python logs a SASL PLAIN request's bytes at DEBUG: the password must not survive that."""
    security.configure(environ=sasl_env("wire-secret", "PLAIN"))
    logging.getLogger("kafka.net.connection").warning("Request: auth_bytes=%r", b"u\x00u\x00wire-secret")
    assert "wire-secret" not in caplog.text
    assert "auth_bytes=b'u\\x00u\\x00***'" in caplog.text


@pytest.mark.parametrize("settings, message", [
    ({"sasl_pasword": "typo-secret"}, "unknown Kafka security setting(s) sasl_pasword"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u", "sasl_password": "p-secret"},
     "SASL_SSL needs sasl_mechanism, one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; got 'GSSAPI'"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
     "SASL_PLAINTEXT needs sasl_password"),
    ({"security_protocol": "TLS"}, "security_protocol must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "ssl_cafile /nonexistent/ca.pem is not"),
])
def test_bad_settings_are_refused_clearly_without_the_secret(tmp_path, settings, message):
    config = tmp_path / "kafka.json"
    config.write_text(json.dumps(settings))
    with pytest.raises(ValueError) as refused:
        security.load(config, environ={})
    assert message in str(refused.value)
    assert "secret" not in str(refused.value)


def test_a_config_file_that_is_not_json_names_the_position_not_the_content(tmp_path):
    config = tmp_path / "kafka.json"
    config.write_text('{"sasl_password": "leaky-secret" "sasl_username": "u"}')
    with pytest.raises(ValueError, match=r"not valid JSON: Expecting ',' delimiter \(line 1") as refused:
        security.load(config, environ={})
    assert "leaky-secret" not in str(refused.value)


@pytest.mark.parametrize("command, required", [
    ("score", ["--model", "m", "--in-topic", "a", "--out-topic", "b", "--dlq-topic", "c", "--group", "g"]),
    ("replay", ["--data", "d", "--topic", "t"]),
    ("monitor", ["--topic", "t"]),
    ("retrain", ["--model-registry", "r", "--labels-topic", "l"]),
    ("console", []),
])
def test_every_kafka_command_takes_the_same_config_file(tmp_path, capsys, command, required):
    """A bad file is one clear error line and exit status 2, before anything connects."""
    config = tmp_path / "kafka.properties"
    config.write_text("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.password=cli-secret\n")
    assert cli.main([command, *required, "--kafka-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"agad-stream {command}: error: SASL_PLAINTEXT needs sasl_username"


def test_no_module_builds_a_kafka_client_of_its_own():
    """Every client goes through kafka_io (and so gets the security settings)."""
    builds = re.compile(r"\bKafka(Consumer|Producer|AdminClient)\(")
    offenders = [str(path.relative_to(REPO)) for package in PACKAGES for path in (REPO / package).rglob("*.py")
                 if builds.search(path.read_text()) and path.name != "kafka_io.py"
                 and _tracked(path)]
    assert offenders == []


def _tracked(path: Path) -> bool:
    """Files under version control (a colleague's uncommitted draft is not the project yet)."""
    done = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=REPO, capture_output=True)
    return done.returncode == 0


# --------------------------------------------------------------------------- a live SASL broker
@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    """A private broker: PLAINTEXT (for the test's own checks) plus SASL_PLAINTEXT with SCRAM and PLAIN."""
    password = "pw-" + secrets.token_hex(12)
    broker = LocalBroker(tmp_path_factory.mktemp("sasl-broker") / "kafka", sasl_user=USER, sasl_password=password)
    broker.start()
    yield broker, password
    broker.stop()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_the_sasl_listener_admits_the_user_and_refuses_a_wrong_password(sasl_broker, mechanism, caplog):
    broker, password = sasl_broker
    caplog.set_level(logging.DEBUG)  # kafka-python logs its whole configuration at DEBUG
    caplog.set_level(logging.DEBUG, logger="kafka")  # an earlier scorer in this process may have quietened it
    security.configure(environ=sasl_env(password, mechanism))
    admin = make_admin(broker.sasl_bootstrap, bootstrap_timeout_ms=20_000)
    try:
        assert admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    security.configure(environ=sasl_env("wrong-" + password, mechanism))
    with pytest.raises(KafkaError) as refused:
        make_admin(broker.sasl_bootstrap, bootstrap_timeout_ms=3000)
    assert password not in caplog.text + repr(refused.value)
    assert "'sasl_plain_password': '***'" in caplog.text  # the dump happened, redacted


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_replay_score_and_monitor_through_scram(sasl_broker, model_dirs, tmp_path, scorer_processes):
    """The three commands on the SASL listener only: replay and monitor with --kafka-config, the
    scorer with AGAD_KAFKA_* variables; all at DEBUG, and the password appears in no output or metric."""
    broker, password = sasl_broker
    name = f"sec-{secrets.token_hex(4)}"
    topics = {"in": f"{name}-in", "out": f"{name}-out", "dlq": f"{name}-dlq"}
    create_topics(broker.bootstrap, list(topics.values()))
    config = tmp_path / "kafka.json"
    config.write_text(json.dumps({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                  "sasl_username": USER, "sasl_password": password}))
    port = free_port()
    scorer = scorer_processes(
        ["--model", str(model_dirs[0]), "--bootstrap-servers", broker.sasl_bootstrap, "--in-topic", topics["in"],
         "--out-topic", topics["out"], "--dlq-topic", topics["dlq"], "--group", name, "--device", "cpu",
         "--preset", "latency", "--metrics-port", str(port)],
        env=sasl_env(password), log_level="DEBUG")
    scorer.wait_for(f"event=partitions_assigned partitions={topics['in']}")
    n = 120
    replay = scorer_processes(["--modality", "ecg", "--ann", "pvc", "--data", str(REPO / "tests/data/mitdb-pvc/119"),
                               "--topic", topics["in"], "--bootstrap-servers", broker.sasl_bootstrap, "--rate", "0",
                               "--encoding", "binary", "--limit", str(n), "--quiet", "--kafka-config", str(config)],
                              command="replay", log_level="DEBUG")
    assert replay.process.wait(120) == 0, replay.log()
    monitor = scorer_processes(["--topic", topics["out"], "--bootstrap-servers", broker.sasl_bootstrap,
                                "--from-beginning", "--expect", str(n), "--idle-timeout", "60", "--json",
                                "--kafka-config", str(config)], command="monitor", log_level="DEBUG")
    assert monitor.process.wait(120) == 0, monitor.log()
    assert f'"scored": {n},' in "".join(monitor.lines), monitor.log()
    assert sorted(scored_ids(read_topic(broker.bootstrap, topics["out"])).values()) == [1] * n  # via PLAINTEXT
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert scorer.terminate() == 0
    outputs = {"scorer": "".join(scorer.lines), "replay": "".join(replay.lines), "monitor": "".join(monitor.lines),
               "metrics": metrics}
    assert "'sasl_plain_password': '***'" in outputs["scorer"]  # kafka-python's DEBUG dump, redacted
    assert [where for where, text in outputs.items() if password in text] == []
