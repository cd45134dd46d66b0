"""Logins, sessions, CSRF tokens and the label rate limit of the review console (no web framework here).

Users come from a TOML file with bcrypt hashes (``agad-stream console --hash-password``
makes one)::

    [users.alice]
    password = "$2b$12$..."
    role = "admin"          # or "reviewer"

or from one bearer token in an environment variable (that login gets the admin role).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

ROLES = ("reviewer", "admin")
SESSION_TTL_S = 12 * 3600
#: bcrypt reads at most this many bytes of a password (bcrypt 5 refuses longer ones with a ValueError)
MAX_PASSWORD_BYTES = 72


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class PasswordTooLong(ValueError):
    """A password over bcrypt's 72 bytes: refused rather than truncated, so all of it counts."""

    def __init__(self, password: str):
        super().__init__(f"the password is {len(password.encode())} bytes in UTF-8; console passwords may be at most "
                         f"{MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")


def check_password_length(password: str) -> None:
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong(password)


def hash_password(password: str) -> str:
    check_password_length(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def load_users(path: str | Path) -> dict[str, tuple[str, str]]:
    """name -> (bcrypt hash, role) from the users file; a malformed entry is a ValueError naming it."""
    with open(path, "rb") as file:
        users = tomllib.load(file).get("users")
    if not isinstance(users, dict) or not users:
        raise ValueError(f"{path}: no [users.NAME] tables")
    table = {}
    for name, entry in users.items():
        password, role = (entry.get("password"), entry.get("role")) if isinstance(entry, dict) else (None, None)
        if role not in ROLES:
            raise ValueError(f"{path}: user {name!r} needs role = one of {ROLES}, got {role!r}")
        if not (isinstance(password, str) and password.startswith("$2")):
            raise ValueError(f"{path}: user {name!r} needs password = a bcrypt hash "
                             "(agad-stream console --hash-password)")
        table[name] = (password, role)
    return table


class Authenticator:
    """Checks a password or the bearer token; None means refused."""

    def __init__(self, users: dict[str, tuple[str, str]] | None = None, token: str | None = None,
                 token_user: str = "token-admin"):
        if not users and not token:
            raise ValueError("the console needs credentials: --users FILE, or a bearer token in the environment "
                             "variable named by --token-env")
        self.users = users or {}
        self.token = token
        self.token_user = User(token_user, "admin")
        self._dummy_hash = hash_password(secrets.token_hex(8))  # same bcrypt cost for unknown names

    def password(self, name: str, password: str) -> User | None:
        """Raises PasswordTooLong before any hash is checked: no stored password can be that long."""
        check_password_length(password)
        stored, role = self.users.get(name, (self._dummy_hash, None))
        if bcrypt.checkpw(password.encode(), stored.encode()) and role is not None:
            return User(name, role)
        return None

    def bearer(self, token: str) -> User | None:
        if self.token and hmac.compare_digest(token.encode(), self.token.encode()):
            return self.token_user
        return None


@dataclass
class Session:
    user: User
    csrf: str
    expires: float


class Sessions:
    """Random session ids -> (user, CSRF token), in memory: a restart logs everyone out."""

    def __init__(self, ttl_s: float = SESSION_TTL_S):
        self.ttl_s = ttl_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: User) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(32), time.monotonic() + self.ttl_s)
        with self._lock:
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > time.monotonic()}
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        with self._lock:
            session = self._sessions.get(sid or "")
        return session if session and session.expires > time.monotonic() else None

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), session.csrf.encode())


@dataclass
class RateLimiter:
    """A token bucket per user: `rate` actions per second on average, bursts up to `burst`."""

    rate: float
    burst: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
        return allowed


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, allow_remote: bool) -> None:
    """Only loopback addresses unless --allow-remote (credentials are always required)."""
    if not is_loopback(host) and not allow_remote:
        raise ValueError(f"--host {host} is reachable from other machines: add --allow-remote (and serve it behind "
                         "HTTPS: session cookies are Secure off loopback)")
