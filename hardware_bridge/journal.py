"""The bridge's local SQLite journal: what to print, and what became of it.

A job is keyed by (log position, station, copy) and moves
    queued -> sent -> confirmed
or, when the connection broke after bytes left (or the bridge died while sending),
    sent -> unknown
An unknown job is flagged and never printed again by itself; `reprint` adds a new copy.
The follower writes a log entry's jobs and moves the cursor in one transaction, so a
restart neither skips an entry nor queues it twice. Jobs print in the order they were
queued (`id`); a queued job that cannot print yet holds back the ones after it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

#: Jobs waiting to print before the follower stops reading the log (the printer is off for long).
QUEUE_DEPTH_MAX: Final = 10_000
#: Reprints of one job.
COPIES_MAX: Final = 1_000
STATES: Final = ("queued", "sent", "confirmed", "unknown")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    position INTEGER NOT NULL,
    station TEXT NOT NULL,
    copy INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'confirmed', 'unknown')),
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    -- What the server still has to hear about this job: '', 'completed', 'unknown_outcome', 'printer_offline'.
    report TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (position, station, copy)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    position: int
    station: str
    copy: int
    kind: str
    payload: bytes
    state: str
    attempts: int
    error: str
    report: str


@dataclass(frozen=True, slots=True)
class NewJob:
    station: str
    kind: str
    payload: bytes
    copy: int = 1


class JournalError(Exception):
    pass


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # ---- meta ----

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._connection.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def cursor(self) -> int | None:
        """The last log position turned into jobs; None for an empty journal."""
        value = self.get("cursor")
        return None if value is None else int(value)

    def bind(self, store: str, printer: str) -> None:
        """A journal belongs to one store and printer: another would print the wrong log."""
        for key, value in (("store", store), ("printer", printer)):
            known = self.get(key)
            if known is None:
                self.put(key, value)
            elif known != value:
                raise JournalError(f"journal {self.path} belongs to {key} {known!r}, not {value!r}; use another --journal")

    # ---- follower ----

    def record(self, position: int, jobs: Sequence[NewJob]) -> None:
        """The jobs of the entry at `position` and the cursor, in one transaction."""
        now = time.time()
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                self._connection.executemany(
                    "INSERT OR IGNORE INTO jobs (position, station, copy, kind, payload, state, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                    [(position, j.station, j.copy, j.kind, j.payload, now, now) for j in jobs])
                self._connection.execute("INSERT INTO meta (key, value) VALUES ('cursor', ?) ON CONFLICT (key) "
                                         "DO UPDATE SET value = excluded.value", (str(position),))
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise

    def record_extra(self, position: int, jobs: Sequence[NewJob]) -> None:
        """Jobs asked for by hand (X/Z reports): queued like the log's, the cursor untouched."""
        now = time.time()
        with self._lock:
            self._connection.executemany(
                "INSERT OR IGNORE INTO jobs (position, station, copy, kind, payload, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                [(position, j.station, j.copy, j.kind, j.payload, now, now) for j in jobs])

    def start_at(self, position: int) -> None:
        with self._lock:
            self._connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('cursor', ?)", (str(position),))

    def queued_count(self) -> int:
        with self._lock:
            return int(self._connection.execute("SELECT count(*) FROM jobs WHERE state = 'queued'").fetchone()[0])

    # ---- printer worker ----

    def recover(self) -> int:
        """After a crash: a job left `sent` may have printed, so it becomes `unknown` (flagged)."""
        with self._lock:
            cursor = self._connection.execute(
                "UPDATE jobs SET state = 'unknown', report = 'unknown_outcome', updated_at = ?, "
                "error = 'the bridge stopped while the job was being sent' WHERE state = 'sent'", (time.time(),))
            return int(cursor.rowcount)

    def next_queued(self) -> Job | None:
        with self._lock:
            row = self._connection.execute(
                "SELECT id, position, station, copy, kind, payload, state, attempts, error, report FROM jobs "
                "WHERE state = 'queued' ORDER BY id LIMIT 1").fetchone()
        return None if row is None else Job(*row)

    def _move(self, job_id: int, state: str, expected: str, error: str = "", report: str | None = None) -> None:
        with self._lock:
            if report is None:
                cursor = self._connection.execute(
                    "UPDATE jobs SET state = ?, error = ?, updated_at = ? WHERE id = ? AND state = ?",
                    (state, error, time.time(), job_id, expected))
            else:
                cursor = self._connection.execute(
                    "UPDATE jobs SET state = ?, error = ?, report = ?, updated_at = ? WHERE id = ? AND state = ?",
                    (state, error, report, time.time(), job_id, expected))
            if cursor.rowcount != 1:
                raise JournalError(f"job {job_id} was not {expected}")

    def mark_sent(self, job_id: int) -> None:
        with self._lock:
            self._connection.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id = ?", (job_id,))
        self._move(job_id, "sent", "queued")

    def mark_confirmed(self, job_id: int) -> None:
        self._move(job_id, "confirmed", "sent", report="completed")

    def mark_unknown(self, job_id: int, error: str) -> None:
        self._move(job_id, "unknown", "sent", error[:500], report="unknown_outcome")

    def mark_offline(self, job_id: int, error: str) -> None:
        """The printer could not be reached for a queued job (nothing left): it stays queued; the
        first time it is reported `printer_offline` (once, not per retry)."""
        with self._lock:
            self._connection.execute(
                "UPDATE jobs SET attempts = attempts + 1, error = ?, updated_at = ?, "
                "report = CASE WHEN error = '' THEN 'printer_offline' ELSE report END "
                "WHERE id = ? AND state = 'queued'", (error[:500], time.time(), job_id))

    # ---- reprint ----

    def reprint(self, position: int, station: str | None = None, cursor: int | None = None) -> list[Job]:
        """Queue the next copy of the job(s) printed for `position`; the new jobs. With `cursor` (a
        reprint asked for in the log), the cursor moves in the same transaction: asked once, printed once."""
        from hardware_bridge.render import mark_reprint

        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                originals = self._connection.execute(
                    "SELECT station, kind, payload FROM jobs WHERE position = ? AND copy = 1 "
                    "AND (? IS NULL OR station = ?) ORDER BY id", (position, station, station)).fetchall()
                created = []
                now = time.time()
                for original_station, kind, payload in originals:
                    top = self._connection.execute("SELECT max(copy) FROM jobs WHERE position = ? AND station = ?",
                                                   (position, original_station)).fetchone()[0]
                    copy_number = int(top) + 1
                    if copy_number > COPIES_MAX:
                        raise JournalError(f"at most {COPIES_MAX - 1} reprints of a job")
                    inserted = self._connection.execute(
                        "INSERT INTO jobs (position, station, copy, kind, payload, state, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)",
                        (position, original_station, copy_number, kind, mark_reprint(payload, copy_number), now, now))
                    created.append(int(inserted.lastrowid or 0))
                if cursor is not None:
                    self._connection.execute("INSERT INTO meta (key, value) VALUES ('cursor', ?) ON CONFLICT (key) "
                                             "DO UPDATE SET value = excluded.value", (str(cursor),))
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
        return [job for job in self.jobs() if job.id in created]

    # ---- reporter and reads ----

    def to_report(self, limit: int = 100) -> list[Job]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT id, position, station, copy, kind, payload, state, attempts, error, report FROM jobs "
                "WHERE report != '' ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [Job(*row) for row in rows]

    def reported(self, job_id: int, report: str) -> None:
        with self._lock:
            self._connection.execute("UPDATE jobs SET report = '' WHERE id = ? AND report = ?", (job_id, report))

    def jobs(self) -> list[Job]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT id, position, station, copy, kind, payload, state, attempts, error, report FROM jobs "
                "ORDER BY id").fetchall()
        return [Job(*row) for row in rows]
