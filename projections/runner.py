"""The projections runner: follows each store's log and keeps every read model at a position.

Exactly once: each batch is one transaction that first moves the projection's
position with a compare-and-set (`UPDATE ... WHERE position = <where we started>`)
and then writes the projection's rows. A crash (even `kill -9`) before the
commit leaves neither; another process (or thread) that did the batch first
makes the compare-and-set miss, and the loser writes nothing. On PostgreSQL the
update takes the row lock first, so two servers never both write a batch.

A failing event stops its projection at the position before it with the error
recorded (`status`), never skipped; the other projections go on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

import msgspec

from pos_ledger.errors import InvalidInput, StoreNotFound
from pos_ledger.events import EventRejected, decode_body, decode_data
from projections.base import Entry, EventFailed, Projection
from projections.campaigns import CampaignsProjection
from projections.db import ReadDatabase, Sql
from projections.members import MembersProjection
from projections.sales import SalesProjection
from projections.stored_value import StoredValueProjection

#: Entries read and applied per transaction.
BATCH_EVENTS_MAX: Final = 1_000
#: Entries a report request may fold itself before answering (more is left to the background).
CATCH_UP_EVENTS_MAX: Final = 20_000
ERROR_TEXT_MAX: Final = 1_000
UNDECODABLE: Final = "?"
POSITIONS = (
    "CREATE TABLE IF NOT EXISTS rm_positions (store_id TEXT NOT NULL, name TEXT NOT NULL, "
    "position BIGINT NOT NULL, error TEXT, rebuilding INTEGER NOT NULL, PRIMARY KEY (store_id, name))"
)
log = logging.getLogger(__name__)


class LogEntry(Protocol):
    @property
    def position(self) -> int: ...
    @property
    def terminal_id(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def postings(self) -> str: ...


class LogSource(Protocol):
    """The port the runner reads: a store's log by position (`Ledger` is one, see `LedgerLog`)."""

    def read_entries(self, store_id: str, after: int, limit: int) -> Sequence[LogEntry]: ...
    def chain_length(self, store_id: str) -> int: ...
    def store_ids(self) -> list[str]: ...


class LedgerLog:
    """`LogSource` over the ledger's public reads."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    def read_entries(self, store_id: str, after: int, limit: int) -> Sequence[LogEntry]:
        entries: Sequence[LogEntry] = self.ledger.read_entries(store_id, after, limit)
        return entries

    def chain_length(self, store_id: str) -> int:
        length: int = self.ledger.chain(store_id)[1]
        return length

    def store_ids(self) -> list[str]:
        ids: list[str] = self.ledger.store_ids()
        return ids


def all_projections() -> list[Projection]:
    return [SalesProjection(), MembersProjection(), CampaignsProjection(), StoredValueProjection()]


@dataclass(frozen=True, slots=True)
class Status:
    name: str
    position: int
    chain_length: int
    lag: int
    error: str | None
    rebuilding: bool


class _Lost(Exception):
    """Someone else moved the projection's position first: this batch is theirs."""


