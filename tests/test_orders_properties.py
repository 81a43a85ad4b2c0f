"""The order state machine against a model written from the contract, on a real Ledger, and replay."""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pos_ledger.catalog.orders import orders_of
from pos_ledger.errors import EventRefused
from pos_ledger.ledger import Ledger
from pos_ledger.orders.service import Orders
from pos_ledger.payments.service import Payments
from tests.conftest import SERVER_SEED

#: The contract, written out: placed -> accepted | rejected -> preparing -> ready -> completed;
#: cancelled from any open status.
MODEL = {
    ("placed", "accept"): "accepted", ("placed", "reject"): "rejected", ("accepted", "start"): "preparing",
    ("preparing", "ready"): "ready", ("ready", "complete"): "completed",
    **{(status, "cancel"): "cancelled" for status in ("placed", "accepted", "preparing", "ready")},
}
VERBS = ["accept", "reject", "start", "ready", "complete", "cancel"]


def _ledger(path: Path) -> Ledger:
    ledger = Ledger(str(path), SERVER_SEED)
    ledger.open_store("s1", "Shop", "CNY", "Asia/Shanghai")
    ledger.append_server_events("s1", [("menu.item_upserted", {"sku": "LATTE", "name": "Latte", "price_minor": 2800,
                                                                "category": "coffee"})])
    return ledger


def _push(orders: Orders) -> str:
    order, created = orders.place("s1", {
        "channel": "douyin", "channel_order_id": uuid.uuid4().hex, "total_minor": 2800,
        "lines": [{"sku": "LATTE", "qty": 1, "unit_price_minor": 2800}], "fulfillment": {"type": "pickup"}})
    assert created
    return str(order["order_id"])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(VERBS), max_size=8))
def test_transitions_follow_the_contract_and_replay_the_same(verbs: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.sqlite3"
        ledger = _ledger(path)
        orders = Orders(ledger, Payments(ledger))
        order_id = _push(orders)
        status = "placed"
        for verb in verbs:
            expected = MODEL.get((status, verb))
            try:
                answer = orders.transition("s1", order_id, verb, reason="r")
            except EventRefused as refused:
                assert expected is None and refused.reason == "invalid_transition", (status, verb)
                continue
            assert expected is not None, (status, verb)
            assert answer["status"] == expected
            status = expected
        head = ledger.chain("s1")
        ledger.close()
        replayed = Ledger(str(path), SERVER_SEED)
        assert orders_of(replayed.store("s1")).orders[order_id].status == status
        assert replayed.chain("s1") == head
        replayed.close()


def test_expiry_cancels_only_what_is_due_and_only_once(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    now = datetime.now(UTC)
    orders = Orders(ledger, Payments(ledger), clock=lambda: now)
    due, accepted = _push(orders), _push(orders)
    orders.transition("s1", accepted, "accept")
    assert orders.expire_due(now + timedelta(seconds=299)) == 0
    assert orders.expire_due(now + timedelta(seconds=300)) == 1
    assert orders.expire_due(now + timedelta(seconds=900)) == 0
    book = orders_of(ledger.store("s1"))
    assert book.orders[due].status == "cancelled" and book.orders[due].reason == "accept_timeout"
    assert book.orders[accepted].status == "accepted"
    ledger.close()


def test_the_audit_replays_orders_and_their_sales(tmp_path: Path) -> None:
    from pos_ledger.audit import audit_store

    ledger = _ledger(tmp_path / "ledger.sqlite3")
    payments = Payments(ledger)
    orders = Orders(ledger, payments)
    paid = payments.create("s1", amount_minor=2800, currency="CNY", order_ref="online-1", method="card")
    completed, _ = orders.place("s1", {
        "channel": "meituan", "channel_order_id": "M-1", "total_minor": 2800, "payment_id": paid.payment_id,
        "lines": [{"sku": "LATTE", "qty": 1, "unit_price_minor": 2800}], "fulfillment": {"type": "pickup"}})
    for verb in ("accept", "start", "ready", "complete"):
        orders.transition("s1", completed["order_id"], verb)
    refunded = payments.create("s1", amount_minor=2800, currency="CNY", order_ref="online-2", method="card")
    cancelled, _ = orders.place("s1", {
        "channel": "eleme", "channel_order_id": "E-1", "total_minor": 2800, "payment_id": refunded.payment_id,
        "lines": [{"sku": "LATTE", "qty": 1, "unit_price_minor": 2800}], "fulfillment": {"type": "pickup"}})
    orders.transition("s1", cancelled["order_id"], "cancel", "out of milk")
    report = audit_store(ledger, "s1")
    assert report.ok, report.first_error
    balances = {account: debit - credit for account, _, debit, credit in ledger.balances("s1")}
    assert balances["revenue:sales"] == -2800 and balances["asset:card:acquirer"] == 2800
    ledger.close()
