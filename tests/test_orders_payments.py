"""Paid online orders: completion is a sale (revenue by channel), cancellation refunds, an unpaid
payment places nothing. Payments go through the real sandbox provider."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.payments_fixtures import (  # noqa: F401  (fixtures)
    STORE,
    PayingServer,
    Sandbox,
    admin,
    balances,
    chain_length,
    ok,
    pay,
    problem,
    sandbox,
    server,
    till,
)


@pytest.fixture
def menu(admin: httpx.Client) -> httpx.Client:  # noqa: F811
    for sku, price, category in (("LATTE", 2800, "coffee"), ("TART", 900, "bakery")):
        ok(admin.put(f"/v1/stores/{STORE}/menu/{sku}", json={"name": sku, "price_minor": price, "category": category}))
    return admin


def push(admin: httpx.Client, payment_id: str | None, channel: str = "meituan") -> httpx.Response:  # noqa: F811
    body: dict[str, Any] = {"channel": channel, "channel_order_id": uuid.uuid4().hex,
                            "lines": [{"sku": "LATTE", "qty": 2, "unit_price_minor": 2800},
                                      {"sku": "TART", "qty": 1, "unit_price_minor": 900}],
                            "fulfillment": {"type": "delivery", "address": "上海市徐汇区漕溪北路 1 号"},
                            "total_minor": 6500}
    if payment_id is not None:
        body["payment_id"] = payment_id
    return admin.post(f"/v1/stores/{STORE}/orders", json=body)


def sales_in_log(admin: httpx.Client) -> list[dict[str, Any]]:  # noqa: F811
    entries = ok(admin.get(f"/v1/stores/{STORE}/events", params={"limit": 1000}))
    bodies = [json.loads(e["body"]) for e in entries]
    return [b["data"] for b in bodies if b["type"] == "sale.completed"]


def test_a_completed_paid_order_is_one_sale_on_its_channel(menu: httpx.Client) -> None:
    payment = ok(pay(menu, 6500, method="card"), 201)
    order = ok(push(menu, payment["payment_id"]), 201)
    assert order["payment_id"] == payment["payment_id"]
    for verb in ("accept", "start", "ready", "complete"):
        ok(menu.post(f"/v1/stores/{STORE}/orders/{order['order_id']}/{verb}", json={}))
    [sale] = sales_in_log(menu)
    assert sale["channel"] == "meituan" and sale["order_id"] == order["order_id"]
    assert sale["total_minor"] == 6500 and sale["tenders"][0]["payment_id"] == payment["payment_id"]
    money = balances(menu)
    assert money["revenue:sales"] == -6500 and money["asset:card:acquirer"] == 6500
    assert "liability:unapplied_payments" not in money  # applied: nothing left owed
    applied = ok(menu.get(f"/v1/stores/{STORE}/payments/{payment['payment_id']}"))
    assert applied["applied_order_id"] == order["order_id"]


def test_a_cancelled_paid_order_is_refunded_once(menu: httpx.Client) -> None:
    payment = ok(pay(menu, 6500, method="card"), 201)
    order = ok(push(menu, payment["payment_id"]), 201)
    ok(menu.post(f"/v1/stores/{STORE}/orders/{order['order_id']}/accept", json={}))
    cancelled = ok(menu.post(f"/v1/stores/{STORE}/orders/{order['order_id']}/cancel", json={"reason": "out of milk"}))
    assert cancelled["status"] == "cancelled" and cancelled["refund_id"] == f"cancel-{order['order_id']}"
    refunded = ok(menu.get(f"/v1/stores/{STORE}/payments/{payment['payment_id']}"))
    assert refunded["refunded_minor"] == 6500 and refunded["refund_ids"] == [cancelled["refund_id"]]
    again = menu.post(f"/v1/stores/{STORE}/orders/{order['order_id']}/cancel", json={})
    assert problem(again, 409)["reason"] == "invalid_transition"
    assert ok(menu.get(f"/v1/stores/{STORE}/payments/{payment['payment_id']}"))["refunded_minor"] == 6500
    assert sales_in_log(menu) == []
    assert balances(menu).get("asset:card:acquirer", 0) == 0


def test_a_provider_paid_order_cancelled_is_refunded_through_the_provider(menu: httpx.Client,
                                                                         sandbox: Sandbox) -> None:  # noqa: F811
    payment = ok(pay(menu, 6500), 201)
    sandbox.pay(payment["payment_id"], "wechat")
    captured = ok(menu.get(f"/v1/stores/{STORE}/payments/{payment['payment_id']}"))
    assert captured["status"] == "captured"
    order = ok(push(menu, payment["payment_id"], channel="mini_program"), 201)
    cancelled = ok(menu.post(f"/v1/stores/{STORE}/orders/{order['order_id']}/cancel", json={}))
    assert cancelled["refund_id"] is not None
    assert balances(menu).get("asset:psp:wechat", 0) == 0


def test_unpaid_or_mismatched_payments_place_nothing(menu: httpx.Client) -> None:
    pending = ok(pay(menu, 6500), 201)
    assert pending["status"] == "pending"
    length = chain_length(menu)
    assert problem(push(menu, pending["payment_id"]), 409)["reason"] == "payment_not_captured"
    short = ok(pay(menu, 6400, method="card"), 201)
    length = chain_length(menu)
    assert problem(push(menu, short["payment_id"]), 409)["reason"] == "payment_amount_mismatch"
    assert chain_length(menu) == length
    paid = ok(pay(menu, 6500, method="card"), 201)
    ok(push(menu, paid["payment_id"]), 201)
    length = chain_length(menu)
    assert problem(push(menu, paid["payment_id"]), 409)["reason"] == "payment_already_applied"
    assert chain_length(menu) == length


def test_the_till_pushes_and_reads_with_its_signature(menu: httpx.Client, till: Any) -> None:  # noqa: F811
    order = till.post(f"/v1/stores/{STORE}/orders", {
        "channel": "phone", "channel_order_id": "call-1", "lines": [{"sku": "TART", "qty": 2, "unit_price_minor": 900}],
        "fulfillment": {"type": "dine_in", "table": "A3"}, "total_minor": 1800})
    assert order.status_code == 201, order.text
    read = till.get(f"/v1/stores/{STORE}/orders/{order.json()['order_id']}")
    assert read.status_code == 200 and read.json()["fulfillment"] == {"type": "dine_in", "table": "A3"}
