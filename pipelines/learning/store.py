"""The durable label store: SQLite (standard library), WAL with synchronous=FULL.

Two tables: ``confirmations`` is the history, one row per labels-topic message, unique
by its source (topic/partition/offset), so a message consumed again after a crash is
stored once; ``windows`` holds the latest label of each window id (the last one wins),
its values, the model version that flagged it, and its split; ``trusted_anomalies`` keeps
a copy of every confirmed anomaly a promoted version was built on, which a later label
cannot change (the gate's trusted set). A confirmation's optional ``anomaly_type`` and
``note`` are kept in both tables (columns added to a store made before them).

A window's split (``train`` or ``validation``) is drawn at each retrain by `gate_split`, by
stream and by time, never by id, so that the gate measures how a candidate does on windows
unlike those it was trained on: labels from one record must not be judged on their
neighbours from the same record. The share held out is the store's fixed holdout.
The caller commits Kafka offsets only after `add` returned: the transaction is on disk.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipelines.learning.labels import Confirmation

DEFAULT_HOLDOUT = 0.3
SPLITS = ("train", "validation")

SCHEMA = """
CREATE TABLE IF NOT EXISTS confirmations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL, stream TEXT, label INTEGER NOT NULL, labelled_by TEXT NOT NULL, at TEXT NOT NULL,
    model_version TEXT, source TEXT NOT NULL UNIQUE, received_at REAL NOT NULL, anomaly_type TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS windows (
    id TEXT PRIMARY KEY, stream TEXT, label INTEGER NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
    model_version TEXT, seq INTEGER NOT NULL, anomaly_type TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trusted_anomalies (
    id TEXT PRIMARY KEY, shape TEXT NOT NULL, data BLOB NOT NULL, version INTEGER NOT NULL);
"""
#: nullable columns added after the first stores were made: (table, column) added when missing
ADDED_COLUMNS = [(table, column) for table in ("confirmations", "windows") for column in ("anomaly_type", "note")]
#: columns of older stores that are no longer used: (table, column) dropped when present
DROPPED_COLUMNS = [("windows", "split")]  # the split by a hash of the id, before `gate_split`
#: the stream of windows whose confirmation named none (nor a Kafka key)
UNNAMED_STREAM = ""


@dataclass
class GateSplit:
    """Which labelled windows the gate holds out, and by which rule (see `gate_split`)."""

    #: "stream" (whole streams held out) or "time" (the newest confirmations held out)
    by: str
    #: window id -> "train" or "validation"
    split: dict[str, str] = field(repr=False)
    validation_streams: list[str] = field(default_factory=list)
    #: by="time": when the oldest held-out window was confirmed (seconds since the epoch)
    validation_since: float | None = None

    def describe(self) -> dict:
        """For the registry log: the rule and what it held out."""
        held_out = {"validation_streams": self.validation_streams} if self.by == "stream" else {
            "validation_since": None if self.validation_since is None else
            datetime.fromtimestamp(self.validation_since, timezone.utc).isoformat().replace("+00:00", "Z")}
        sizes = {f"{name}_windows": sum(s == name for s in self.split.values()) for name in SPLITS}
        return {"by": self.by, **held_out, **sizes}


def stream_order(stream: str) -> int:
    """A stream's fixed place in the order in which streams are held out (a hash of its name)."""
    return int.from_bytes(hashlib.sha256(stream.encode()).digest()[:8], "big")


def held_out_streams(windows_per_stream: dict[str, int], holdout: float) -> list[str]:
    """The streams the gate holds out (of two or more): the first ones in `stream_order`, as many
    as bring the held-out share of windows closest to `holdout`, keeping at least one stream on
    each side."""
    ordered = sorted(windows_per_stream, key=stream_order)
    total = sum(windows_per_stream.values())
    shares = np.cumsum([windows_per_stream[s] for s in ordered[:-1]]) / total
    return ordered[:1 + int(np.argmin(np.abs(shares - holdout)))]


def gate_split(ids: list[str], streams: list[str], instants: list[float], holdout: float) -> GateSplit:
    """The gate's split of labelled windows, given each one's id, stream and time of confirmation:

    - windows from two or more streams: whole streams are held out (`held_out_streams`), so
      the gate judges a candidate on records it was not trained on;
    - one stream: the newest share `holdout` of its windows (by time of confirmation, ties in
      the order given) is held out, so the gate judges a candidate on what came after its
      training labels. At least one window stays on each side when there are two or more.
    """
    if len(set(streams)) >= 2:
        held_out = held_out_streams(Counter(streams), holdout)
        return GateSplit("stream", {i: "validation" if s in held_out else "train" for i, s in zip(ids, streams)},
                         validation_streams=sorted(held_out))
    n = len(ids)
    n_validation = n if n < 2 else min(n - 1, max(1, int(holdout * n + 0.5)))
    newest_first = sorted(range(n), key=lambda k: (instants[k], k), reverse=True)[:n_validation]
    held_out = {ids[k] for k in newest_first}
    return GateSplit("time", {i: "validation" if i in held_out else "train" for i in ids},
                     validation_since=min((instants[k] for k in newest_first), default=None))


def confirmation_instant(at: str, received_at: float) -> float:
    """Seconds since the epoch of a confirmation's `at` (ISO 8601, UTC when it names no zone);
    the time it was stored when `at` does not parse."""
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return received_at
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


@dataclass
class LabelledWindows:
    X: np.ndarray
    y: np.ndarray
    ids: list[str]
    #: the newest confirmation included: labels after it are "new" for the next retrain
    upto_seq: int


class LabelStore:
    def __init__(self, path: str | Path, holdout: float | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            problems = [row[0] for row in self.db.execute("PRAGMA quick_check")]  # a damaged page shows here, not later
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:3]))
            self.db.executescript(SCHEMA)
            self._migrate_columns()
        except sqlite3.DatabaseError as error:
            self.db.close()
            if isinstance(error, sqlite3.OperationalError):  # locked, read-only, disk full: not the file's content
                raise
            raise ValueError(f"label store {self.path} is corrupt ({error}): move it aside, with its -wal and -shm "
                             "files, and run retrain again; the new store re-reads the labels topic only with a new "
                             "--group (or the group's offsets reset to the earliest)") from None
        stored = self._state("holdout")
        if stored is None:
            holdout = DEFAULT_HOLDOUT if holdout is None else holdout
            if not 0 < holdout < 1:
                raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
            self.db.execute("INSERT INTO state VALUES ('holdout', ?)", (repr(holdout),))
        elif holdout is not None and float(stored) != holdout:
            raise ValueError(f"label store {self.path} was created with holdout {stored}, not {holdout}: "
                             "the validation split must stay fixed")
        self.holdout = float(self._state("holdout"))

    def close(self) -> None:
        self.db.close()

    def _migrate_columns(self) -> None:
        """Migrate a store made before ADDED_COLUMNS existed (its rows get NULL there) or while
        DROPPED_COLUMNS were used."""
        for table, column in ADDED_COLUMNS:
            if column not in self._columns(table):
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
        for table, column in DROPPED_COLUMNS:
            if column in self._columns(table):
                self.db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}

    def _state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def add(self, confirmations: list[tuple[Confirmation, str]]) -> int:
        """Store (confirmation, source) pairs in one durable transaction; returns how many were
        new (a source already stored, i.e. a message consumed twice, is skipped)."""
        added = 0
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for c, source in confirmations:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO confirmations (id, stream, label, labelled_by, at, model_version, source,"
                    " received_at, anomaly_type, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (c.id, c.stream, c.label, c.labelled_by, c.at, c.model_version, source, now, c.anomaly_type,
                     c.note))
                if not cursor.rowcount:
                    continue
                added += 1
                values = np.ascontiguousarray(c.values, dtype="<f4")
                self.db.execute(
                    "INSERT INTO windows (id, stream, label, shape, data, model_version, seq, anomaly_type, note)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET stream = excluded.stream,"
                    " label = excluded.label, shape = excluded.shape, data = excluded.data,"
                    " model_version = COALESCE(excluded.model_version, windows.model_version), seq = excluded.seq,"
                    " anomaly_type = excluded.anomaly_type, note = excluded.note",
                    (c.id, c.stream, c.label, ",".join(map(str, values.shape)), values.tobytes(), c.model_version,
                     cursor.lastrowid, c.anomaly_type, c.note))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return added

    def gate_split(self) -> GateSplit:
        """`gate_split` of every labelled window now: its stream (UNNAMED_STREAM when none) and the
        time of its latest confirmation."""
        rows = self.db.execute("SELECT w.id, w.stream, c.at, c.received_at FROM windows w"
                               " JOIN confirmations c ON c.seq = w.seq ORDER BY w.seq").fetchall()
        return gate_split([r[0] for r in rows], [UNNAMED_STREAM if r[1] is None else r[1] for r in rows],
                          [confirmation_instant(at, received) for _, _, at, received in rows], self.holdout)

    def windows(self, split: str, gate: GateSplit | None = None) -> LabelledWindows:
        """The latest label of every window in `split` of `gate` (by default the gate's split now),
        with its values."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        chosen = (gate or self.gate_split()).split
        rows = [r for r in self.db.execute("SELECT id, label, shape, data FROM windows ORDER BY seq")
                if chosen.get(r[0]) == split]
        upto = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM confirmations").fetchone()[0]
        return LabelledWindows(_stack(rows), np.array([r[1] for r in rows], np.int8), [r[0] for r in rows], upto)

    def new_windows(self) -> LabelledWindows:
        """The latest label of every window labelled since the last retrain, both splits."""
        rows = self.db.execute("SELECT id, label, shape, data FROM windows WHERE seq > ? ORDER BY seq",
                               (self.trained_upto,)).fetchall()
        return LabelledWindows(_stack(rows), np.array([r[1] for r in rows], np.int8), [r[0] for r in rows],
                               self.trained_upto)

    def trust_anomalies(self, upto_seq: int, version: int) -> int:
        """Copy the confirmed anomalies up to `upto_seq` into the trusted set (a promoted version
        was built on them); returns how many were new to it."""
        cursor = self.db.execute("INSERT OR IGNORE INTO trusted_anomalies SELECT id, shape, data, ? FROM windows"
                                 " WHERE label = 1 AND seq <= ?", (version, upto_seq))
        return cursor.rowcount

    def trusted_anomalies(self) -> np.ndarray:
        return _stack(self.db.execute("SELECT id, 1, shape, data FROM trusted_anomalies ORDER BY id").fetchall())

    def windows_labelled_both_ways(self) -> int:
        """Windows whose confirmations disagree (an anomaly and a false alarm, in any order)."""
        return self.db.execute("SELECT COUNT(*) FROM (SELECT id FROM confirmations GROUP BY id"
                               " HAVING COUNT(DISTINCT label) > 1)").fetchone()[0]

    def history(self, window_id: str) -> list[dict]:
        names = ("label", "labelled_by", "at", "model_version", "source", "anomaly_type", "note")
        rows = self.db.execute(f"SELECT {', '.join(names)} FROM confirmations WHERE id = ? ORDER BY seq",
                               (window_id,)).fetchall()
        return [dict(zip(names, row)) for row in rows]

    def model_version(self, window_id: str) -> str | None:
        row = self.db.execute("SELECT model_version FROM windows WHERE id = ?", (window_id,)).fetchone()
        return None if row is None else row[0]

    def counts(self) -> dict[str, int]:
        """Windows per split of the gate (now) and label, confirmations received, and labels new
        since the last retrain."""
        counts = {f"{split}_{name}": 0 for split in SPLITS for name in ("anomalies", "false_alarms")}
        split = self.gate_split().split
        for window_id, label in self.db.execute("SELECT id, label FROM windows"):
            counts[f"{split[window_id]}_{'anomalies' if label else 'false_alarms'}"] += 1
        counts["confirmations"] = self.db.execute("SELECT COUNT(*) FROM confirmations").fetchone()[0]
        counts["new"] = self.db.execute("SELECT COUNT(*) FROM windows WHERE seq > ?", (self.trained_upto,)).fetchone()[0]
        return counts

    @property
    def trained_upto(self) -> int:
        return int(self._state("trained_upto") or 0)

    def mark_trained(self, upto_seq: int) -> None:
        """Labels up to `upto_seq` were used by a retrain (whatever the gate decided)."""
        self.db.execute("INSERT INTO state VALUES ('trained_upto', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        (str(upto_seq),))


def _stack(rows) -> np.ndarray:
    """The windows of (id, label, shape, data) rows as one array (empty when there are none)."""
    X = [np.frombuffer(data, "<f4").reshape([int(n) for n in shape.split(",")]) for _, _, shape, data in rows]
    return np.stack(X) if X else np.empty((0,), np.float32)
