"""The durable label store: SQLite (standard library), WAL with synchronous=FULL.

Two tables: ``confirmations`` is the history, one row per labels-topic message, unique
by its source (topic/partition/offset), so a message consumed again after a crash is
stored once; ``windows`` holds the latest label of each window id (the last one wins),
its values, the model version that flagged it, and its split; ``trusted_anomalies`` keeps
a copy of every confirmed anomaly a promoted version was built on, which a later label
cannot change (the gate's trusted set). A window's split
(``train`` or ``validation``) comes from a hash of its id and the store's fixed holdout
share, so the validation set never leaks into training, whatever the order of arrival.
The caller commits Kafka offsets only after `add` returned: the transaction is on disk.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.learning.labels import Confirmation

DEFAULT_HOLDOUT = 0.3
SPLITS = ("train", "validation")

SCHEMA = """
CREATE TABLE IF NOT EXISTS confirmations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL, stream TEXT, label INTEGER NOT NULL, labelled_by TEXT NOT NULL, at TEXT NOT NULL,
    model_version TEXT, source TEXT NOT NULL UNIQUE, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS windows (
    id TEXT PRIMARY KEY, stream TEXT, label INTEGER NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
    model_version TEXT, split TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trusted_anomalies (
    id TEXT PRIMARY KEY, shape TEXT NOT NULL, data BLOB NOT NULL, version INTEGER NOT NULL);
"""


def split_of(window_id: str, holdout: float) -> str:
    """'validation' for a fixed share `holdout` of ids (by hash), else 'train'."""
    fraction = int.from_bytes(hashlib.sha256(window_id.encode()).digest()[:8], "big") / 2**64
    return "validation" if fraction < holdout else "train"


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
                    " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (c.id, c.stream, c.label, c.labelled_by, c.at, c.model_version, source, now))
                if not cursor.rowcount:
                    continue
                added += 1
                values = np.ascontiguousarray(c.values, dtype="<f4")
                self.db.execute(
                    "INSERT INTO windows (id, stream, label, shape, data, model_version, split, seq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET stream = excluded.stream,"
                    " label = excluded.label, shape = excluded.shape, data = excluded.data,"
                    " model_version = COALESCE(excluded.model_version, windows.model_version), seq = excluded.seq",
                    (c.id, c.stream, c.label, ",".join(map(str, values.shape)), values.tobytes(), c.model_version,
                     split_of(c.id, self.holdout), cursor.lastrowid))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return added

    def windows(self, split: str) -> LabelledWindows:
        """The latest label of every window in `split`, with its values."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rows = self.db.execute("SELECT id, label, shape, data FROM windows WHERE split = ? ORDER BY seq",
                               (split,)).fetchall()
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
        rows = self.db.execute("SELECT label, labelled_by, at, model_version, source FROM confirmations"
                               " WHERE id = ? ORDER BY seq", (window_id,)).fetchall()
        return [dict(zip(("label", "labelled_by", "at", "model_version", "source"), row)) for row in rows]

    def model_version(self, window_id: str) -> str | None:
        row = self.db.execute("SELECT model_version FROM windows WHERE id = ?", (window_id,)).fetchone()
        return None if row is None else row[0]

    def counts(self) -> dict[str, int]:
        """Windows per split and label, confirmations received, and labels new since the last retrain."""
        counts = {f"{split}_{name}": 0 for split in SPLITS for name in ("anomalies", "false_alarms")}
        for split, label, n in self.db.execute("SELECT split, label, COUNT(*) FROM windows GROUP BY split, label"):
            counts[f"{split}_{'anomalies' if label else 'false_alarms'}"] = n
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
