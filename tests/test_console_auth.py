"""Console security on a live server (real broker): refused without login, CSRF, roles, rate limit, binding."""

import os
import time

import pytest

pytest.register_assert_rewrite("kafka_support", "console_support")

from agad_stream import ModelRegistry  # noqa: E402
from console_support import Console, call, login, users_file  # noqa: E402
from pipelines.cli import build_parser  # noqa: E402
from pipelines.console.app import printable  # noqa: E402
from pipelines.console.auth import RateLimiter, load_users  # noqa: E402
from pipelines.console.command import build  # noqa: E402
from pipelines.kafka.kafka_io import create_topics  # noqa: E402

pytest_plugins = ["kafka_support"]
TOKEN = "s3cret-token-for-tests"


def test_rate_limiter_allows_a_burst_then_the_average_rate():
    """The label endpoint's limit: `burst` at once, then `rate` per second, per user."""
    limiter = RateLimiter(rate=2.0, burst=3.0)
    assert [limiter.allow("alice", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("bob", now=0.0)  # per user
    assert limiter.allow("alice", now=0.5) and not limiter.allow("alice", now=0.5)


def test_logged_strings_cannot_forge_log_lines():
    """Stream ids and user names come from Kafka or the request: a newline in one must stay on its line."""
    assert printable('x"\nevent=console_login user=root') == 'x"\\nevent=console_login user=root'
    assert printable("<script>" * 100) == ("<script>" * 25)


def test_binding_and_credentials_are_checked_before_serving(tmp_path, monkeypatch):
    """Other addresses need --allow-remote; no credentials at all is refused; a plain password is not a hash."""
    monkeypatch.delenv("AGAD_CONSOLE_TOKEN", raising=False)
    base = ["console", "--scores-topic", "s", "--review-topic", "r", "--labels-topic", "l", "--model", str(tmp_path)]
    with pytest.raises(ValueError, match="--allow-remote"):
        build(build_parser().parse_args([*base, "--host", "0.0.0.0", "--users", str(users_file(tmp_path))]))
    with pytest.raises(ValueError, match="needs credentials"):
        build(build_parser().parse_args([*base, "--host", "0.0.0.0", "--allow-remote"]))
    plain = tmp_path / "plain.toml"
    plain.write_text('[users.eve]\npassword = "hunter2"\nrole = "admin"\n')
    with pytest.raises(ValueError, match="bcrypt hash"):
        load_users(plain)


@pytest.fixture(scope="module")
def console(kafka_bootstrap, model_dirs, tmp_path_factory):
    """A console on a registry of two versions (1 current), with users alice (reviewer) and root (admin)."""
    folder = tmp_path_factory.mktemp("console-auth")
    registry = ModelRegistry(folder / "registry")
    for model_dir in model_dirs:
        registry.publish(model_dir, make_current=False)
    registry.set_current(1)
    topics = [f"console-auth-{time.time_ns()}-{name}" for name in ("scores", "review", "labels")]
    create_topics(kafka_bootstrap, topics)
    os.environ["AGAD_CONSOLE_TOKEN"] = TOKEN
    try:
        with Console("--bootstrap-servers", kafka_bootstrap, "--scores-topic", topics[0], "--review-topic", topics[1],
                     "--labels-topic", topics[2], "--model-registry", str(registry.root),
                     "--users", str(users_file(folder)), "--label-rate", "1") as running:
            running.registry = registry
            yield running
    finally:
        del os.environ["AGAD_CONSOLE_TOKEN"]


def test_unauthenticated_requests_are_refused(console):
    for path, body in (("/api/state", None), ("/api/window?id=x", None), ("/api/models", None),
                       ("/api/labels", {"id": "x", "decision": "confirm"}), ("/api/models/rollback", {})):
        assert call(console.url, path, body).status == 401, path
    assert call(console.url, "/api/login", {"username": "alice", "password": "wrong"}).status == 401
    assert call(console.url, "/api/login", {"username": "nobody", "password": "alice-pw"}).status == 401
    assert call(console.url, "/api/state", bearer="wrong").status == 401
    assert call(console.url, "/api/state", bearer=TOKEN).status == 200  # scripts: the header, no cookie, no CSRF


def test_session_cookie_is_httponly_and_strict(console):
    answer = call(console.url, "/api/login", {"username": "alice", "password": "alice-pw"})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # plain HTTP on loopback only; off loopback or with TLS it is Secure
    assert "default-src 'self'" in answer.headers["content-security-policy"]


def test_state_changes_need_the_csrf_token_and_a_same_origin(console):
    cookie, csrf = login(console.url, "alice")
    body = {"id": "no-such-window", "decision": "confirm"}
    assert call(console.url, "/api/labels", body, cookie=cookie).status == 403
    assert call(console.url, "/api/labels", body, cookie=cookie, csrf="forged").status == 403
    assert call(console.url, "/api/labels", body, cookie=cookie, csrf=csrf, origin="http://evil.example").status == 403
    assert call(console.url, "/api/labels", body, cookie=cookie, csrf=csrf).status == 404  # passed the checks
    assert call(console.url, "/api/labels", ["not", "an", "object"], cookie=cookie, csrf=csrf).status == 400
    other_cookie, _ = login(console.url, "alice")
    assert call(console.url, "/api/labels", body, cookie=other_cookie, csrf=csrf).status == 403  # token of a session


def test_reviewer_cannot_switch_models_and_admin_can(console):
    registry = console.registry
    cookie, csrf = login(console.url, "alice")
    assert call(console.url, "/api/models/promote", {"version": 2}, cookie=cookie, csrf=csrf).status == 403
    assert call(console.url, "/api/models/rollback", {}, cookie=cookie, csrf=csrf).status == 403
    assert registry.current_version() == 1
    cookie, csrf = login(console.url, "root")
    assert call(console.url, "/api/models/promote", {"version": 2}, cookie=cookie).status == 403  # admin needs CSRF too
    answer = call(console.url, "/api/models/promote", {"version": 2}, cookie=cookie, csrf=csrf)
    assert answer.status == 200 and registry.current_version() == 2
    answer = call(console.url, "/api/models/rollback", {}, cookie=cookie, csrf=csrf)
    assert answer.status == 200 and answer.body["current"] == 1 and registry.current_version() == 1
    assert call(console.url, "/api/models/promote", {"version": 9}, cookie=cookie, csrf=csrf).status == 409
    listed = call(console.url, "/api/models", cookie=cookie).body
    assert listed["current"] == 1 and [v["version"] for v in listed["versions"]] == [2, 1]


def test_label_endpoint_is_rate_limited(console):
    """--label-rate 1 (burst 20): the 21st label in a second is refused with 429."""
    cookie, csrf = login(console.url, "root")
    statuses = [call(console.url, "/api/labels", {"id": "none", "decision": "skip"}, cookie=cookie, csrf=csrf).status
                for _ in range(22)]
    assert statuses[:20] == [404] * 20 and 429 in statuses[20:]


def test_login_attempts_are_rate_limited(console):
    """Password guessing from one address: 10 attempts at once, then one every 5 s (last in this module: it
    uses up the test address's login budget)."""
    statuses = [call(console.url, "/api/login", {"username": "alice", "password": f"guess-{n}"}).status
                for n in range(12)]
    assert 429 in statuses and set(statuses) <= {401, 429}
