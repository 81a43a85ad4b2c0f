"""The nonces terminals' request signatures carried: a signed command runs once.

A table (`pos_signature_nonces`) in the ledger's own database, so the memory
survives a restart and every server process on that database shares it. A
nonce is (store, terminal, nonce), unique; a second insert finds the row and
the request is a replay. A signature is only accepted while its `created` is
within `httpsig.CREATED_SKEW_S_MAX` of now, so a row whose `created` is older
than that can never match again: rows are pruned past it (every
`PRUNE_EVERY` inserts), and the table holds at most a window's worth of
signed requests.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any, Final

from pos_ledger.httpsig import CREATED_SKEW_S_MAX

PRUNE_EVERY: Final = 1_000
_TABLE: Final = ("CREATE TABLE IF NOT EXISTS pos_signature_nonces (store_id TEXT NOT NULL, terminal_id TEXT NOT NULL, "
                 "nonce TEXT NOT NULL, created BIGINT NOT NULL, PRIMARY KEY (store_id, terminal_id, nonce))")
_INDEX: Final = "CREATE INDEX IF NOT EXISTS pos_signature_nonces_created ON pos_signature_nonces (created)"


class NonceTable:
    """One connection, used under a lock (each statement is one tiny insert)."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._lock = threading.Lock()
        self._inserts = 0
        #: Opened on first use: a server no terminal signs to holds no extra database connection.
        self._connection: Any = None
        self._mark = "?"

    def _connect(self) -> Any:
        connection: Any
        if self._database.startswith(("postgresql://", "postgres://")):
            import psycopg

            connection = psycopg.connect(self._database, autocommit=True)
            # The insert need not wait for its WAL flush (the command it guards does): only a crash of
            # PostgreSQL itself in that fraction of a second forgets a nonce, as SQLite's NORMAL below.
            connection.execute("SET synchronous_commit TO off")
            self._mark = "%s"
        else:
            connection = sqlite3.connect(self._database, timeout=30, isolation_level=None, check_same_thread=False)
            # WAL keeps the insert off the ledger's writers; NORMAL syncs at checkpoints (a process
            # crash loses nothing; the window is 60 s either way).
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(_TABLE)
        connection.execute(_INDEX)
        return connection

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _execute(self, statement: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            if self._connection is None:
                self._connection = self._connect()
            cursor = self._connection.execute(statement.replace("?", self._mark), params)
            return int(cursor.rowcount)

    def first_use(self, store_id: str, terminal_id: str, nonce: str, created: int) -> bool:
        """Records the nonce; False when the terminal used it before (a replay)."""
        self._inserts += 1
        if self._inserts % PRUNE_EVERY == 0:
            self.prune(int(time.time()))
        inserted = self._execute(
            "INSERT INTO pos_signature_nonces VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (store_id, terminal_id, nonce, created))
        return inserted == 1

    def count(self) -> int:
        """Nonces remembered now (at most a window's worth of signed requests)."""
        with self._lock:
            if self._connection is None:
                self._connection = self._connect()
            row = self._connection.execute("SELECT COUNT(*) FROM pos_signature_nonces").fetchone()
        return int(row[0])

    def prune(self, now_s: int) -> int:
        """Forgets nonces whose signatures are too old to be accepted again; how many."""
        return self._execute("DELETE FROM pos_signature_nonces WHERE created < ?", (now_s - CREATED_SKEW_S_MAX - 1,))
