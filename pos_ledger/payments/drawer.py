"""Shift commands and X / Z reports (the rules live in `pos_ledger.catalog.shifts`).

The Z report of a shift carries the chain head of the entry that recorded its
`shift.closed` (and that entry's position), so the printed report pins the log:
an auditor recomputing the chain must arrive at the same hash at that position.
The end-of-day Z report sums the shifts closed on the store's local day and pins
the chain as it stands when the report is taken.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pos_ledger.catalog.payments import payments_of
from pos_ledger.catalog.shifts import Shift, report, shifts_of
from pos_ledger.errors import InvalidInput, NotFound
from pos_ledger.ledger import Ledger


class ShiftNotFound(NotFound):
    slug = "shift-not-found"


def new_shift_id() -> str:
    return "shf" + secrets.token_hex(8)


class Shifts:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def shift(self, store_id: str, shift_id: str) -> Shift:
        shift = shifts_of(self.ledger.store(store_id)).shifts.get(shift_id)
        if shift is None:
            raise ShiftNotFound(f"no shift {shift_id!r} in store {store_id!r}")
        return shift

    def open(self, store_id: str, terminal_id: str, float_minor: int, shift_id: str | None = None) -> Shift:
        state = self.ledger.store(store_id)
        if terminal_id not in state.terminals:
            raise InvalidInput(f"no terminal {terminal_id!r} in store {store_id!r}")
        shift_id = shift_id or new_shift_id()
        self.ledger.append_server_events(store_id, [("shift.opened", {
            "shift_id": shift_id, "terminal_id": terminal_id, "currency": state.currency,
            "float_minor": float_minor})])
        return self.shift(store_id, shift_id)

    def move_cash(self, store_id: str, shift_id: str, kind: Literal["paid_in", "paid_out"], amount_minor: int,
                  reason: str) -> Shift:
        shift = self.shift(store_id, shift_id)
        self.ledger.append_server_events(store_id, [("cash.moved", {
            "shift_id": shift_id, "kind": kind, "amount_minor": amount_minor, "currency": shift.currency,
            "reason": reason})])
        return self.shift(store_id, shift_id)

    def close(self, store_id: str, shift_id: str, counted_minor: int) -> dict[str, Any]:
        self.shift(store_id, shift_id)
        self.ledger.append_server_events(store_id, [("shift.closed", {
            "shift_id": shift_id, "counted_minor": counted_minor})])
        return self.report(store_id, shift_id)

    def report(self, store_id: str, shift_id: str) -> dict[str, Any]:
        state = self.ledger.store(store_id)
        shift = self.shift(store_id, shift_id)
        result = report(shift, state)
        if shift.closed_position is not None:
            entry = self.ledger.read_entries(store_id, shift.closed_position - 1, 1)[0]
            result["chain_head"], result["chain_position"] = entry.hash.hex(), entry.position
        else:
            result["chain_head"], result["chain_position"] = state.head.hex(), state.position
        return result

    def day_report(self, store_id: str, day: date) -> dict[str, Any]:
        """End-of-day Z: the shifts closed on the store's local day, summed; the chain as it stands now."""
        state = self.ledger.store(store_id)
        zone = ZoneInfo(state.timezone)
        closed = [s for s in list(shifts_of(state).shifts.values())
                  if s.closed_at is not None and s.closed_at.astimezone(zone).date() == day]
        reports = [report(s, state) for s in closed]
        tenders: dict[str, int] = {}
        refunds: dict[str, int] = {}
        for item in reports:
            for method, amount in item["tenders"].items():
                tenders[method] = tenders.get(method, 0) + amount
            for method, amount in item["refunds"].items():
                refunds[method] = refunds.get(method, 0) + amount
        book = payments_of(state)
        return {
            "kind": "Z", "scope": "day", "store_id": store_id, "day": day.isoformat(),
            "currency": state.currency, "shifts": [r["shift_id"] for r in reports],
            "sales_count": sum(r["sales_count"] for r in reports),
            "tenders": dict(sorted(tenders.items())), "refunds": dict(sorted(refunds.items())),
            "refunds_minor": sum(refunds.values()),
            "discounts_minor": sum(r["discounts_minor"] for r in reports),
            "cash_expected_minor": sum(r["cash_expected_minor"] for r in reports),
            "counted_minor": sum(r["counted_minor"] or 0 for r in reports),
            "difference_minor": sum(r["difference_minor"] or 0 for r in reports),
            "open_payments": sum(1 for p in list(book.payments.values()) if p.status == "pending"),
            "chain_head": state.head.hex(), "chain_position": state.position,
        }
