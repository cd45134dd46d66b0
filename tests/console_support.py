"""Helpers for the console tests: the console in a thread on a free port, a users file, a small HTTP client."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from pipelines.cli import build_parser
from pipelines.console.command import build

PASSWORDS = {"alice": ("alice-pw", "reviewer"), "root": ("root-pw", "admin")}


def users_file(folder: Path) -> Path:
    """alice (reviewer) and root (admin), with cheap bcrypt hashes (4 rounds: tests only)."""
    lines = []
    for name, (password, role) in PASSWORDS.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        lines += [f"[users.{name}]", f'password = "{hashed}"', f'role = "{role}"', ""]
    path = folder / "users.toml"
    path.write_text("\n".join(lines))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    """`agad-stream console ARGS` served from a thread of the test process (parsed by the real command line)."""

    def __init__(self, *args: str):
        self.port = free_port()
        parsed = build_parser().parse_args(["console", "--port", str(self.port), *args])
        self.server, self.feed = build(parsed)
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    def __enter__(self) -> Console:
        self.feed.start()
        self.thread.start()
        deadline = time.monotonic() + 30
        while not (self.server.started and self.feed.ready.is_set()):
            assert time.monotonic() < deadline and self.thread.is_alive(), "the console did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.feed.stop()


@dataclass
class Answer:
    status: int
    body: dict
    headers: dict


def call(url: str, path: str, body: dict | None = None, cookie: str | None = None, csrf: str | None = None,
         bearer: str | None = None, origin: str | None = None, headers: dict | None = None) -> Answer:
    """One request (POST when `body` is given) with exactly the credentials (and other `headers`) passed."""
    headers = {**({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})}
    for name, value in (("Cookie", cookie), ("X-CSRF-Token", csrf), ("Origin", origin),
                        ("Authorization", bearer and f"Bearer {bearer}")):
        if value:
            headers[name] = value
    request = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return Answer(answer.status, json.loads(answer.read() or b"{}"), dict(answer.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, json.loads(error.read() or b"{}"), dict(error.headers))


def login(url: str, name: str) -> tuple[str, str]:
    """(Cookie header, CSRF token) of a fresh session of `name`."""
    answer = call(url, "/api/login", {"username": name, "password": PASSWORDS[name][0]})
    assert answer.status == 200, answer.body
    return answer.headers["set-cookie"].split(";")[0], answer.body["csrf"]
