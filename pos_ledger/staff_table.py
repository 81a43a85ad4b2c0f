"""Adapter: staff accounts, back-office sessions and login failures in SQL tables (SQLite or PostgreSQL).

These rows are secrets (password hashes, session tokens) and personal data, so they
live beside the log, never in it. The same SQL runs on both databases; only the
placeholder differs. Session tokens are stored as their SHA-256, so a leaked table
does not hand out live sessions.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

from pos_ledger.errors import AlreadyExists
from pos_ledger.staff import Account, Session
from pos_ledger.storage import persistence_env

_CREATE: Final = (
    "CREATE TABLE IF NOT EXISTS staff_accounts ("
    "username TEXT NOT NULL, store_id TEXT NOT NULL, role TEXT NOT NULL, "
    "password_hash TEXT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (store_id, username))",
    "CREATE INDEX IF NOT EXISTS staff_accounts_username ON staff_accounts (username)",
    "CREATE TABLE IF NOT EXISTS staff_sessions ("
    "token_sha256 TEXT PRIMARY KEY, username TEXT NOT NULL, store_id TEXT, role TEXT NOT NULL, "
    "csrf_token TEXT NOT NULL, proof TEXT NOT NULL, created_at BIGINT NOT NULL, "
    "expires_at BIGINT NOT NULL, revoked_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS staff_sessions_user ON staff_sessions (store_id, username)",
    "CREATE TABLE IF NOT EXISTS staff_login_failures ("
    "key TEXT PRIMARY KEY, failures BIGINT NOT NULL, window_started_at BIGINT NOT NULL)",
)


class StaffTable:
    """The three tables; one short transaction per call."""

    def __init__(self, database: str) -> None:
        self.database = database
        env = persistence_env(database)
        self._postgres = env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
        self._p = "%s" if self._postgres else "?"
        self._pool: Any = None
        self._lock = threading.Lock()
        if self._postgres:
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(database, min_size=1, max_size=4, open=True, timeout=30)
        with self._cursor() as cursor:
            for statement in _CREATE:
                cursor.execute(statement)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        if self._pool is not None:
            with self._pool.connection() as connection, connection.cursor() as cursor:
                yield cursor
            return
        connection = sqlite3.connect(self.database, timeout=30, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            cursor = connection.cursor()
            try:
                yield cursor
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self._p)

    def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._cursor() as cursor:
            cursor.execute(self._sql(statement), params)
            return [tuple(row) for row in cursor.fetchall()]

    def _execute(self, statement: str, params: Sequence[Any]) -> int:
        with self._cursor() as cursor:
            cursor.execute(self._sql(statement), params)
            return int(cursor.rowcount)

    # ---- accounts ----

    def insert_account(self, account: Account) -> None:
        try:
            self._execute("INSERT INTO staff_accounts VALUES (?,?,?,?,?)",
                          (account.username, account.store_id, account.role, account.password_hash,
                           account.created_at))
        except Exception as error:
            if _is_unique_violation(error):
                raise AlreadyExists(f"store {account.store_id!r} has a staff member {account.username!r}") from None
            raise

    def delete_account(self, store_id: str, username: str) -> None:
        """The account goes and its sessions end (one transaction)."""
        with self._cursor() as cursor:
            cursor.execute(self._sql("DELETE FROM staff_accounts WHERE store_id = ? AND username = ?"),
                           (store_id, username))
            cursor.execute(self._sql("UPDATE staff_sessions SET revoked_at = created_at WHERE store_id = ? "
                                     "AND username = ? AND revoked_at IS NULL"), (store_id, username))

    def account(self, store_id: str, username: str) -> Account | None:
        rows = self._rows("SELECT username, store_id, role, password_hash, created_at FROM staff_accounts "
                          "WHERE store_id = ? AND username = ?", (store_id, username))
        return Account(*rows[0]) if rows else None

    def accounts_named(self, username: str, limit: int) -> list[Account]:
        """The accounts with this username, in any store (at most `limit`, by store)."""
        rows = self._rows("SELECT username, store_id, role, password_hash, created_at FROM staff_accounts "
                          "WHERE username = ? ORDER BY store_id LIMIT ?", (username, limit))
        return [Account(*row) for row in rows]

    def accounts(self, store_id: str) -> list[Account]:
        rows = self._rows("SELECT username, store_id, role, password_hash, created_at FROM staff_accounts "
                          "WHERE store_id = ? ORDER BY username", (store_id,))
        return [Account(*row) for row in rows]

    def update_password_hash(self, store_id: str, username: str, password_hash: str) -> None:
        self._execute("UPDATE staff_accounts SET password_hash = ? WHERE store_id = ? AND username = ?",
                      (password_hash, store_id, username))

    # ---- sessions ----

    def insert_session(self, token_sha256: str, session: Session, now: int) -> None:
        self._execute("INSERT INTO staff_sessions VALUES (?,?,?,?,?,?,?,?,NULL)",
                      (token_sha256, session.username, session.store_id, session.role, session.csrf_token,
                       session.proof, now, session.expires_at))

    def session(self, token_sha256: str, now: int) -> Session | None:
        """A live session: not revoked, not expired, and (for staff) its account still there."""
        rows = self._rows(
            "SELECT s.username, s.store_id, COALESCE(a.role, s.role), s.csrf_token, s.proof, s.expires_at, "
            "a.username FROM staff_sessions s LEFT JOIN staff_accounts a ON a.username = s.username "
            "AND s.store_id = a.store_id "
            "WHERE s.token_sha256 = ? AND s.revoked_at IS NULL AND s.expires_at > ?", (token_sha256, now))
        if not rows:
            return None
        username, store_id, role, csrf_token, proof, expires_at, account = rows[0]
        if store_id is not None and account is None:
            return None
        return Session(username, store_id, role, csrf_token, proof, int(expires_at))

    def revoke_session(self, token_sha256: str, now: int) -> None:
        self._execute("UPDATE staff_sessions SET revoked_at = ? WHERE token_sha256 = ? AND revoked_at IS NULL",
                      (now, token_sha256))

    def revoke_sessions_of(self, store_id: str, username: str, now: int) -> int:
        return self._execute("UPDATE staff_sessions SET revoked_at = ? WHERE store_id = ? AND username = ? "
                             "AND revoked_at IS NULL", (now, store_id, username))

    def purge_sessions(self, now: int) -> None:
        self._execute("DELETE FROM staff_sessions WHERE expires_at <= ?", (now,))

    # ---- failed logins (slow-down) ----

    def failures(self, key: str, window_s: int, now: int) -> tuple[int, int]:
        """(failures in the current window, when that window started)."""
        rows = self._rows("SELECT failures, window_started_at FROM staff_login_failures WHERE key = ?", (key,))
        if not rows or int(rows[0][1]) + window_s <= now:
            return 0, now
        return int(rows[0][0]), int(rows[0][1])

    def record_failure(self, key: str, window_s: int, now: int) -> int:
        """Count one more failure for `key` (a new window when the last one is over)."""
        with self._cursor() as cursor:
            cursor.execute(self._sql(
                "INSERT INTO staff_login_failures VALUES (?,1,?) ON CONFLICT (key) DO UPDATE SET "
                "failures = CASE WHEN staff_login_failures.window_started_at + ? <= ? THEN 1 "
                "ELSE staff_login_failures.failures + 1 END, "
                "window_started_at = CASE WHEN staff_login_failures.window_started_at + ? <= ? THEN ? "
                "ELSE staff_login_failures.window_started_at END"),
                (key, now, window_s, now, window_s, now, now))
            cursor.execute(self._sql("SELECT failures FROM staff_login_failures WHERE key = ?"), (key,))
            return int(cursor.fetchone()[0])

    def clear_failures(self, key: str) -> None:
        self._execute("DELETE FROM staff_login_failures WHERE key = ?", (key,))


def _is_unique_violation(error: Exception) -> bool:
    if isinstance(error, sqlite3.IntegrityError):
        return True
    return type(error).__name__ == "UniqueViolation"


__all__ = ["Account", "Session", "StaffTable"]
