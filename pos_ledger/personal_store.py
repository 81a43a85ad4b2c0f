"""Adapter: the erasable personal-data table on SQLite or PostgreSQL (the log's database).

`member_personal_data (store_id, member_id, name, phone, birthday, erased, updated_at)`.
Erasing overwrites the row with empty values and `erased = 1`; on SQLite with
`secure_delete` on and the WAL checkpointed, so the old text is not left in free pages or
the write-ahead log for a later backup to copy. (PostgreSQL backups by `pg_dump` copy live
rows only; the dead tuple goes with the next VACUUM.)
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any, Final

from pos_ledger.personal import PersonalData

_CREATE: Final = (
    "CREATE TABLE IF NOT EXISTS member_personal_data (store_id TEXT NOT NULL, member_id TEXT NOT NULL, "
    "name TEXT NOT NULL, phone TEXT NOT NULL, birthday TEXT NOT NULL, erased INTEGER NOT NULL, "
    "updated_at TEXT NOT NULL, PRIMARY KEY (store_id, member_id))"
)
_UPSERT: Final = (
    "INSERT INTO member_personal_data VALUES ({p},{p},{p},{p},{p},{p},{p}) "
    "ON CONFLICT (store_id, member_id) DO UPDATE SET name = excluded.name, phone = excluded.phone, "
    "birthday = excluded.birthday, erased = excluded.erased, updated_at = excluded.updated_at"
)
_SELECT: Final = (
    "SELECT name, phone, birthday, erased FROM member_personal_data WHERE store_id = {p} AND member_id = {p}"
)


class SqlPersonalData:
    """One connection, serialised by a lock (personal data is read per member, never in bulk)."""

    def __init__(self, database: str) -> None:
        self.postgres = database.startswith(("postgresql://", "postgres://"))
        self.mark = "%s" if self.postgres else "?"
        self._lock = threading.Lock()
        self._conn: Any
        if self.postgres:
            import psycopg

            self._conn = psycopg.connect(database, autocommit=True)
        else:
            self._conn = sqlite3.connect(database, timeout=30, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA secure_delete = ON")
        self._conn.execute(_CREATE)

    def get(self, store_id: str, member_id: str) -> PersonalData | None:
        with self._lock:
            row = self._conn.execute(_SELECT.format(p=self.mark), (store_id, member_id)).fetchone()
        if row is None:
            return None
        return PersonalData(row[0], row[1], row[2], bool(row[3]))

    def put(self, store_id: str, member_id: str, data: PersonalData) -> None:
        values = (store_id, member_id, data.name, data.phone, data.birthday, int(data.erased),
                  datetime.now(UTC).isoformat())
        with self._lock:
            self._conn.execute(_UPSERT.format(p=self.mark), values)

    def erase(self, store_id: str, member_id: str) -> None:
        self.put(store_id, member_id, PersonalData(erased=True))
        if not self.postgres:
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
