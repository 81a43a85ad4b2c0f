"""The open platform's tables, in the ledger's own database (SQLite or PostgreSQL).

* `platform_apps`: the app registry (an app belongs to no store, so no store's log holds it).
* `platform_installations`: one row per install (a client id): the client secret's argon2
  hash, the webhook secret (and the previous one during a rotation), the webhook cursor
  (the last log position dealt with) and the endpoint's health. Uninstalling clears
  `active`: every token of that client id stops working, deliveries stop.
* `platform_deliveries`: one row per (install, position) the dispatcher tried: attempts,
  last answer, when the next try is due, when it was acknowledged.

The webhook queue is nothing but these rows and the log: the next message of an
install is the first event after its cursor that its scopes and types select.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from pos_ledger.errors import AlreadyExists

_TABLES: Final = (
    "CREATE TABLE IF NOT EXISTS platform_apps (app_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "scopes TEXT NOT NULL, webhook_url TEXT, event_types TEXT NOT NULL, registered_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS platform_installations (client_id TEXT PRIMARY KEY, store_id TEXT NOT NULL, "
    "app_id TEXT NOT NULL, secret_hash TEXT NOT NULL, webhook_secret TEXT NOT NULL, "
    "previous_webhook_secret TEXT NOT NULL DEFAULT '', previous_valid_until DOUBLE PRECISION NOT NULL DEFAULT 0, "
    "scopes TEXT NOT NULL, event_types TEXT NOT NULL, webhook_url TEXT, installed_position BIGINT NOT NULL, "
    "cursor BIGINT NOT NULL, active INTEGER NOT NULL, webhook_enabled INTEGER NOT NULL, "
    "disabled_reason TEXT NOT NULL DEFAULT '', failing_since DOUBLE PRECISION, created_at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS platform_installations_store ON platform_installations (store_id, app_id)",
    "CREATE TABLE IF NOT EXISTS platform_deliveries (client_id TEXT NOT NULL, position BIGINT NOT NULL, "
    "store_id TEXT NOT NULL, app_id TEXT NOT NULL, event_type TEXT NOT NULL, message_id TEXT NOT NULL, "
    "status TEXT NOT NULL, attempts INTEGER NOT NULL, last_status INTEGER, last_error TEXT NOT NULL DEFAULT '', "
    "first_attempt_at DOUBLE PRECISION NOT NULL, last_attempt_at DOUBLE PRECISION NOT NULL, "
    "next_attempt_at DOUBLE PRECISION, delivered_at DOUBLE PRECISION, PRIMARY KEY (client_id, position))",
    "CREATE TABLE IF NOT EXISTS platform_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
    "expires_at DOUBLE PRECISION NOT NULL)",
)
_INSTALLATION_COLUMNS: Final = (
    "client_id, store_id, app_id, secret_hash, webhook_secret, previous_webhook_secret, previous_valid_until, "
    "scopes, event_types, webhook_url, installed_position, cursor, active, webhook_enabled, disabled_reason, "
    "failing_since, created_at")
_DELIVERY_COLUMNS: Final = (
    "client_id, position, store_id, app_id, event_type, message_id, status, attempts, last_status, last_error, "
    "first_attempt_at, last_attempt_at, next_attempt_at, delivered_at")
_UPSERT_DELIVERY: Final = (
    f"INSERT INTO platform_deliveries ({_DELIVERY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (client_id, position) DO UPDATE SET status = excluded.status, "
    "attempts = platform_deliveries.attempts + 1, last_status = excluded.last_status, "
    "last_error = excluded.last_error, last_attempt_at = excluded.last_attempt_at, "
    "next_attempt_at = excluded.next_attempt_at, delivered_at = excluded.delivered_at")
DELIVERIES_READ_MAX: Final = 1_000


@dataclass(frozen=True, slots=True)
class AppRecord:
    app_id: str
    name: str
    scopes: list[str]
    webhook_url: str | None
    event_types: list[str]
    registered_at: float


@dataclass(frozen=True, slots=True)
class InstallationRecord:
    client_id: str
    store_id: str
    app_id: str
    secret_hash: str
    webhook_secret: str
    previous_webhook_secret: str
    previous_valid_until: float
    scopes: list[str]
    event_types: list[str]
    webhook_url: str | None
    installed_position: int
    cursor: int
    active: bool
    webhook_enabled: bool
    disabled_reason: str
    failing_since: float | None
    created_at: float

    def signing_secrets(self, now: float) -> list[str]:
        """The secrets a message is signed with now: the current one, and the previous during its grace."""
        if self.previous_webhook_secret and now < self.previous_valid_until:
            return [self.webhook_secret, self.previous_webhook_secret]
        return [self.webhook_secret]


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    client_id: str
    position: int
    store_id: str
    app_id: str
    event_type: str
    message_id: str
    #: pending (to retry at next_attempt_at), delivered, failed (the schedule was spent).
    status: str
    attempts: int
    last_status: int | None
    last_error: str
    first_attempt_at: float
    last_attempt_at: float
    next_attempt_at: float | None
    delivered_at: float | None


def _installation(row: Sequence[Any]) -> InstallationRecord:
    return InstallationRecord(
        row[0], row[1], row[2], row[3], row[4], row[5], float(row[6]), json.loads(row[7]), json.loads(row[8]),
        row[9], int(row[10]), int(row[11]), bool(row[12]), bool(row[13]), row[14],
        float(row[15]) if row[15] is not None else None, float(row[16]))


def _delivery(row: Sequence[Any]) -> DeliveryRecord:
    return DeliveryRecord(row[0], int(row[1]), row[2], row[3], row[4], row[5], row[6], int(row[7]),
                          int(row[8]) if row[8] is not None else None, row[9], float(row[10]), float(row[11]),
                          float(row[12]) if row[12] is not None else None,
                          float(row[13]) if row[13] is not None else None)


class PlatformTables:
    """Two connections, each used under its lock: one writes (the dispatcher's group commits, installs),
    one reads (every app request looks its install up), so a write waiting for the database's write
    lock never holds up a read."""

    def __init__(self, database: str) -> None:
        self._lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._connection: Any
        self._reader: Any
        self._postgres = database.startswith(("postgresql://", "postgres://"))
        self._connection, self._reader = self._connect(database), self._connect(database)
        for statement in _TABLES:
            self._execute(statement)

    def _connect(self, database: str) -> Any:
        if self._postgres:
            import psycopg

            return psycopg.connect(database, autocommit=True)
        return sqlite3.connect(database, timeout=30, isolation_level=None, check_same_thread=False)

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._connection.close()
            self._reader.close()

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._postgres:
            statement = statement.replace("?", "%s")
        # No SELECT runs inside a transaction here, so reads may take the other connection.
        reading = statement.startswith("SELECT")
        lock, connection = (self._read_lock, self._reader) if reading else (self._lock, self._connection)
        with lock:
            cursor = connection.execute(statement, tuple(params))
            if cursor.description is None:
                return [cursor.rowcount]
            return list(cursor.fetchall())

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            if self._postgres:
                with self._connection.transaction():
                    yield
                return
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    # ---- apps ----

    def register_app(self, app: AppRecord) -> None:
        inserted = self._execute(
            "INSERT INTO platform_apps VALUES (?,?,?,?,?,?) ON CONFLICT (app_id) DO NOTHING",
            (app.app_id, app.name, json.dumps(app.scopes), app.webhook_url, json.dumps(app.event_types),
             app.registered_at))
        if inserted != [1]:
            raise AlreadyExists(f"app {app.app_id!r} is already registered")

    def app(self, app_id: str) -> AppRecord | None:
        rows = self._execute("SELECT app_id, name, scopes, webhook_url, event_types, registered_at "
                             "FROM platform_apps WHERE app_id = ?", (app_id,))
        if not rows:
            return None
        row = rows[0]
        return AppRecord(row[0], row[1], json.loads(row[2]), row[3], json.loads(row[4]), float(row[5]))

    def apps(self) -> list[AppRecord]:
        rows = self._execute("SELECT app_id FROM platform_apps ORDER BY app_id")
        return [app for row in rows if (app := self.app(row[0])) is not None]

    # ---- installations ----

    def add_installation(self, record: InstallationRecord) -> None:
        with self._transaction():
            # A store has one active install of an app; an older inactive row stays as history.
            self._execute("UPDATE platform_installations SET active = 0 WHERE store_id = ? AND app_id = ?",
                          (record.store_id, record.app_id))
            self._execute(
                f"INSERT INTO platform_installations ({_INSTALLATION_COLUMNS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.client_id, record.store_id, record.app_id, record.secret_hash, record.webhook_secret,
                 record.previous_webhook_secret, record.previous_valid_until, json.dumps(record.scopes),
                 json.dumps(record.event_types), record.webhook_url, record.installed_position, record.cursor,
                 int(record.active), int(record.webhook_enabled), record.disabled_reason, record.failing_since,
                 record.created_at))

    def _installations(self, where: str, params: Sequence[Any]) -> list[InstallationRecord]:
        rows = self._execute(f"SELECT {_INSTALLATION_COLUMNS} FROM platform_installations WHERE {where} "
                             "ORDER BY store_id, app_id", params)
        return [_installation(row) for row in rows]

    def installation_by_client(self, client_id: str) -> InstallationRecord | None:
        found = self._installations("client_id = ?", (client_id,))
        return found[0] if found else None

    def installation(self, store_id: str, app_id: str) -> InstallationRecord | None:
        found = self._installations("store_id = ? AND app_id = ? AND active = 1", (store_id, app_id))
        return found[0] if found else None

    def installations(self, store_id: str) -> list[InstallationRecord]:
        return self._installations("store_id = ? AND active = 1", (store_id,))

    def webhook_installations(self) -> list[InstallationRecord]:
        """Active installs with an enabled endpoint: the dispatcher's lanes."""
        return self._installations("active = 1 AND webhook_enabled = 1 AND webhook_url IS NOT NULL", ())

    def deactivate(self, client_id: str) -> None:
        self._execute("UPDATE platform_installations SET active = 0 WHERE client_id = ?", (client_id,))

    def set_client_secret(self, client_id: str, secret_hash: str) -> None:
        self._execute("UPDATE platform_installations SET secret_hash = ? WHERE client_id = ?",
                      (secret_hash, client_id))

    def set_webhook_secret(self, client_id: str, secret: str, previous: str, previous_valid_until: float) -> None:
        self._execute("UPDATE platform_installations SET webhook_secret = ?, previous_webhook_secret = ?, "
                      "previous_valid_until = ? WHERE client_id = ?",
                      (secret, previous, previous_valid_until, client_id))

    def disable_webhook(self, client_id: str, reason: str) -> None:
        self._execute("UPDATE platform_installations SET webhook_enabled = 0, disabled_reason = ? "
                      "WHERE client_id = ?", (reason, client_id))

    def set_failing_since(self, client_id: str, since: float | None) -> None:
        self._execute("UPDATE platform_installations SET failing_since = ? WHERE client_id = ?", (since, client_id))

    def replay(self, client_id: str, from_position: int) -> None:
        """Deliver again from `from_position` (inclusive): the endpoint is enabled again."""
        with self._transaction():
            self._execute("UPDATE platform_installations SET cursor = ?, webhook_enabled = 1, disabled_reason = '', "
                          "failing_since = NULL WHERE client_id = ?", (from_position - 1, client_id))
            self._execute("UPDATE platform_deliveries SET status = 'pending', next_attempt_at = 0 "
                          "WHERE client_id = ? AND position >= ?", (client_id, from_position))

    # ---- deliveries ----

    def record_attempts(self, attempts: Sequence[DeliveryRecord], cursors: dict[str, int]) -> None:
        """Many lanes' attempts and cursors in one transaction (group commit); a cursor never moves back."""
        if not attempts and not cursors:
            return
        with self._transaction():
            for d in attempts:
                self._execute(_UPSERT_DELIVERY, (
                    d.client_id, d.position, d.store_id, d.app_id, d.event_type, d.message_id, d.status,
                    d.attempts, d.last_status, d.last_error, d.first_attempt_at, d.last_attempt_at,
                    d.next_attempt_at, d.delivered_at))
            for client_id, cursor in cursors.items():
                self._execute("UPDATE platform_installations SET cursor = ? WHERE client_id = ? AND cursor < ?",
                              (cursor, client_id, cursor))

    def advance_cursor(self, client_id: str, cursor: int) -> None:
        self._execute("UPDATE platform_installations SET cursor = ? WHERE client_id = ? AND cursor < ?",
                      (cursor, client_id, cursor))

    def delivery(self, client_id: str, position: int) -> DeliveryRecord | None:
        rows = self._execute(f"SELECT {_DELIVERY_COLUMNS} FROM platform_deliveries "
                             "WHERE client_id = ? AND position = ?", (client_id, position))
        return _delivery(rows[0]) if rows else None

    def deliveries(self, store_id: str, app_id: str | None, after: int, limit: int) -> list[DeliveryRecord]:
        limit = min(limit, DELIVERIES_READ_MAX)
        where, params = "store_id = ? AND position > ?", [store_id, after]
        if app_id is not None:
            where += " AND app_id = ?"
            params.append(app_id)
        rows = self._execute(f"SELECT {_DELIVERY_COLUMNS} FROM platform_deliveries WHERE {where} "
                             "ORDER BY position, app_id, client_id LIMIT ?", (*params, limit))
        return [_delivery(row) for row in rows]


    # ---- the dispatcher's lease: one process on a database delivers ----

    def hold_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease; False while another holder's is still running."""
        now = time.time()
        self._execute(
            "INSERT INTO platform_leases VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "holder = excluded.holder, expires_at = excluded.expires_at "
            "WHERE platform_leases.holder = excluded.holder OR platform_leases.expires_at < ?",
            (name, holder, now + ttl_s, now))
        rows = self._execute("SELECT holder FROM platform_leases WHERE name = ?", (name,))
        return bool(rows) and rows[0][0] == holder

    def release_lease(self, name: str, holder: str) -> None:
        self._execute("UPDATE platform_leases SET expires_at = 0 WHERE name = ? AND holder = ?", (name, holder))
