"""Online orders: `order.placed` → accepted | rejected → started (preparing) → ready → completed,
or cancelled (by the channel, by the store, or by the server when nobody accepted in time).

Decisions (written down once):

* Orders are server events: the channel (mini program, platform, phone) pushes an order
  over the API and the server decides and signs. The rule of each transition lives in
  `ORDER_TRANSITIONS`; an illegal one is refused with reason `invalid_transition`, so a
  second cancel (two servers expiring the same order, a retried button) cannot be written.
* `channel` + `channel_order_id` names an order once per store: the same push again is
  recognised by the fingerprint of its body (`request_sha256`), another body is a conflict.
* The accept deadline (`accept_by`) is decided at placement from the store's setting then,
  so a later settings change does not move it and a replay gives the same deadline.
* Revenue is recognised once, by `sale.completed`: completing a paid order appends a
  `sale.completed` (channel = the order's channel, the order's id as its `order_id`,
  one tender naming the payment) in the same commit as `order.completed`, so reports by
  channel, members' points and refunds treat it like any counter sale. An unpaid order
  (paid to a delivery platform, or at pick-up at the counter) records no sale here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from pos_ledger.catalog.menu import Sku
from pos_ledger.catalog.payments import payments_of
from pos_ledger.events import (
    Amount,
    CurrencyCode,
    EntryMeta,
    EventRejected,
    EventType,
    Identifier,
    PositiveCount,
    Posting,
    ShortText,
    register,
    require_currency,
)
from pos_ledger.state import StoreState

FEATURE: Final = "orders"
ORDER_LINES_MAX: Final = 200
Channel = Literal["mini_program", "official_account", "meituan", "eleme", "douyin", "phone"]
CHANNELS: Final = ("mini_program", "official_account", "meituan", "eleme", "douyin", "phone")
FulfillmentType = Literal["dine_in", "pickup", "delivery"]
Status = Literal["placed", "accepted", "rejected", "preparing", "ready", "completed", "cancelled"]
Reason = Annotated[str, msgspec.Meta(max_length=500)]
ChannelOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
#: Who cancelled: the channel (the customer or the platform), the store, or the server (timeout).
CancelledBy = Literal["channel", "store", "server"]

#: The transitions, by event: the statuses it may leave and the status it leaves the order in.
ORDER_TRANSITIONS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "order.accepted": (frozenset({"placed"}), "accepted"),
    "order.rejected": (frozenset({"placed"}), "rejected"),
    "order.started": (frozenset({"accepted"}), "preparing"),
    "order.ready": (frozenset({"preparing"}), "ready"),
    "order.completed": (frozenset({"ready"}), "completed"),
    "order.cancelled": (frozenset({"placed", "accepted", "preparing", "ready"}), "cancelled"),
}
#: The route verb of each transition (`POST .../orders/{id}/{verb}`).
VERBS: Final = {"accept": "order.accepted", "reject": "order.rejected", "start": "order.started",
                "ready": "order.ready", "complete": "order.completed", "cancel": "order.cancelled"}
OPEN_STATUSES: Final = frozenset({"placed", "accepted", "preparing", "ready"})


class OrderLine(msgspec.Struct, frozen=True):
    sku: Sku
    #: The menu's name and category at placement (the kitchen ticket prints and routes by them).
    name: ShortText
    category: Annotated[str, msgspec.Meta(max_length=100)]
    qty: PositiveCount
    unit_price_minor: Amount
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class Fulfillment(msgspec.Struct, frozen=True, omit_defaults=True):
    type: FulfillmentType
    table: Annotated[str, msgspec.Meta(max_length=50)] | None = None
    pickup_at: datetime | None = None
    address: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: Identifier
    channel: Channel
    channel_order_id: ChannelOrderId
    currency: CurrencyCode
    lines: Annotated[list[OrderLine], msgspec.Meta(min_length=1, max_length=ORDER_LINES_MAX)]
    fulfillment: Fulfillment
    total_minor: Amount
    #: When the server cancels the order if it is still placed (decided once, at placement).
    accept_by: datetime
    #: SHA-256 (hex) of the pushed body, to tell a platform's second push from another order.
    request_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    member_id: Identifier | None = None
    payment_id: Identifier | None = None


class OrderTransitioned(msgspec.Struct, frozen=True):
    order_id: Identifier
    reason: Reason = ""


class OrderCancelled(msgspec.Struct, frozen=True):
    order_id: Identifier
    reason: Reason = ""
    by: CancelledBy = "store"
    #: The refund that gave a paid order's money back (pos_ledger.payments), if any.
    refund_id: Identifier | None = None


@dataclass(slots=True)
class Step:
    status: str
    position: int
    at: datetime
    reason: str = ""


@dataclass(slots=True)
class Order:
    order_id: str
    channel: str
    channel_order_id: str
    currency: str
    lines: list[OrderLine]
    fulfillment: Fulfillment
    total_minor: int
    accept_by: datetime
    request_sha256: str
    member_id: str | None
    payment_id: str | None
    placed_at: datetime
    placed_position: int
    status: str = "placed"
    reason: str = ""
    cancelled_by: str | None = None
    refund_id: str | None = None
    updated_at: datetime | None = None
    history: list[Step] = field(default_factory=list)

    def status_at(self, position: int) -> Step | None:
        """The step the order was in just after `position` (None before it was placed)."""
        found = None
        for step in self.history:
            if step.position > position:
                break
            found = step
        return found


@dataclass(slots=True)
class OrdersState:
    orders: dict[str, Order] = field(default_factory=dict)
    #: (channel, channel_order_id) -> order id
    by_channel: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Orders waiting for the counter, for the accept-timeout scan.
    placed: set[str] = field(default_factory=set)
    #: payment id -> the order it pays (a payment pays one order).
    by_payment: dict[str, str] = field(default_factory=dict)


def orders_of(state: StoreState) -> OrdersState:
    return state.feature(FEATURE, OrdersState)


def order_of(state: StoreState, order_id: str) -> Order:
    order = orders_of(state).orders.get(order_id)
    if order is None:
        raise EventRejected("unknown_order", f"no order {order_id!r}")
    return order


def lines_total(lines: list[OrderLine]) -> int:
    return sum(line.qty * line.unit_price_minor for line in lines)


def _check_payment(data: OrderPlaced, state: StoreState) -> None:
    """An order's payment is captured, in the order's currency, for the order's total."""
    if data.payment_id is None:
        return
    payment = payments_of(state).payments.get(data.payment_id)
    if payment is None:
        raise EventRejected("unknown_payment", f"no payment {data.payment_id!r}")
    if payment.status != "captured":
        raise EventRejected("payment_not_captured", f"payment {payment.payment_id!r} is {payment.status}")
    if payment.applied_order_id is not None:
        raise EventRejected("payment_already_applied",
                            f"payment {payment.payment_id!r} paid order {payment.applied_order_id}")
    held = payment.amount_minor - payment.refunded_minor
    if payment.currency != data.currency or held != data.total_minor:
        raise EventRejected("payment_amount_mismatch",
                            f"payment {payment.payment_id!r} holds {held} {payment.currency}, "
                            f"the order is {data.total_minor} {data.currency}")


