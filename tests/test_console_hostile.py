"""Hostile input to a live console on the real broker: overlong passwords, forged X-Forwarded-For, and a
flood of stream keys (many, and long), over real HTTP and, for the streams pager, headless Chromium."""

import io
import json
import sys
import time
import uuid
from urllib.parse import quote

import bcrypt
import pytest

pytest.register_assert_rewrite("kafka_support", "console_support")

from console_support import Console, call, free_port, users_file  # noqa: E402
from kafka_support import ScorerProcess  # noqa: E402
from pipelines.cli import build_parser, main  # noqa: E402
from pipelines.console.command import _answers, build  # noqa: E402
from pipelines.console.feed import short_key  # noqa: E402
from pipelines.kafka.kafka_io import create_topics, make_producer  # noqa: E402

pytest_plugins = ["kafka_support"]
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]
SENT_STREAMS, KEPT_STREAMS, LONG_STREAMS, LONG_KEY_CHARS = 600, 300, 40, 100_000


def console_args(kafka_bootstrap: str, folder, *extra: str) -> list[str]:
    """Arguments of a console on fresh topics and an (empty) registry, with users alice and root."""
    name = f"console-hostile-{uuid.uuid4().hex[:8]}"
    topics = [f"{name}-{part}" for part in ("scores", "review", "labels")]
    create_topics(kafka_bootstrap, topics)
    return ["--bootstrap-servers", kafka_bootstrap, "--scores-topic", topics[0], "--review-topic", topics[1],
            "--labels-topic", topics[2], "--model-registry", str(folder / "registry"),
            "--users", str(users_file(folder)), *extra]


def wrong_logins(url: str, count: int) -> list[int]:
    """`count` wrong passwords, each claiming another client address in X-Forwarded-For."""
    return [call(url, "/api/login", {"username": "alice", "password": f"guess-{n}"},
                 headers={"X-Forwarded-For": f"203.0.113.{n}"}).status for n in range(count)]


def test_a_password_over_72_bytes_is_refused_with_a_clear_message(kafka_bootstrap, tmp_path):
    """bcrypt takes 72 bytes at most: a longer password was an HTTP 500 (bcrypt 5 raises ValueError)."""
    with Console(*console_args(kafka_bootstrap, tmp_path)) as console:
        for password in ("x" * 100, "é" * 37):  # 37 characters, 74 bytes in UTF-8
            answer = call(console.url, "/api/login", {"username": "alice", "password": password})
            assert answer.status == 400, answer
            assert f"{len(password.encode())} bytes" in answer.body["detail"] and "at most 72" in answer.body["detail"]
        assert call(console.url, "/api/login", {"username": "alice", "password": "alice-pw"}).status == 200


