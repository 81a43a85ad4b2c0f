"""Stored-value read model: the members' balances as one liability, and what moved it per day.

* outstanding principal and bonus: the sum of the entries' postings to every
  `liability:stored_value:{member}:principal` / `...:bonus` account (credit
  positive), over every event type that posts to them (the stored-value events
  and the conflicts' compensating postings), so they equal the ledger balances
  of those accounts by construction.
* per store-local day: recharged (principal paid in), bonus granted, spent
  (stored value used to pay), refunded (order refunds given back to balances),
  recharge refunds (principal paid back out) and bonus voided with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pos_ledger.events import decode_postings
from projections.base import Entry, Projection
from projections.db import Sql

DAYS = (
    "CREATE TABLE IF NOT EXISTS rm_stored_value_days (store_id TEXT NOT NULL, day TEXT NOT NULL, "
    "recharged_minor BIGINT NOT NULL, bonus_granted_minor BIGINT NOT NULL, spent_minor BIGINT NOT NULL, "
    "refunded_minor BIGINT NOT NULL, recharge_refunded_minor BIGINT NOT NULL, "
    "bonus_voided_minor BIGINT NOT NULL, PRIMARY KEY (store_id, day))"
)
OUTSTANDING = (
    "CREATE TABLE IF NOT EXISTS rm_stored_value_outstanding (store_id TEXT NOT NULL, "
    "principal_minor BIGINT NOT NULL, bonus_minor BIGINT NOT NULL, PRIMARY KEY (store_id))"
)
FLOWS = ("recharged_minor", "bonus_granted_minor", "spent_minor", "refunded_minor",
         "recharge_refunded_minor", "bonus_voided_minor")
UPSERT_DAYS = (
    f"INSERT INTO rm_stored_value_days (store_id, day, {', '.join(FLOWS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (store_id, day) DO UPDATE SET "
    + ", ".join(f"{c} = rm_stored_value_days.{c} + excluded.{c}" for c in FLOWS)
)
UPSERT_OUTSTANDING = (
    "INSERT INTO rm_stored_value_outstanding (store_id, principal_minor, bonus_minor) VALUES (?, ?, ?) "
    "ON CONFLICT (store_id) DO UPDATE SET "
    "principal_minor = rm_stored_value_outstanding.principal_minor + excluded.principal_minor, "
    "bonus_minor = rm_stored_value_outstanding.bonus_minor + excluded.bonus_minor"
)
LIABILITY_PREFIX = "liability:stored_value:"


@dataclass(slots=True)
class _Batch:
    days: dict[str, list[int]] = field(default_factory=dict)
    principal_minor: int = 0
    bonus_minor: int = 0


def _flows(entry: Entry) -> list[int] | None:
    data: Any = entry.data
    if entry.type == "stored_value.recharged":
        return [data.paid_minor, data.bonus_minor, 0, 0, 0, 0]
    if entry.type == "stored_value.spent":
        return [0, 0, data.amount_minor, 0, 0, 0]
    if entry.type == "stored_value.refunded":
        return [0, 0, 0, data.amount_minor, 0, 0]
    if entry.type == "stored_value.recharge_refunded":
        return [0, 0, 0, 0, data.principal_returned_minor, data.bonus_voided_minor]
    return None


class StoredValueProjection(Projection):
    name: ClassVar[str] = "stored_value"
    event_types: ClassVar[frozenset[str]] = frozenset(
        {"stored_value.recharged", "stored_value.spent", "stored_value.refunded",
         "stored_value.recharge_refunded", "conflict.detected", "conflict.resolved"})
    tables: ClassVar[tuple[str, ...]] = ("rm_stored_value_days", "rm_stored_value_outstanding")
    schema: ClassVar[tuple[str, ...]] = (DAYS, OUTSTANDING)

    def begin(self, sql: Sql, store_id: str) -> _Batch:
        return _Batch()

    def fold(self, sql: Sql, store_id: str, batch: _Batch, entry: Entry) -> None:
        flows = _flows(entry)
        if flows is not None:
            row = batch.days.setdefault(entry.day, [0] * len(FLOWS))
            for index, value in enumerate(flows):
                row[index] += value
        for account, _currency, amount in decode_postings(entry.postings):
            if not account.startswith(LIABILITY_PREFIX):
                continue
            if account.endswith(":principal"):
                batch.principal_minor -= amount
            elif account.endswith(":bonus"):
                batch.bonus_minor -= amount

    def flush(self, sql: Sql, store_id: str, batch: _Batch) -> None:
        sql.executemany(UPSERT_DAYS, [(store_id, day, *flows) for day, flows in batch.days.items()])
        if batch.principal_minor or batch.bonus_minor:
            sql.execute(UPSERT_OUTSTANDING, (store_id, batch.principal_minor, batch.bonus_minor))
