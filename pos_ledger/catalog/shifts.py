"""Shifts and the cash drawer: `shift.opened`, `cash.moved`, `shift.closed`.

Decisions (written down once):

* One drawer per terminal, the account `asset:cash:{terminal}`. The state keeps
  its running balance (`ShiftsState.drawers`), moved by every event that posts to
  that account: a shift's float, paid in / paid out, cash sales (`sale.completed`
  cash tenders, through the `SALE_EVOLVERS` hook), cash payments and cash refunds
  (`pos_ledger.catalog.payments`), and members' cash recharges and recharge
  refunds (`pos_ledger.catalog.members`). So "cash expected" is always the drawer
  account's balance and the drawer reconciles with the books by construction.
* A float comes out of the safe (Dr drawer, Cr `asset:cash:safe`). Closing drops
  the counted cash into the safe (Dr `asset:cash:safe` counted, Cr drawer
  expected) and books the difference: short to `expense:cash_short`, over to
  `income:cash_over`. After a close the drawer account is zero.
* Paid in credits `clearing:cash:paid_in`, paid out debits `clearing:cash:paid_out`;
  the back office classifies them (owner's change, a supplier paid from the till).
  A paid out larger than the drawer holds is refused: a drawer is never negative.
* Cash taken while no shift is open (an offline sale before opening) stays in the
  drawer and shows in the next shift as `carried_in_minor`.
* All three events may come from the terminal itself (offline) or from the server
  (a cashier's online command): origin "any". A terminal only moves its own drawer.
* Per-shift totals (per tender, refunds, discounts) are kept so X and Z reports are
  a read of the state; the Z report's chain head is the hash of the chain entry
  that recorded `shift.closed`, so the printed report pins the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from pos_ledger.events import (
    SERVER_TERMINAL_ID,
    Amount,
    CurrencyCode,
    EntryMeta,
    EventRejected,
    EventType,
    Identifier,
    Posting,
    React,
    register,
    require_currency,
)
from pos_ledger.state import StoreState

FEATURE: Final = "shifts"
SAFE_ACCOUNT: Final = "asset:cash:safe"
PAID_IN_ACCOUNT: Final = "clearing:cash:paid_in"
PAID_OUT_ACCOUNT: Final = "clearing:cash:paid_out"
SHORT_ACCOUNT: Final = "expense:cash_short"
OVER_ACCOUNT: Final = "income:cash_over"
#: Shifts kept in memory per store before the oldest closed ones are forgotten by reads.
SHIFTS_KEPT_MAX: Final = 100_000


def drawer_account(terminal_id: str) -> str:
    return f"asset:cash:{terminal_id}"


class ShiftOpened(msgspec.Struct, frozen=True):
    shift_id: Identifier
    terminal_id: Identifier
    currency: CurrencyCode
    float_minor: Amount


class CashMoved(msgspec.Struct, frozen=True):
    shift_id: Identifier
    kind: Literal["paid_in", "paid_out"]
    amount_minor: Annotated[int, msgspec.Meta(ge=1, le=10**15)]
    currency: CurrencyCode
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class ShiftClosed(msgspec.Struct, frozen=True):
    shift_id: Identifier
    counted_minor: Amount


@dataclass(slots=True)
class Shift:
    shift_id: str
    terminal_id: str
    currency: str
    float_minor: int
    opened_at: datetime
    opened_position: int
    carried_in_minor: int
    status: str = "open"
    paid_in_minor: int = 0
    paid_out_minor: int = 0
    cash_sales_minor: int = 0
    cash_refunds_minor: int = 0
    sales_count: int = 0
    discounts_minor: int = 0
    #: Net amount taken per tender method (cash after change).
    tenders: dict[str, int] = field(default_factory=dict)
    #: Stored-value recharges taken per method, net of recharges refunded (not sales).
    recharges: dict[str, int] = field(default_factory=dict)
    cash_recharges_minor: int = 0
    refunds: dict[str, int] = field(default_factory=dict)
    refunds_count: int = 0
    expected_minor: int = 0
    counted_minor: int | None = None
    difference_minor: int | None = None
    closed_at: datetime | None = None
    closed_position: int | None = None


@dataclass(slots=True)
class ShiftsState:
    shifts: dict[str, Shift] = field(default_factory=dict)
    open_by_terminal: dict[str, str] = field(default_factory=dict)
    #: Running balance of each terminal's drawer account (cash expected in it now).
    drawers: dict[str, int] = field(default_factory=dict)


def shifts_of(state: StoreState) -> ShiftsState:
    return state.feature(FEATURE, ShiftsState)


def open_shift_of(state: StoreState, terminal_id: str | None) -> Shift | None:
    if terminal_id is None:
        return None
    shifts = shifts_of(state)
    shift_id = shifts.open_by_terminal.get(terminal_id)
    return shifts.shifts[shift_id] if shift_id else None


# ---- hooks for the events that take or give back money (sales, payments, refunds) ----


def _move_drawer(state: StoreState, terminal_id: str, method: str, amount_minor: int) -> None:
    if method == "cash":
        drawers = shifts_of(state).drawers
        drawers[terminal_id] = drawers.get(terminal_id, 0) + amount_minor


def record_tender(state: StoreState, terminal_id: str | None, method: str, net_minor: int,
                  discount_minor: int = 0, is_sale: bool = False) -> None:
    """Money taken at a terminal; cash also moves its drawer."""
    if terminal_id is None:
        return
    _move_drawer(state, terminal_id, method, net_minor)
    shift = open_shift_of(state, terminal_id)
    if shift is None:
        return
    if net_minor:
        shift.tenders[method] = shift.tenders.get(method, 0) + net_minor
    if method == "cash":
        shift.cash_sales_minor += net_minor
    shift.discounts_minor += discount_minor
    if is_sale:
        shift.sales_count += 1


def record_refund(state: StoreState, terminal_id: str | None, method: str, amount_minor: int) -> None:
    if terminal_id is None:
        return
    _move_drawer(state, terminal_id, method, -amount_minor)
    shift = open_shift_of(state, terminal_id)
    if shift is None:
        return
    shift.refunds[method] = shift.refunds.get(method, 0) + amount_minor
    shift.refunds_count += 1
    if method == "cash":
        shift.cash_refunds_minor += amount_minor


def record_recharge(state: StoreState, terminal_id: str, method: str, amount_minor: int) -> None:
    """A member's recharge taken (or, negative, given back) at a terminal; cash moves its drawer."""
    _move_drawer(state, terminal_id, method, amount_minor)
    shift = open_shift_of(state, terminal_id)
    if shift is None:
        return
    shift.recharges[method] = shift.recharges.get(method, 0) + amount_minor
    if method == "cash":
        shift.cash_recharges_minor += amount_minor