def test_hash_password_refuses_over_72_bytes_and_takes_72(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("é" * 37 + "\n"))
    assert main(["console", "--hash-password"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("agad-stream console: error:") and "74 bytes" in err and "\n" not in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("é" * 36 + "\n"))
    assert main(["console", "--hash-password"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert bcrypt.checkpw(("é" * 36).encode(), hashed.encode())


def test_forwarded_for_does_not_escape_the_login_rate_limit(kafka_bootstrap, tmp_path):
    """`agad-stream console` as a user starts it: 30 wrong logins with a rotating X-Forwarded-For get 429s
    (uvicorn trusts that header from 127.0.0.1 unless told otherwise), and the log names the real address."""
    port = free_port()
    console = ScorerProcess([*console_args(kafka_bootstrap, tmp_path), "--port", str(port)], command="console")
    try:
        console.wait_for("console on http://")
        deadline = time.monotonic() + 30
        while not _answers(port):
            assert time.monotonic() < deadline and console.process.poll() is None, console.log()
            time.sleep(0.1)
        statuses = wrong_logins(f"http://127.0.0.1:{port}", 30)
        console.wait_for("event=console_login_refused")
    finally:
        console.terminate()
    assert statuses[:10] == [401] * 10 and statuses.count(429) >= 18 and set(statuses) <= {401, 429}, statuses
    failed = [line for line in console.lines if "event=console_login_failed" in line]
    assert len(failed) == statuses.count(401) and all("client=127.0.0.1" in line for line in failed)
    assert "203.0.113." not in "".join(console.lines)


def test_a_named_proxy_is_trusted_for_the_client_address(kafka_bootstrap, tmp_path, caplog):
    """--trusted-proxies 127.0.0.1: behind that proxy each forwarded address has a budget of its own."""
    with caplog.at_level("WARNING", "agad_stream.console"):
        with Console(*console_args(kafka_bootstrap, tmp_path, "--trusted-proxies", "127.0.0.1,10.0.0.0/8")) as console:
            statuses = wrong_logins(console.url, 12)
    assert statuses == [401] * 12
    assert "client=203.0.113.11" in caplog.text
    with pytest.raises(ValueError, match="'proxy.example' is not an IP address"):
        build(build_parser().parse_args(["console", *console_args(kafka_bootstrap, tmp_path,
                                                                  "--trusted-proxies", "proxy.example")]))


@pytest.fixture(scope="module")
def crowded(kafka_bootstrap, tmp_path_factory):
    """A console (--max-streams 300) after scores of 600 stream keys: the last 40 sent are 100 kB long and
    differ only in their last 3 characters; the newest 300 include all of them."""
    folder = tmp_path_factory.mktemp("crowded")
    args = console_args(kafka_bootstrap, folder, "--max-streams", str(KEPT_STREAMS))
    scores_topic = args[args.index("--scores-topic") + 1]
    keys = [f"sensor-{n:04d}" for n in range(SENT_STREAMS - LONG_STREAMS)]
    keys += ["L" * (LONG_KEY_CHARS - 3) + f"{n:03d}" for n in range(LONG_STREAMS)]
    producer = make_producer(kafka_bootstrap)
    for n, key in enumerate(keys):
        score = {"id": f"w{n}", "score": 1.0, "threshold": 2.0, "is_anomaly": False, "model_version": 1}
        producer.send(scores_topic, key=key.encode(), value=json.dumps(score).encode())
    producer.flush(60)
    producer.close()
    with Console(*args) as console:
        deadline = time.monotonic() + 60
        while console.feed.seq < SENT_STREAMS:
            assert time.monotonic() < deadline, f"the console read {console.feed.seq} of {SENT_STREAMS} scores"
            time.sleep(0.2)
        console.keys = keys
        yield console


def test_the_stream_table_is_bounded_paged_and_its_keys_are_short(crowded):
    cookie = call(crowded.url, "/api/login", {"username": "alice", "password": "alice-pw"}).headers["set-cookie"]
    cookie = cookie.split(";")[0]
    state = call(crowded.url, "/api/state", cookie=cookie)
    assert state.status == 200 and state.body["streams_total"] == KEPT_STREAMS
    assert len(state.body["streams"]) == 100 and len(json.dumps(state.body)) < 100_000
    names = []
    for offset in range(0, KEPT_STREAMS + 100, 100):
        page = call(crowded.url, f"/api/streams?offset={offset}&limit=100", cookie=cookie).body
        names += [row["stream"] for row in page["streams"]]
    assert len(names) == len(set(names)) == KEPT_STREAMS and names == sorted(names)
    assert set(crowded.keys[:SENT_STREAMS - KEPT_STREAMS]).isdisjoint(names)  # the least recently seen went
    long_rows = [name for name in names if name.startswith("LLL")]
    assert len(long_rows) == LONG_STREAMS and all(len(name.encode()) == 256 for name in long_rows)  # one row each
    first_long = short_key(crowded.keys[-LONG_STREAMS])
    assert first_long in long_rows
    windows = call(crowded.url, f"/api/stream-windows?stream={quote(first_long)}", cookie=cookie).body
    assert [w["id"] for w in windows] == [f"w{SENT_STREAMS - LONG_STREAMS}"]  # found by its short key
    assert call(crowded.url, "/api/streams?limit=501", cookie=cookie).status == 422


def test_a_short_key_fits_its_bytes_and_leaves_keys_the_scorer_takes_alone():
    assert short_key("é" * 128) == "é" * 128  # 256 bytes: the scorer's limit, kept whole
    cut = short_key("é" * 129)
    assert len(cut.encode()) <= 256 and cut.startswith("é" * 100) and cut != short_key("é" * 130)


def test_the_streams_view_pages_in_the_browser_and_takes_new_streams_live(crowded, kafka_bootstrap):
    from selenium.webdriver.common.by import By
    from test_console_browser import chrome, log_in

    browser = chrome()
    try:
        wait = log_in(browser, crowded.url)
        browser.find_element(By.CSS_SELECTOR, "#nav button[data-view=streams]").click()

        def rows():
            return browser.execute_script(
                "return [...document.querySelectorAll('#streams tbody tr')].map(tr => tr.dataset.stream)")

        wait.until(lambda b: len(rows()) == 100)
        first_page = rows()
        text = browser.find_element(By.ID, "streams-range").text
        assert text == f"streams 1–100 of {KEPT_STREAMS} (the {KEPT_STREAMS} most recently seen are kept)"
        assert not browser.find_element(By.ID, "streams-prev").is_enabled()
        for _ in range(2):
            browser.find_element(By.ID, "streams-next").click()
        wait.until(lambda b: b.find_element(By.ID, "streams-range").text.startswith("streams 201–300"))
        assert not browser.find_element(By.ID, "streams-next").is_enabled() and not set(rows()) & set(first_page)
        browser.find_element(By.ID, "streams-prev").click()
        browser.find_element(By.ID, "streams-prev").click()
        wait.until(lambda b: rows() == first_page)
        producer = make_producer(kafka_bootstrap)  # a new stream, first by name: it appears without a reload
        producer.send(crowded.feed.config.scores_topic, key=b"!new-stream",
                      value=json.dumps({"id": "new-0", "score": 3.0, "threshold": 2.0, "is_anomaly": True}).encode())
        producer.flush(30)
        producer.close()
        wait.until(lambda b: rows()[0] == "!new-stream")
        assert len(rows()) == 100 and browser.find_element(By.ID, "streams-range").text.endswith(f"of {KEPT_STREAMS} "
                                                                                                f"(the {KEPT_STREAMS} most recently seen are kept)")
    finally:
        browser.quit()
