"""`agad-stream console`: the review console in the browser (streams, alarm queue, labels, models, health).

It binds 127.0.0.1 unless --allow-remote, and always needs credentials: --users FILE
(TOML, bcrypt hashes from `agad-stream console --hash-password`) and/or a bearer token
in the environment variable named by --token-env. Session cookies are HttpOnly and
SameSite=Strict; they are Secure except on plain HTTP to a loopback address, where a
browser would otherwise drop them (give --ssl-certfile/--ssl-keyfile, or a TLS proxy,
for anything else).
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.console.auth import Authenticator, check_bind, hash_password, is_loopback, load_users
from pipelines.console.queue import DEFAULT_QUEUE, ORDERS
from pipelines.learning import signing

if TYPE_CHECKING:  # the server's modules (fastapi, uvicorn, kafka, the models) load only when it runs
    import uvicorn

    from pipelines.console.feed import Feed

DEFAULT_PORT = 8765
TOKEN_ENV = "AGAD_CONSOLE_TOKEN"


def register(subparsers) -> None:
    p = subparsers.add_parser("console", help="web console: live streams, alarms to confirm, model versions",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hash-password", action="store_true",
                   help="read a password (prompt, or stdin when piped), print its bcrypt hash for --users, exit")
    p.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    p.add_argument("--scores-topic", help="the scorer's --out-topic")
    p.add_argument("--review-topic", help="the scorer's --review-topic (flagged windows with values)")
    p.add_argument("--labels-topic", help="where confirmations are published (retrain's --labels-topic)")
    p.add_argument("--windows-topic", help="the scorer's --in-topic: keeps recent windows so a missed anomaly "
                                           "can be marked from the stream view (optional)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model-registry", help="registry: reconstructions and the models view (promote/rollback)")
    model.add_argument("--model", help="a fixed model directory instead of a registry")
    p.add_argument("--metrics-url", help="the scorer's Prometheus endpoint, e.g. http://127.0.0.1:9108/metrics")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--allow-remote", action="store_true", help="allow a --host other than loopback")
    p.add_argument("--signing-key", metavar="FILE",
                   help=f"sign every confirmation with this key (default ${signing.KEY_ENV}), for retrain --require-signed")
    p.add_argument("--trusted-proxies", default="", metavar="ADDRESSES",
                   help="comma-separated addresses or networks of reverse proxies whose X-Forwarded-For and "
                        "X-Forwarded-Proto are believed (default: none; the login rate limit is per client address)")
    p.add_argument("--users", help="TOML file of [users.NAME] with password (bcrypt hash) and role (reviewer|admin)")
    p.add_argument("--token-env", default=TOKEN_ENV, help=f"environment variable holding a bearer token "
                                                          f"(admin role; default {TOKEN_ENV})")
    p.add_argument("--start", choices=("earliest", "latest"), default="earliest",
                   help="read the topics from their start (default) or only new messages (labels: always all)")
    p.add_argument("--max-streams", type=int, default=2000,
                   help="stream keys kept in the streams view, the most recently seen (default 2000)")
    p.add_argument("--queue", choices=ORDERS, default=DEFAULT_QUEUE,
                   help="order of the alarm queue: newest first, highest score first, nearest the threshold first "
                        "(uncertain), or least like any labelled window first, streams taking turns (diverse); "
                        "the page can switch (default %(default)s, chosen by benchmarks/bench_review_queue.py)")
    p.add_argument("--label-rate", type=float, default=5.0, help="labels per second per user, on average (default 5)")
    p.add_argument("--ssl-certfile")
    p.add_argument("--ssl-keyfile")
    p.set_defaults(func=run)


def build(args: argparse.Namespace) -> tuple[uvicorn.Server, Feed]:
    """The server and its (not yet started) Kafka feed, after every check of the arguments."""
    import uvicorn

    from pipelines.console.app import ConsoleSettings, create_app
    from pipelines.console.explain import Models
    from pipelines.console.feed import Feed, FeedConfig

    missing = [f"--{n.replace('_', '-')}" for n in ("scores_topic", "review_topic", "labels_topic")
               if not getattr(args, n)]
    if missing or not (args.model_registry or args.model):
        raise ValueError(f"console needs {', '.join(missing + ['--model-registry or --model'])}")
    check_bind(args.host, args.allow_remote)
    if args.max_streams < 1:
        raise ValueError(f"--max-streams must be >= 1, got {args.max_streams}")
    users = load_users(args.users) if args.users else None
    authenticator = Authenticator(users, os.environ.get(args.token_env) or None)
    models = Models(registry=args.model_registry, model_dir=args.model)
    feed = Feed(FeedConfig(args.bootstrap_servers, args.scores_topic, args.review_topic, args.labels_topic,
                           args.windows_topic, start=args.start, max_streams=args.max_streams,
                           signing_key=signing.load_key(args.signing_key)),
                raw_shape=lambda: models.get().raw_shape)
    tls = bool(args.ssl_certfile)
    settings = ConsoleSettings(secure_cookie=tls or not is_loopback(args.host), label_rate=args.label_rate,
                               metrics_url=args.metrics_url, queue=args.queue)
    app = create_app(feed, models, authenticator, settings)
    proxies = trusted_proxies(args.trusted_proxies)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2,
                            ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                            proxy_headers=bool(proxies), forwarded_allow_ips=proxies)
    return uvicorn.Server(config), feed


def trusted_proxies(text: str) -> list[str]:
    """--trusted-proxies as checked addresses/networks. uvicorn otherwise trusts X-Forwarded-For from 127.0.0.1,
    so any local client could claim a fresh address per request and escape the login rate limit."""
    proxies = [part.strip() for part in text.split(",") if part.strip()]
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ValueError(f"--trusted-proxies: {proxy!r} is not an IP address or network") from None
    return proxies


def run(args: argparse.Namespace) -> int:
    if args.hash_password:
        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if not password:
            raise ValueError("empty password")
        print(hash_password(password))
        return 0
    import torch

    from pipelines.kafka.kafka_io import quiet_kafka_logging

    quiet_kafka_logging()
    torch.set_num_threads(1)
    server, feed = build(args)
    feed.start()
    scheme = "https" if args.ssl_certfile else "http"
    print(f"console on {scheme}://{args.host}:{args.port}/", flush=True)
    try:
        server.run()
    finally:
        feed.stop()
    return 0


def start_console_process(registry: Path, topics: dict[str, str], bootstrap_servers: str, port: int,
                          metrics_port: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`agad-stream console` on the demo's topics with a fresh bearer token: (process, token)."""
    if _answers(port):
        raise ValueError(f"port {port} is already in use: choose another with --console-port")
    token = secrets.token_urlsafe(18)
    command = [sys.executable, "-m", "pipelines.cli", "console", "--bootstrap-servers", bootstrap_servers,
               "--scores-topic", topics["out"], "--review-topic", topics["review"], "--labels-topic", topics["labels"],
               "--windows-topic", topics["in"], "--model-registry", str(registry), "--port", str(port),
               *(["--metrics-url", f"http://127.0.0.1:{metrics_port}/metrics"] if metrics_port else [])]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, TOKEN_ENV: token})
    deadline = time.monotonic() + 60
    while not _answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the console did not start; its log ({log_path}):\n{log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    return process, token


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