class ProjectionRunner:
    def __init__(self, db: ReadDatabase, source: LogSource, projections: Sequence[Projection] | None = None,
                 batch_events: int = BATCH_EVENTS_MAX) -> None:
        if not 1 <= batch_events <= BATCH_EVENTS_MAX:
            raise InvalidInput(f"a batch is 1 to {BATCH_EVENTS_MAX} events")
        self.db = db
        self.source = source
        self.projections = list(projections) if projections is not None else all_projections()
        self.by_name = {p.name: p for p in self.projections}
        self.batch_events = batch_events
        self._zones: dict[str, ZoneInfo] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._wanted = frozenset().union(*(p.event_types for p in self.projections))
        self.ensure_schema()

    def ensure_schema(self) -> None:
        statements = [POSITIONS, *(s for p in self.projections for s in p.schema)]
        for attempt in range(3):
            try:
                with self.db.write() as sql:
                    for statement in statements:
                        sql.execute(statement)
                return
            except Exception:  # two servers creating the same tables at once on PostgreSQL
                if attempt == 2:
                    raise

    def lock(self, store_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(store_id, threading.Lock())

    # ---- positions ----

    def positions(self, store_id: str) -> dict[str, tuple[int, str | None, bool]]:
        with self.db.read() as sql:
            return self._positions(sql, store_id)

    def _positions(self, sql: Sql, store_id: str) -> dict[str, tuple[int, str | None, bool]]:
        rows = sql.execute("SELECT name, position, error, rebuilding FROM rm_positions WHERE store_id = ?",
                           (store_id,)).fetchall()
        found = {str(n): (int(p), None if e is None else str(e), bool(r)) for n, p, e, r in rows}
        return {p.name: found.get(p.name, (0, None, False)) for p in self.projections}

    def _ensure_rows(self, store_id: str) -> None:
        with self.db.write() as sql:
            sql.executemany("INSERT INTO rm_positions (store_id, name, position, error, rebuilding) "
                            "VALUES (?, ?, 0, NULL, 0) ON CONFLICT (store_id, name) DO NOTHING",
                            [(store_id, p.name) for p in self.projections])

    @staticmethod
    def _move(sql: Sql, store_id: str, name: str, before: int, after: int, error: str | None) -> None:
        moved = sql.execute("UPDATE rm_positions SET position = ?, error = ? "
                            "WHERE store_id = ? AND name = ? AND position = ?",
                            (after, error, store_id, name, before)).rowcount
        if moved != 1:
            raise _Lost()

    def status(self, store_id: str) -> list[Status]:
        length = self.source.chain_length(store_id)
        return [Status(name, position, length, max(0, length - position), error, rebuilding)
                for name, (position, error, rebuilding) in self.positions(store_id).items()]

    # ---- running ----

    def zone(self, store_id: str) -> ZoneInfo:
        zone = self._zones.get(store_id)
        if zone is None:
            first = self.source.read_entries(store_id, 0, 1)
            if not first:
                raise StoreNotFound(f"no store {store_id!r}")
            body = decode_body(first[0].body.encode())
            zone = self._zones[store_id] = ZoneInfo(str(msgspec_loads(body.data)["timezone"]))
        return zone

    def decode(self, store_id: str, raw: Iterable[LogEntry]) -> list[Entry]:
        zone = self.zone(store_id)
        entries = []
        for item in raw:
            try:
                body = decode_body(item.body.encode())
            except EventRejected as rejected:
                entries.append(_undecodable(item, f"malformed body: {rejected}"))
                continue
            if body.type not in self._wanted:
                continue
            local = body.at.astimezone(zone)
            try:
                _, data = decode_data(body, item.terminal_id)
                failure = ""
            except EventRejected as rejected:
                data, failure = None, f"{body.type}: cannot decode: {rejected}"
            entries.append(Entry(item.position, item.terminal_id, body.type, body.at, local.date().isoformat(),
                                 local.hour, data, item.postings, failure))
        return entries

    def run_store(self, store_id: str, *, names: Sequence[str] | None = None, retry_failed: bool = False,
                  max_events: int | None = None, on_progress: Callable[[int], None] | None = None) -> int:
        """Apply the log after each projection's position; returns the entries read."""
        chosen = [self.by_name[n] for n in names] if names else self.projections
        with self.lock(store_id):
            self._ensure_rows(store_id)
            if retry_failed:
                with self.db.write() as sql:
                    sql.executemany("UPDATE rm_positions SET error = NULL WHERE store_id = ? AND name = ?",
                                    [(store_id, p.name) for p in chosen])
            read = 0
            while max_events is None or read < max_events:
                positions = self.positions(store_id)
                active = [p for p in chosen if positions[p.name][1] is None]
                if not active:
                    break
                start = min(positions[p.name][0] for p in active)
                raw = self.source.read_entries(store_id, start, self.batch_events)
                if not raw:
                    break
                entries = self.decode(store_id, raw)
                last = raw[-1].position
                for projection in active:
                    before = positions[projection.name][0]
                    if last > before:
                        mine = [e for e in entries if e.position > before
                                and (e.type in projection.event_types or e.type == UNDECODABLE)]
                        self._commit(projection, store_id, before, last, mine)
                read += len(raw)
                if on_progress is not None:
                    on_progress(len(raw))
            return read

    def _commit(self, projection: Projection, store_id: str, before: int, after: int,
                entries: Sequence[Entry]) -> None:
        try:
            with self.db.write() as sql:
                self._move(sql, store_id, projection.name, before, after, None)
                projection.apply(sql, store_id, entries)
        except _Lost:
            projection.forget(store_id)
        except EventFailed as failed:
            projection.forget(store_id)
            self._stop_at(projection, store_id, before, failed, entries)
        except Exception:
            # The batch's writes failed as a whole: find the entry, one transaction per entry.
            projection.forget(store_id)
            log.exception("projection %s of store %s: batch after %d failed; retrying entry by entry",
                          projection.name, store_id, before)
            self._commit_one_by_one(projection, store_id, before, after, entries)

    def _stop_at(self, projection: Projection, store_id: str, before: int, failed: EventFailed,
                 entries: Sequence[Entry]) -> None:
        error = f"position {failed.position}: {failed.message}"[:ERROR_TEXT_MAX]
        log.error("projection %s of store %s stopped: %s", projection.name, store_id, error)
        try:
            with self.db.write() as sql:
                self._move(sql, store_id, projection.name, before, failed.position - 1, error)
                projection.apply(sql, store_id, [e for e in entries if e.position < failed.position])
        except _Lost:
            pass
        finally:
            projection.forget(store_id)

    def _commit_one_by_one(self, projection: Projection, store_id: str, before: int, after: int,
                           entries: Sequence[Entry]) -> None:
        position = before
        for entry in entries:
            try:
                with self.db.write() as sql:
                    self._move(sql, store_id, projection.name, position, entry.position, None)
                    projection.apply(sql, store_id, [entry])
            except _Lost:
                projection.forget(store_id)
                return
            except Exception as error:
                projection.forget(store_id)
                failed = EventFailed(entry.position, f"{entry.type}: {type(error).__name__}: {error}")
                self._stop_at(projection, store_id, position, failed, [])
                return
            position = entry.position
        try:
            with self.db.write() as sql:
                self._move(sql, store_id, projection.name, position, after, None)
        except _Lost:
            projection.forget(store_id)

    # ---- rebuilding ----

    def start_rebuild(self, store_id: str, names: Sequence[str] | None = None) -> bool:
        """Empty the projections' rows of the store and go back to position 0, unless a rebuild
        is already under way (then it resumes where it stopped). True when it started anew."""
        chosen = [self.by_name[n] for n in names] if names else self.projections
        self._ensure_rows(store_id)
        with self.lock(store_id), self.db.write() as sql:
            positions = self._positions(sql, store_id)
            fresh = [p for p in chosen if not positions[p.name][2]]
            for projection in fresh:
                projection.reset(sql, store_id)
                sql.execute("UPDATE rm_positions SET position = 0, error = NULL, rebuilding = 1 "
                            "WHERE store_id = ? AND name = ?", (store_id, projection.name))
            for projection in chosen:
                projection.forget(store_id)
        return len(fresh) == len(chosen)

    def finish_rebuild(self, store_id: str, names: Sequence[str] | None = None) -> None:
        chosen = [self.by_name[n] for n in names] if names else self.projections
        with self.db.write() as sql:
            sql.executemany("UPDATE rm_positions SET rebuilding = 0 WHERE store_id = ? AND name = ? "
                            "AND error IS NULL", [(store_id, p.name) for p in chosen])


def msgspec_loads(raw: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(bytes(raw))
    return decoded


def _undecodable(item: LogEntry, failure: str) -> Entry:
    """An entry whose body does not even parse: every projection stops at it."""
    return Entry(item.position, item.terminal_id, UNDECODABLE, datetime.now(UTC), "", 0, None, item.postings,
                 failure)
