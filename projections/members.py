"""Members read model: who bought on which store-local day, first and last purchase, tier.

* member days: (member, day) -> orders (sales with that `member_id`), net.
* members: registered or not (a sale may name a member id the store never saw
  register, offline), current tier (`member.registered` starts at the base tier,
  `member.tier_changed` moves it), first and last purchase day (by the sale's own
  date, so a sale synced late still counts on its day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pos_ledger.catalog.members import BASE_TIER
from projections.base import Entry, Projection
from projections.db import Sql

MEMBER_DAYS = (
    "CREATE TABLE IF NOT EXISTS rm_member_days (store_id TEXT NOT NULL, member_id TEXT NOT NULL, "
    "day TEXT NOT NULL, orders BIGINT NOT NULL, net_minor BIGINT NOT NULL, "
    "PRIMARY KEY (store_id, member_id, day))"
)
MEMBER_DAYS_BY_DAY = "CREATE INDEX IF NOT EXISTS rm_member_days_day ON rm_member_days (store_id, day, member_id)"
MEMBERS = (
    "CREATE TABLE IF NOT EXISTS rm_members (store_id TEXT NOT NULL, member_id TEXT NOT NULL, "
    "registered INTEGER NOT NULL, tier TEXT NOT NULL, first_day TEXT, last_day TEXT, "
    "PRIMARY KEY (store_id, member_id))"
)
UPSERT_DAYS = (
    "INSERT INTO rm_member_days (store_id, member_id, day, orders, net_minor) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (store_id, member_id, day) DO UPDATE SET orders = rm_member_days.orders + excluded.orders, "
    "net_minor = rm_member_days.net_minor + excluded.net_minor"
)
UPSERT_BUYER = (
    "INSERT INTO rm_members (store_id, member_id, registered, tier, first_day, last_day) "
    "VALUES (?, ?, 0, ?, ?, ?) ON CONFLICT (store_id, member_id) DO UPDATE SET "
    "first_day = CASE WHEN rm_members.first_day IS NULL OR excluded.first_day < rm_members.first_day "
    "THEN excluded.first_day ELSE rm_members.first_day END, "
    "last_day = CASE WHEN rm_members.last_day IS NULL OR excluded.last_day > rm_members.last_day "
    "THEN excluded.last_day ELSE rm_members.last_day END"
)
UPSERT_REGISTERED = (
    "INSERT INTO rm_members (store_id, member_id, registered, tier, first_day, last_day) "
    "VALUES (?, ?, 1, ?, NULL, NULL) ON CONFLICT (store_id, member_id) DO UPDATE SET registered = 1"
)
UPDATE_TIER = "UPDATE rm_members SET tier = ? WHERE store_id = ? AND member_id = ?"


@dataclass(slots=True)
class _Batch:
    days: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    #: member -> [first day, last day] bought in this batch
    buyers: dict[str, list[str]] = field(default_factory=dict)


class MembersProjection(Projection):
    name: ClassVar[str] = "members"
    event_types: ClassVar[frozenset[str]] = frozenset(
        {"sale.completed", "member.registered", "member.tier_changed"})
    tables: ClassVar[tuple[str, ...]] = ("rm_member_days", "rm_members")
    schema: ClassVar[tuple[str, ...]] = (MEMBER_DAYS, MEMBER_DAYS_BY_DAY, MEMBERS)

    def begin(self, sql: Sql, store_id: str) -> _Batch:
        return _Batch()

    def fold(self, sql: Sql, store_id: str, batch: _Batch, entry: Entry) -> None:
        data: Any = entry.data
        if entry.type == "sale.completed":
            if data.member_id is None:
                return
            key = (data.member_id, entry.day)
            row = batch.days.get(key)
            if row is None:
                batch.days[key] = [1, data.total_minor]
            else:
                row[0] += 1
                row[1] += data.total_minor
            span = batch.buyers.get(data.member_id)
            if span is None:
                batch.buyers[data.member_id] = [entry.day, entry.day]
            else:
                span[0] = min(span[0], entry.day)
                span[1] = max(span[1], entry.day)
            return
        # Registrations and tier changes are rare: write them in order, after this batch's buyers.
        self.flush(sql, store_id, batch)
        batch.days.clear()
        batch.buyers.clear()
        if entry.type == "member.registered":
            sql.execute(UPSERT_REGISTERED, (store_id, data.member_id, BASE_TIER))
        else:
            sql.execute(UPDATE_TIER, (data.tier, store_id, data.member_id))

    def flush(self, sql: Sql, store_id: str, batch: _Batch) -> None:
        sql.executemany(UPSERT_DAYS, [(store_id, m, d, o, n) for (m, d), (o, n) in batch.days.items()])
        sql.executemany(UPSERT_BUYER, [(store_id, m, BASE_TIER, first, last)
                                       for m, (first, last) in batch.buyers.items()])