def _decide_placed(data: OrderPlaced, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    book = orders_of(state)
    if data.order_id in book.orders:
        raise EventRejected("order_exists", f"order {data.order_id!r} exists")
    if (data.channel, data.channel_order_id) in book.by_channel:
        raise EventRejected("order_exists", f"{data.channel} order {data.channel_order_id!r} was already placed")
    if lines_total(data.lines) != data.total_minor:
        raise EventRejected("totals_mismatch",
                            f"lines add up to {lines_total(data.lines)}, not total {data.total_minor}")
    if data.payment_id is not None and data.payment_id in book.by_payment:
        raise EventRejected("payment_already_applied",
                            f"payment {data.payment_id!r} pays order {book.by_payment[data.payment_id]}")
    _check_payment(data, state)
    return []


def _evolve_placed(data: OrderPlaced, state: StoreState, meta: EntryMeta) -> None:
    book = orders_of(state)
    book.orders[data.order_id] = Order(
        data.order_id, data.channel, data.channel_order_id, data.currency, list(data.lines), data.fulfillment,
        data.total_minor, data.accept_by, data.request_sha256, data.member_id, data.payment_id, meta.at,
        meta.position, updated_at=meta.at, history=[Step("placed", meta.position, meta.at)])
    book.by_channel[(data.channel, data.channel_order_id)] = data.order_id
    book.placed.add(data.order_id)
    if data.payment_id is not None:
        book.by_payment[data.payment_id] = data.order_id


def _transition(event_name: str) -> tuple[Callable[..., list[Posting]], Callable[..., None]]:
    allowed, target = ORDER_TRANSITIONS[event_name]

    def decide(data: OrderTransitioned | OrderCancelled, state: StoreState, terminal_id: str) -> list[Posting]:
        order = order_of(state, data.order_id)
        if order.status not in allowed:
            raise EventRejected("invalid_transition",
                                f"order {order.order_id} is {order.status}: it cannot become {target}")
        return []

    def evolve(data: OrderTransitioned | OrderCancelled, state: StoreState, meta: EntryMeta) -> None:
        book = orders_of(state)
        order = book.orders[data.order_id]
        order.status = target
        order.reason = data.reason
        order.updated_at = meta.at
        order.history.append(Step(target, meta.position, meta.at, data.reason))
        book.placed.discard(order.order_id)
        if isinstance(data, OrderCancelled):
            order.cancelled_by = data.by
            order.refund_id = data.refund_id

    return decide, evolve


def _register_transition(event_name: str, schema: type[msgspec.Struct]) -> EventType:
    decide, evolve = _transition(event_name)
    return register(EventType(event_name, schema, decide, evolve, origin="server"))


ORDER_PLACED = register(EventType("order.placed", OrderPlaced, _decide_placed, _evolve_placed, origin="server"))
ORDER_ACCEPTED = _register_transition("order.accepted", OrderTransitioned)
ORDER_REJECTED = _register_transition("order.rejected", OrderTransitioned)
ORDER_STARTED = _register_transition("order.started", OrderTransitioned)
ORDER_READY = _register_transition("order.ready", OrderTransitioned)
ORDER_COMPLETED = _register_transition("order.completed", OrderTransitioned)
ORDER_CANCELLED = _register_transition("order.cancelled", OrderCancelled)
ORDER_EVENT_TYPES: Final = ("order.placed", *ORDER_TRANSITIONS)


def order_view(order: Order, as_of: int | None = None) -> dict[str, Any]:
    """The order as the API answers it; `as_of` = its status just after that log position."""
    step = order.status_at(as_of) if as_of is not None else None
    status, reason = (step.status, step.reason) if step is not None else (order.status, order.reason)
    updated_at = step.at if step is not None else order.updated_at
    return {
        "order_id": order.order_id,
        "status": status,
        "reason": reason or None,
        "channel": order.channel,
        "channel_order_id": order.channel_order_id,
        "currency": order.currency,
        "lines": [{"sku": line.sku, "name": line.name, "category": line.category, "qty": line.qty,
                   "unit_price_minor": line.unit_price_minor, "note": line.note or None}
                  for line in order.lines],
        "fulfillment": msgspec.to_builtins(order.fulfillment),
        "member_id": order.member_id,
        "total_minor": order.total_minor,
        "payment_id": order.payment_id,
        "placed_at": order.placed_at.isoformat(),
        "accept_by": order.accept_by.isoformat(),
        "updated_at": (updated_at or order.placed_at).isoformat(),
        "placed_position": order.placed_position,
        "cancelled_by": order.cancelled_by if status == "cancelled" else None,
        "refund_id": order.refund_id if status == "cancelled" else None,
        "history": [{"status": s.status, "position": s.position, "at": s.at.isoformat(), "reason": s.reason or None}
                    for s in order.history if as_of is None or s.position <= as_of],
    }
