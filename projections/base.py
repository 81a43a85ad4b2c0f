"""What a projection is: the event types it reads, the tables it owns, how a batch changes them.

A projection never sees the database's transaction boundaries: the runner opens
one transaction per batch, moves the projection's position inside it, and calls
`apply` with the batch's entries of the projection's types. `apply` folds the
entries in order in memory (`fold`) and writes its rows once (`flush`), so a
batch of a thousand sales is a handful of upserts. An entry that cannot be
folded raises `EventFailed` with its position: the runner rolls the batch back,
commits the entries before it, and stops the projection there with the error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from projections.db import Sql


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry, decoded for the projections (the store-local day and hour precomputed)."""

    position: int
    terminal_id: str
    type: str
    at: datetime
    #: Store-local date `YYYY-MM-DD` and hour 0-23 of the body's `at`.
    day: str
    hour: int
    data: Any
    #: The entry's postings as stored (compact JSON `[[account, currency, amount_minor], ...]`).
    postings: str
    #: Why the entry could not be decoded ("" when it was): folding it fails the projection.
    failure: str = ""


class EventFailed(Exception):
    """A projection cannot fold the entry at `position`; it stops there, never skips it."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"position {position}: {message}")
        self.position = position
        self.message = message


class Projection:
    """Base of every read model: subclasses declare `name`, `event_types`, `tables`, `schema`."""

    name: ClassVar[str]
    event_types: ClassVar[frozenset[str]]
    #: Tables the projection owns; every one has a `store_id` column (reset deletes a store's rows).
    tables: ClassVar[tuple[str, ...]]
    #: CREATE statements, valid on SQLite and PostgreSQL.
    schema: ClassVar[tuple[str, ...]]

    def apply(self, sql: Sql, store_id: str, entries: Sequence[Entry]) -> None:
        batch = self.begin(sql, store_id)
        for entry in entries:
            if entry.failure:
                raise EventFailed(entry.position, entry.failure)
            try:
                self.fold(sql, store_id, batch, entry)
            except EventFailed:
                raise
            except Exception as error:
                raise EventFailed(entry.position, f"{entry.type}: {type(error).__name__}: {error}") from error
        self.flush(sql, store_id, batch)

    def begin(self, sql: Sql, store_id: str) -> Any:
        """The in-memory accumulator of one batch."""
        raise NotImplementedError

    def fold(self, sql: Sql, store_id: str, batch: Any, entry: Entry) -> None:
        raise NotImplementedError

    def flush(self, sql: Sql, store_id: str, batch: Any) -> None:
        raise NotImplementedError

    def forget(self, store_id: str) -> None:
        """Drop any cache of the store's rows (after a rollback or a reset)."""

    def reset(self, sql: Sql, store_id: str) -> None:
        for table in self.tables:
            sql.execute(f"DELETE FROM {table} WHERE store_id = ?", (store_id,))
        self.forget(store_id)
