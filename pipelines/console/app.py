"""The console's HTTP side: JSON API, Server-Sent Events and the static page (FastAPI).

Every /api route except login needs a session cookie (or an ``Authorization: Bearer``
header, which browsers never add on their own, so it needs no CSRF token). Every POST
with a session cookie needs the session's CSRF token in ``X-CSRF-Token``; a cross-origin
``Origin`` is refused as well. Every action is logged with its user.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client.parser import text_string_to_metric_families

from pipelines.console.auth import Authenticator, PasswordTooLong, RateLimiter, Session, Sessions, User, csrf_ok
from pipelines.console.explain import Models, embed, explain
from pipelines.console.feed import STREAMS_PAGE, Feed
from pipelines.console.queue import DEFAULT_QUEUE, DESCRIPTIONS, ORDERS, check_order, queue_order
from pipelines.learning.labels import AAMI_CLASSES, check_text_field
from pipelines.learning.models import rollback_target, switch_to
from pipelines.kafka.codec import InvalidMessage
from pipelines.kafka.metrics import log_event

log = logging.getLogger("agad_stream.console")
STATIC = Path(__file__).parent / "static"
COOKIE = "agad_console_session"
LOGIN_RATE, LOGIN_BURST = 0.2, 10.0
MAX_STREAMS_PAGE = 500
#: the label each decision publishes; skip and unsure ("not sure") publish nothing
DECISIONS = {"confirm": 1, "false_alarm": 0, "missed": 1, "skip": None, "unsure": None}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass
class ConsoleSettings:
    secure_cookie: bool = True
    label_rate: float = 5.0
    label_burst: float = 20.0
    metrics_url: str | None = None
    #: the review queue's order when the page does not ask for another (see queue.py)
    queue: str = DEFAULT_QUEUE


def create_app(feed: Feed, models: Models, authenticator: Authenticator, settings: ConsoleSettings) -> FastAPI:
    app = FastAPI(title="agad-stream console", docs_url=None, redoc_url=None, openapi_url=None)
    sessions = Sessions()
    limiter = RateLimiter(settings.label_rate, settings.label_burst)
    login_limiter = RateLimiter(LOGIN_RATE, LOGIN_BURST)  # per client address: slows password guessing
    health_state: dict = {}

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def caller(request: Request) -> tuple[User, Session | None]:
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            user = authenticator.bearer(authorization[7:].strip())
            if user is None:
                raise HTTPException(401, "wrong bearer token")
            return user, None
        session = sessions.get(request.cookies.get(COOKIE))
        if session is None:
            raise HTTPException(401, "log in first")
        return session.user, session

    def reader(request: Request) -> User:
        return caller(request)[0]

    def writer(request: Request) -> User:
        user, session = caller(request)
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            log_event(log, "console_refused", logging.WARNING, user=user.name, path=request.url.path, why="origin")
            raise HTTPException(403, "cross-origin request refused")
        if session is not None and not csrf_ok(session, request.headers.get("x-csrf-token")):
            log_event(log, "console_refused", logging.WARNING, user=user.name, path=request.url.path, why="csrf")
            raise HTTPException(403, "missing or wrong CSRF token (X-CSRF-Token)")
        return user

    def admin(user: User = Depends(writer)) -> User:
        if not user.is_admin:
            log_event(log, "console_refused", logging.WARNING, user=user.name, why="not admin")
            raise HTTPException(403, "only an admin may change the served model")
        return user

    # ------------------------------------------------------------------ page and login
    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.post("/api/login")
    async def login(request: Request) -> JSONResponse:
        client = request.client.host if request.client else "?"  # a proxy's forwarded address only if trusted
        if not login_limiter.allow(client):
            log_event(log, "console_login_refused", logging.WARNING, client=printable(client), why="rate limit")
            raise HTTPException(429, "too many login attempts; wait a minute")
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            raise HTTPException(415, "send JSON")  # a cross-site form cannot, without a CORS preflight
        body = await json_object(request)
        if body.get("token"):
            user = authenticator.bearer(str(body["token"]))
        else:
            try:
                user = await asyncio.to_thread(authenticator.password, str(body.get("username", "")),
                                               str(body.get("password", "")))
            except PasswordTooLong as error:
                log_event(log, "console_login_failed", logging.WARNING, user=printable(body.get("username")),
                          client=printable(client), why="password too long")
                raise HTTPException(400, str(error)) from None
        if user is None:
            log_event(log, "console_login_failed", logging.WARNING, user=printable(body.get("username", "token")),
                      client=printable(client))
            raise HTTPException(401, "wrong user name, password or token")
        sid, session = sessions.create(user)
        log_event(log, "console_login", user=user.name, role=user.role, client=printable(client))
        response = JSONResponse({"user": user.name, "role": user.role, "csrf": session.csrf})
        response.set_cookie(COOKIE, sid, httponly=True, secure=settings.secure_cookie, samesite="strict",
                            max_age=int(sessions.ttl_s), path="/")
        return response

    @app.get("/api/session")
    def session_info(request: Request) -> dict:
        user, session = caller(request)
        return {"user": user.name, "role": user.role, "csrf": session.csrf if session else None}

    @app.post("/api/logout")
    def logout(request: Request, response: Response, user: User = Depends(writer)) -> dict:
        sessions.drop(request.cookies.get(COOKIE))
        response.delete_cookie(COOKIE, path="/")
        log_event(log, "console_logout", user=user.name)
        return {"ok": True}

    # ------------------------------------------------------------------ streams and alarms
    def ordered(alarms: list[dict], order: str) -> list[dict]:
        """`alarms` (oldest first) in the review order; "diverse" embeds them with the current model."""
        embeddings = labelled = None
        if order == "diverse" and alarms:
            values, labelled_values = feed.review_values([a["id"] for a in alarms])
            try:
                served = models.get()
                embeddings = embed(served, values)
                labelled = embed(served, labelled_values) if labelled_values else None
            except (ValueError, FileNotFoundError) as error:  # no model to embed with: streams still take turns
                log_event(log, "console_queue_unembedded", logging.WARNING, error=error)
        return [alarms[i] for i in queue_order(alarms, order, embeddings, labelled)]

    def queue_order_of(queue: str | None) -> str:
        try:
            return check_order(queue or settings.queue)
        except ValueError as error:
            raise HTTPException(400, str(error)) from None

    def queue_info(order: str) -> dict:
        return {"order": order, "description": DESCRIPTIONS[order], "default": settings.queue, "orders": list(ORDERS)}

    @app.get("/api/state")
    def state(queue: str | None = None, user: User = Depends(reader)) -> dict:
        """The snapshot, its alarms in the review order (`queue`, default --queue), how they are ordered, and
        their ids in arrival order (the page drops the oldest first, as the feed does)."""
        order = queue_order_of(queue)
        snapshot = feed.snapshot()
        arrival = snapshot["alarms"][::-1]
        snapshot["alarms"] = ordered(arrival, order)
        return {**snapshot, "arrival": [a["id"] for a in arrival], "queue": queue_info(order)}

    @app.get("/api/queue")
    def review_queue(order: str | None = None, user: User = Depends(reader)) -> dict:
        """Every alarm kept, by id, in the review order: the page reorders with it (nothing is left out)."""
        order = queue_order_of(order)
        return {"queue": queue_info(order), "ids": [a["id"] for a in ordered(feed.alarm_summaries(), order)]}

    @app.get("/api/streams")
    def streams(offset: int = Query(0, ge=0), limit: int = Query(STREAMS_PAGE, ge=1, le=MAX_STREAMS_PAGE),
                user: User = Depends(reader)) -> dict:
        return feed.streams_page(offset, limit)

    @app.get("/api/stream-windows")
    def stream_windows(stream: str, user: User = Depends(reader)) -> list[dict]:
        return feed.recent_windows(stream)

    @app.get("/api/window")
    def window(id: str, user: User = Depends(reader)) -> dict:
        found = feed.window(id)
        if found is None:
            raise HTTPException(404, "this window is no longer kept by the console")
        values = found.pop("values")
        found["flagged"] = id in feed.alarms
        try:
            served = models.get(found.get("model_version"))
            found.update(explain(served, np.asarray(values, dtype=np.float32)))
            found["anomaly_types"] = AAMI_CLASSES if served.modality.name == "ecg" else None  # else free text
        except (ValueError, FileNotFoundError) as error:
            found["explain_error"] = str(error)
        return found

    @app.post("/api/labels")
    async def label(request: Request, user: User = Depends(writer)) -> dict:
        if not limiter.allow(user.name):
            log_event(log, "console_rate_limited", logging.WARNING, user=user.name)
            raise HTTPException(429, "too many labels; wait a moment")
        body = await json_object(request)
        decision = body.get("decision")
        if decision not in DECISIONS or not isinstance(body.get("id"), str):
            raise HTTPException(400, f"send {{'id': str, 'decision': one of {sorted(DECISIONS)}}}")
        try:
            texts = {name: check_text_field(name, body.get(name)) for name in ("anomaly_type", "note")}
        except InvalidMessage as error:
            raise HTTPException(400, str(error)) from None
        found = feed.window(body["id"])
        if found is None:
            raise HTTPException(404, "this window is no longer kept by the console")
        if DECISIONS[decision] is None:
            feed.mark_unlabelled(found["id"], "skipped" if decision == "skip" else "unsure")
        else:
            try:
                await asyncio.to_thread(feed.label, found, DECISIONS[decision], user.name, **texts)
            except Exception as error:
                log_event(log, "console_label_failed", logging.ERROR, user=user.name, id=printable(found["id"]),
                          error=error)
                raise HTTPException(503, f"the labels topic did not take the confirmation: {error}") from None
        log_event(log, "console_label", user=user.name, id=printable(found["id"]), stream=printable(found["stream"]),
                  decision=decision, anomaly_type=printable(texts["anomaly_type"]))
        return {"ok": True, "id": found["id"], "decision": decision}

    @app.get("/api/events")
    async def events(request: Request, user: User = Depends(reader)) -> StreamingResponse:
        sid = request.cookies.get(COOKIE)
        try:
            last = int(request.headers.get("last-event-id") or request.query_params.get("after") or 0)
        except ValueError:
            raise HTTPException(400, "'after' must be an event number") from None

        async def stream():
            nonlocal last
            yield "retry: 2000\n\n"
            quiet_since = time.monotonic()
            while not await request.is_disconnected() and (sid is None or sessions.get(sid)):  # ends at logout
                batch = feed.events_after(last)
                newest_row = {p["stream"]: seq for seq, kind, p in batch if kind == "stream"}
                for seq, kind, payload in batch:
                    last = seq
                    if kind == "stream" and newest_row[payload["stream"]] != seq:
                        continue  # a stream's row changed again later in this batch: send only the last one
                    yield f"id: {seq}\nevent: {kind}\ndata: {json.dumps(payload)}\n\n"
                if batch:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > 15:
                    yield ": keep-alive\n\n"
                    quiet_since = time.monotonic()
                await asyncio.sleep(0.25)

        return StreamingResponse(stream(), media_type="text/event-stream")

    # ------------------------------------------------------------------ models and health
    @app.get("/api/models")
    def model_versions(user: User = Depends(reader)) -> dict:
        registry = models.registry
        if registry is None:
            return {"registry": None, "current": models.current_name(), "versions": []}
        return {"registry": str(registry.root), "current": registry.current_version(),
                "versions": [version_row(registry, v) for v in reversed(registry.versions())]}

    def switch(user: User, version: int | None) -> dict:
        if models.registry is None:
            raise HTTPException(400, "the console serves a fixed --model; give --model-registry to switch versions")
        try:
            target = rollback_target(models.registry) if version is None else version
            previous = switch_to(models.registry, target, "rollback" if version is None else "manual_promote")
        except (ValueError, FileNotFoundError) as error:
            raise HTTPException(409, str(error)) from None
        log_event(log, "console_model_switch", user=user.name, version=target, previous=previous,
                  action="rollback" if version is None else "promote")
        return {"ok": True, "current": target, "previous": previous}

    @app.post("/api/models/promote")
    async def promote(request: Request, user: User = Depends(admin)) -> dict:
        body = await json_object(request)
        if not isinstance(body.get("version"), int):
            raise HTTPException(400, "send {'version': int}")
        return await asyncio.to_thread(switch, user, body["version"])

    @app.post("/api/models/rollback")
    async def rollback(user: User = Depends(admin)) -> dict:
        return await asyncio.to_thread(switch, user, None)

    @app.get("/api/health")
    def health(user: User = Depends(reader)) -> dict:
        report = {"feed_running": feed.running, "metrics_url": settings.metrics_url}
        if settings.metrics_url:
            report.update(scrape(settings.metrics_url, health_state))
        return report

    return app


def version_row(registry, version: int) -> dict:
    """A version's metadata for the models view, with when it was published (the directory's
    time for versions published before registries stamped it) and its label conflicts."""
    metadata = registry.metadata(version)
    conflicts, contradicting = metadata.get("conflicts") or {}, metadata.get("contradicting") or {}
    return {"version": version, **metadata,
            "created": metadata.get("published_at") or registry.path(version).stat().st_mtime,
            "label_conflicts": {"both_ways": conflicts.get("same_window"), "near_identical": conflicts.get("near_identical"),
                                "contradicting": contradicting.get("contradicting"),
                                "new_labels": contradicting.get("new_labels")} if conflicts or contradicting else None}


async def json_object(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "send a JSON object")
    return body


def printable(text, limit: int = 200) -> str:
    """A Kafka or request string for one log line: control characters escaped, so it cannot forge lines."""
    return str(text)[:limit].encode("unicode_escape").decode("ascii")


def scrape(url: str, previous: dict) -> dict:
    """Lag, throughput (since the previous scrape) and dead letters from the scorer's Prometheus endpoint."""
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:
            text = answer.read().decode()
    except OSError as error:
        return {"metrics_error": f"cannot read {url}: {error}"}
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def total(name: str) -> float:
        return sum(s.value for s in samples if s.name == name)

    scored, now = total("agad_scorer_messages_scored_total"), time.monotonic()
    rate = None
    if "scored" in previous and now > previous["at"]:
        rate = (scored - previous["scored"]) / (now - previous["at"])
    previous.update(scored=scored, at=now)
    return {"consumer_lag": total("agad_scorer_consumer_lag"), "scored": scored, "throughput_per_s": rate,
            "anomalies": total("agad_scorer_anomalies_total"),
            "model_version": total("agad_scorer_model_version"),
            "dead_letters": {s.labels.get("reason", "?"): s.value for s in samples
                             if s.name == "agad_scorer_messages_dead_lettered_total"}}
