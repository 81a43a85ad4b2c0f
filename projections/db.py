"""The read models' database: the ledger's own SQLite file or PostgreSQL database.

One small adapter so the projections and reports write the same SQL for both:
statements use `?` placeholders (turned into `%s` for psycopg), `ON CONFLICT ...
DO UPDATE` upserts and `CASE` instead of engine-specific functions. A write is one
transaction (`BEGIN IMMEDIATE` on SQLite, so writers queue instead of failing
half-way); a read is one snapshot (a deferred SQLite transaction in WAL mode, a
REPEATABLE READ transaction on PostgreSQL), so a report's rows and its
`as_of_position` always agree.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

#: Seconds a SQLite writer waits for the file lock (the ledger's ingest writes the same file).
SQLITE_BUSY_TIMEOUT_S: Final = 30.0
#: PostgreSQL connections kept by one process for the read models.
PG_POOL_SIZE_MAX: Final = 8


def is_postgres(database: str) -> bool:
    return database.startswith(("postgresql://", "postgres://"))


class Sql:
    """A cursor that speaks `?` placeholders on both engines."""

    def __init__(self, cursor: Any, postgres: bool) -> None:
        self.cursor = cursor
        self.postgres = postgres

    def _text(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Sql:
        self.cursor.execute(self._text(statement), tuple(params))
        return self

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cursor.executemany(self._text(statement), [tuple(r) for r in rows])

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.cursor.fetchall()]

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self.cursor.fetchone()
        return None if row is None else tuple(row)

    @property
    def rowcount(self) -> int:
        return int(self.cursor.rowcount)


class ReadDatabase:
    """Connections to the read models' database (thread-safe)."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.postgres = is_postgres(database)
        self._local = threading.local()
        self._sqlite_connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._pool: Any = None
        if self.postgres:
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(database, min_size=1, max_size=PG_POOL_SIZE_MAX, open=True,
                                        kwargs={"autocommit": True})

    def _sqlite(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.database, timeout=SQLITE_BUSY_TIMEOUT_S,
                                         isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
            with self._guard:
                self._sqlite_connections.append(connection)
        return connection

    @contextmanager
    def write(self) -> Iterator[Sql]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        if self.postgres:
            with self._pool.connection() as connection, connection.transaction():
                yield Sql(connection.cursor(), True)
            return
        connection = self._sqlite()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield Sql(connection.cursor(), False)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Sql]:
        """One consistent snapshot for every query in the block."""
        if self.postgres:
            with self._pool.connection() as connection, connection.transaction():
                cursor = connection.cursor()
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield Sql(cursor, True)
            return
        connection = self._sqlite()
        connection.execute("BEGIN")
        try:
            yield Sql(connection.cursor(), False)
        finally:
            connection.execute("COMMIT")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        with self._guard:
            for connection in self._sqlite_connections:
                connection.close()
            self._sqlite_connections.clear()
        self._local = threading.local()
