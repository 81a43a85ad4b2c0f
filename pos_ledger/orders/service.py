"""Online orders: load the store, decide, append server-signed events.

* A push is checked before anything is written: known skus (the menu), lines that add
  up to the total, a captured payment for exactly the total. The same channel order
  pushed again with the same body answers the order it placed; another body is refused.
* A paid order cancelled before completion is refunded first (refund id
  `cancel-{order_id}`, so a retry refunds once), then `order.cancelled` names the refund.
* Completing a paid order appends `order.completed` and the `sale.completed` that
  recognises its revenue in one commit (see the catalog module's decisions).
* `expire_due` cancels placed orders past their accept deadline (`accept_timeout`);
  the transition rule refuses a second cancel, so several servers (or a restart in the
  middle) never write two.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pos_ledger.catalog.menu import menu_of
from pos_ledger.catalog.orders import ORDER_TRANSITIONS, VERBS, Order, order_view, orders_of
from pos_ledger.catalog.payments import payments_of
from pos_ledger.catalog.store import settings_of
from pos_ledger.errors import EventRefused, InvalidInput, NotFound
from pos_ledger.ledger import Ledger
from pos_ledger.payments.service import Payments

log = logging.getLogger("pos_ledger.orders")

ORDERS_LISTED_MAX: Final = 1_000
#: Transitions of one order are serialised in this process by one of this many locks.
ORDER_LOCK_STRIPES: Final = 256
ACCEPT_TIMEOUT_REASON: Final = "accept_timeout"


class OrderNotFound(NotFound):
    slug = "order-not-found"


def request_fingerprint(request: dict[str, Any]) -> str:
    """SHA-256 of the pushed body in one canonical form (key order and spacing do not count)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Orders:
    def __init__(self, ledger: Ledger, payments: Payments,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.ledger = ledger
        self.payments = payments
        self.clock = clock
        self._locks = [threading.Lock() for _ in range(ORDER_LOCK_STRIPES)]

    # ---- reads ----

    def order(self, store_id: str, order_id: str) -> Order:
        order = orders_of(self.ledger.store(store_id)).orders.get(order_id)
        if order is None:
            raise OrderNotFound(f"no order {order_id!r} in store {store_id!r}")
        return order

    def view(self, store_id: str, order_id: str) -> dict[str, Any]:
        return order_view(self.order(store_id, order_id))

    def list(self, store_id: str, *, status: str | None = None, placed_from: datetime | None = None,
             placed_to: datetime | None = None, limit: int = ORDERS_LISTED_MAX) -> list[dict[str, Any]]:
        """Orders placed in [from, to), oldest first, at most `limit`."""
        orders = list(orders_of(self.ledger.store(store_id)).orders.values())
        found = [o for o in orders
                 if (status is None or o.status == status)
                 and (placed_from is None or o.placed_at >= placed_from)
                 and (placed_to is None or o.placed_at < placed_to)]
        found.sort(key=lambda o: o.placed_position)
        return [order_view(o) for o in found[:min(limit, ORDERS_LISTED_MAX)]]

    # ---- placing ----

    def place(self, store_id: str, request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(the order, True) when placed now; (the same order, False) for a repeated push."""
        fingerprint = request_fingerprint(request)
        key = (request["channel"], request["channel_order_id"])
        with self._lock(store_id, f"{key[0]}/{key[1]}"):
            earlier = self._same_push(store_id, key, fingerprint)
            if earlier is not None:
                return earlier, False
            state = self.ledger.store(store_id)
            data = self._placement(state, request, fingerprint)
            events: list[tuple[str, dict[str, Any]]] = [("order.placed", data)]
            if settings_of(state).orders_auto_accept:
                events.append(("order.accepted", {"order_id": data["order_id"], "reason": "auto_accept"}))
            try:
                self.ledger.append_server_events(store_id, events)
            except EventRefused as refused:
                if refused.reason != "order_exists":
                    raise
                # Another server placed the same push between our read and our write.
                earlier = self._same_push(store_id, key, fingerprint)
                if earlier is None:
                    raise
                return earlier, False
            return self.view(store_id, data["order_id"]), True

    def _same_push(self, store_id: str, key: tuple[str, str], fingerprint: str) -> dict[str, Any] | None:
        book = orders_of(self.ledger.store(store_id))
        order_id = book.by_channel.get(key)
        if order_id is None:
            return None
        order = book.orders[order_id]
        if order.request_sha256 != fingerprint:
            raise EventRefused("channel_order_conflict",
                               f"{key[0]} order {key[1]!r} was placed as order {order_id} with another body")
        return order_view(order)

    def _placement(self, state: Any, request: dict[str, Any], fingerprint: str) -> dict[str, Any]:
        menu = menu_of(state)
        lines = []
        for line in request["lines"]:
            item = menu.get(line["sku"])
            if item is None:
                raise InvalidInput(f"sku {line['sku']!r} is not on the menu", reason="unknown_sku", sku=line["sku"])
            lines.append({"sku": item.sku, "name": item.name, "category": item.category, "qty": line["qty"],
                          "unit_price_minor": line["unit_price_minor"], "note": line.get("note") or ""})
        gross = sum(line["qty"] * line["unit_price_minor"] for line in lines)
        if gross != request["total_minor"]:
            raise InvalidInput(f"lines add up to {gross}, not total_minor {request['total_minor']}",
                               reason="totals_mismatch")
        # An unknown member id places the order all the same (as a counter sale's: it earns nothing);
        # refusing it would lose the customer's order over a loyalty detail.
        member_id = request.get("member_id")
        payment_id = request.get("payment_id")
        if payment_id is not None and payment_id not in payments_of(state).payments:
            raise InvalidInput(f"no payment {payment_id!r}", reason="unknown_payment")
        fulfillment = {k: v for k, v in request["fulfillment"].items() if v is not None}
        accept_by = self.clock() + timedelta(seconds=settings_of(state).orders_accept_timeout_s)
        return {"order_id": str(uuid.uuid4()), "channel": request["channel"],
                "channel_order_id": request["channel_order_id"], "currency": state.currency, "lines": lines,
                "fulfillment": fulfillment, "total_minor": request["total_minor"], "accept_by": accept_by.isoformat(),
                "request_sha256": fingerprint, "member_id": member_id, "payment_id": payment_id}

    # ---- transitions ----

    def transition(self, store_id: str, order_id: str, verb: str, reason: str = "",
                   by: str = "store") -> dict[str, Any]:
        event_name = VERBS.get(verb)
        if event_name is None:
            raise InvalidInput(f"unknown order transition {verb!r}")
        with self._lock(store_id, order_id):
            order = self.order(store_id, order_id)
            allowed, target = ORDER_TRANSITIONS[event_name]
            if order.status not in allowed:
                raise EventRefused("invalid_transition",
                                   f"order {order_id} is {order.status}: it cannot become {target}")
            data: dict[str, Any] = {"order_id": order_id, "reason": reason}
            events: list[tuple[str, dict[str, Any]]] = [(event_name, data)]
            if event_name == "order.cancelled":
                data["by"] = by
                if order.payment_id is not None:
                    data["refund_id"] = self._refund(store_id, order, reason)
            elif event_name == "order.completed" and order.payment_id is not None:
                events.append(("sale.completed", self._sale(store_id, order)))
            self.ledger.append_server_events(store_id, events)
            return self.view(store_id, order_id)

    def _refund(self, store_id: str, order: Order, reason: str) -> str | None:
        assert order.payment_id is not None
        payment = self.payments.payment(store_id, order.payment_id)
        refund_id = f"cancel-{order.order_id}"
        book = payments_of(self.ledger.store(store_id))
        if refund_id in book.refunds:
            return refund_id  # a retried cancel whose refund went through before
        remaining = payment.amount_minor - payment.refunded_minor
        if remaining <= 0 or payment.status != "captured":
            return None
        self.payments.refund(store_id, payment.payment_id, refund_id=refund_id, amount_minor=remaining,
                             reason=f"order cancelled: {reason}"[:500])
        return refund_id

    def _sale(self, store_id: str, order: Order) -> dict[str, Any]:
        assert order.payment_id is not None
        payment = self.payments.payment(store_id, order.payment_id)
        held = payment.amount_minor - payment.refunded_minor
        return {"order_id": order.order_id, "currency": order.currency,
                "lines": [{"sku": line.sku, "name": line.name, "qty": line.qty,
                           "unit_price_minor": line.unit_price_minor} for line in order.lines],
                "discount_minor": 0, "total_minor": order.total_minor,
                "tenders": [{"method": payment.tender_method, "amount_minor": held,
                             "payment_id": payment.payment_id}],
                "member_id": order.member_id, "channel": order.channel}

    # ---- accept timeout ----

    def expire_due(self, now: datetime | None = None) -> int:
        """Cancel every placed order past its deadline, in every store; the number cancelled."""
        now = now or self.clock()
        cancelled = 0
        for store_id in self.ledger.store_ids():
            try:
                book = orders_of(self.ledger.store(store_id))
            except NotFound:
                continue
            due = [book.orders[o] for o in list(book.placed) if book.orders[o].accept_by <= now]
            for order in sorted(due, key=lambda o: o.placed_position):
                try:
                    self.transition(store_id, order.order_id, "cancel", ACCEPT_TIMEOUT_REASON, by="server")
                    cancelled += 1
                except EventRefused as refused:
                    # Accepted, rejected or expired by another server meanwhile: nothing to do.
                    log.info("order %s not expired: %s", order.order_id, refused.detail)
        return cancelled

    def _lock(self, store_id: str, name: str) -> threading.Lock:
        digest = hashlib.blake2b(f"{store_id}/{name}".encode(), digest_size=4).digest()
        return self._locks[int.from_bytes(digest) % ORDER_LOCK_STRIPES]