def drawer_minor(state: StoreState, terminal_id: str) -> int:
    return shifts_of(state).drawers.get(terminal_id, 0)


# ---- rules ----


def _acting_terminal(data_terminal: str, sender: str) -> None:
    if sender != SERVER_TERMINAL_ID and data_terminal != sender:
        raise EventRejected("not_own_drawer", f"terminal {sender!r} cannot move drawer {data_terminal!r}")


def _shift(state: StoreState, shift_id: str, sender: str) -> Shift:
    shift = shifts_of(state).shifts.get(shift_id)
    if shift is None:
        raise EventRejected("unknown_shift", f"no shift {shift_id!r}")
    _acting_terminal(shift.terminal_id, sender)
    if shift.status != "open":
        raise EventRejected("shift_closed", f"shift {shift_id!r} is closed")
    return shift


def _decide_opened(data: ShiftOpened, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    _acting_terminal(data.terminal_id, terminal_id)
    shifts = shifts_of(state)
    if data.shift_id in shifts.shifts:
        raise EventRejected("shift_exists", f"shift {data.shift_id!r} already exists")
    if data.terminal_id in shifts.open_by_terminal:
        raise EventRejected("shift_already_open",
                            f"terminal {data.terminal_id!r} has shift {shifts.open_by_terminal[data.terminal_id]!r} open")
    if data.float_minor == 0:
        return []
    return [(drawer_account(data.terminal_id), data.currency, data.float_minor),
            (SAFE_ACCOUNT, data.currency, -data.float_minor)]


def _evolve_opened(data: ShiftOpened, state: StoreState, meta: EntryMeta) -> None:
    shifts = shifts_of(state)
    carried_in = shifts.drawers.get(data.terminal_id, 0)
    shifts.shifts[data.shift_id] = Shift(data.shift_id, data.terminal_id, data.currency, data.float_minor,
                                         meta.at, meta.position, carried_in)
    shifts.open_by_terminal[data.terminal_id] = data.shift_id
    shifts.drawers[data.terminal_id] = carried_in + data.float_minor


def _decide_moved(data: CashMoved, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    shift = _shift(state, data.shift_id, terminal_id)
    drawer = drawer_account(shift.terminal_id)
    if data.kind == "paid_in":
        return [(drawer, data.currency, data.amount_minor), (PAID_IN_ACCOUNT, data.currency, -data.amount_minor)]
    available = drawer_minor(state, shift.terminal_id)
    if data.amount_minor > available:
        raise EventRejected("insufficient_cash", f"paid out {data.amount_minor} but the drawer holds {available}")
    return [(PAID_OUT_ACCOUNT, data.currency, data.amount_minor), (drawer, data.currency, -data.amount_minor)]


def _evolve_moved(data: CashMoved, state: StoreState, meta: EntryMeta) -> None:
    shifts = shifts_of(state)
    shift = shifts.shifts[data.shift_id]
    sign = 1 if data.kind == "paid_in" else -1
    shifts.drawers[shift.terminal_id] = shifts.drawers.get(shift.terminal_id, 0) + sign * data.amount_minor
    if data.kind == "paid_in":
        shift.paid_in_minor += data.amount_minor
    else:
        shift.paid_out_minor += data.amount_minor


def _decide_closed(data: ShiftClosed, state: StoreState, terminal_id: str) -> list[Posting]:
    shift = _shift(state, data.shift_id, terminal_id)
    expected = drawer_minor(state, shift.terminal_id)
    currency_code = shift.currency
    postings: list[Posting] = []
    if expected:
        postings.append((drawer_account(shift.terminal_id), currency_code, -expected))
    if data.counted_minor:
        postings.append((SAFE_ACCOUNT, currency_code, data.counted_minor))
    short = expected - data.counted_minor
    if short > 0:
        postings.append((SHORT_ACCOUNT, currency_code, short))
    elif short < 0:
        postings.append((OVER_ACCOUNT, currency_code, short))
    return postings


def _evolve_closed(data: ShiftClosed, state: StoreState, meta: EntryMeta) -> None:
    shifts = shifts_of(state)
    shift = shifts.shifts[data.shift_id]
    shift.expected_minor = shifts.drawers.get(shift.terminal_id, 0)
    shift.counted_minor = data.counted_minor
    shift.difference_minor = data.counted_minor - shift.expected_minor
    shift.status = "closed"
    shift.closed_at = meta.at
    shift.closed_position = meta.position
    shifts.drawers[shift.terminal_id] = 0
    shifts.open_by_terminal.pop(shift.terminal_id, None)


def report(shift: Shift, state: StoreState) -> dict[str, Any]:
    """X report while open (cash expected now), Z report once closed."""
    expected = shift.expected_minor if shift.status == "closed" else drawer_minor(state, shift.terminal_id)
    return {
        "kind": "Z" if shift.status == "closed" else "X",
        "shift_id": shift.shift_id,
        "terminal_id": shift.terminal_id,
        "status": shift.status,
        "currency": shift.currency,
        "opened_at": shift.opened_at.isoformat(),
        "closed_at": shift.closed_at.isoformat() if shift.closed_at else None,
        "float_minor": shift.float_minor,
        "carried_in_minor": shift.carried_in_minor,
        "paid_in_minor": shift.paid_in_minor,
        "paid_out_minor": shift.paid_out_minor,
        "cash_sales_minor": shift.cash_sales_minor,
        "cash_refunds_minor": shift.cash_refunds_minor,
        "cash_recharges_minor": shift.cash_recharges_minor,
        "recharges": dict(sorted(shift.recharges.items())),
        "sales_count": shift.sales_count,
        "tenders": dict(sorted(shift.tenders.items())),
        "refunds": dict(sorted(shift.refunds.items())),
        "refunds_count": shift.refunds_count,
        "refunds_minor": sum(shift.refunds.values()),
        "discounts_minor": shift.discounts_minor,
        "cash_expected_minor": expected,
        "counted_minor": shift.counted_minor,
        "difference_minor": shift.difference_minor,
    }


SHIFT_OPENED = register(EventType("shift.opened", ShiftOpened, _decide_opened, _evolve_opened, origin="any"))
CASH_MOVED = register(EventType("cash.moved", CashMoved, _decide_moved, _evolve_moved, origin="any"))
#: Server events that follow a shift close (the checkpoint that pins the chain at the Z).
SHIFT_CLOSED_REACTIONS: list[React] = []


def _react_closed(data: ShiftClosed, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    return [event for reaction in SHIFT_CLOSED_REACTIONS for event in reaction(data, state, meta)]


SHIFT_CLOSED = register(EventType("shift.closed", ShiftClosed, _decide_closed, _evolve_closed, origin="any",
                                  react=_react_closed))
