"""50 simultaneous spends that together exceed a balance: it never goes below zero (threads, processes, both backends)."""

from __future__ import annotations

import httpx

from pos_ledger.ledger import Ledger
from pos_ledger.loyalty import Loyalty
from tests.conftest import ADMIN_TOKEN, SERVER_SEED, LiveServer
from tests.loyalty_concurrency import WRITERS, race_processes, race_threads
from tests.loyalty_support import STORE, member, ok, recharge, register

BALANCE_MINOR = 10_000
SPEND_MINOR = 1_000  # 50 spends of 10.00 against 100.00: exactly 10 can succeed


def test_fifty_threads_spend_more_than_the_balance_over_http(live_server: LiveServer,
                                                             admin: httpx.Client) -> None:
    ok(admin.post("/v1/stores", json={"store_id": STORE, "name": "S", "currency": "CNY",
                                      "timezone": "Asia/Shanghai"}), 201)
    register(admin, "alice")
    ok(recharge(admin, "alice", BALANCE_MINOR, "r1"), 201)
    requests = [(f"/v1/stores/{STORE}/members/alice/spend",
                 {"amount_minor": SPEND_MINOR, "order_ref": f"order-{i}", "spend_id": f"s-{i}"})
                for i in range(WRITERS)]
    statuses = race_threads(live_server.url, {"authorization": f"Bearer {ADMIN_TOKEN}"}, requests)
    successes = BALANCE_MINOR // SPEND_MINOR
    assert statuses == {201: successes, 409: WRITERS - successes}
    assert member(admin, "alice")["balance_minor"] == 0
    rows = ok(admin.get(f"/v1/stores/{STORE}/balances"))["balances"]
    books = {r["account"]: r["balance_minor"] for r in rows}
    assert books["liability:stored_value:alice:principal"] == 0
    assert books["revenue:sales"] == -BALANCE_MINOR
    assert ok(admin.get(f"/v1/stores/{STORE}/conflicts")) == []


def _spend(loyalty: Loyalty, index: int) -> None:
    loyalty.spend(STORE, "alice", spend_id=f"s-{index}", amount_minor=SPEND_MINOR, currency="CNY",
                  order_ref=f"order-{index}")


def test_fifty_processes_spend_more_than_the_balance(database: str) -> None:
    ledger = Ledger(database, SERVER_SEED)
    try:
        loyalty = Loyalty(ledger)
        ledger.open_store(STORE, "S", "CNY", "Asia/Shanghai")
        loyalty.register_member(STORE, member_id="alice", name="", phone="")
        loyalty.recharge(STORE, "alice", recharge_id="r1", paid_minor=BALANCE_MINOR, currency="CNY",
                         method="cash")
    finally:
        ledger.close()
    outcomes = race_processes(database, SERVER_SEED, STORE, _spend)
    successes = BALANCE_MINOR // SPEND_MINOR
    assert outcomes == {"ok": successes, "insufficient_stored_value": WRITERS - successes}, outcomes
    fresh = Ledger(database, SERVER_SEED)
    try:
        alice = Loyalty(fresh).member(STORE, "alice")
        assert alice.balance_minor == 0 and len(alice.spends) == successes
        books = {(a, c): d - k for a, c, d, k in fresh.balances(STORE)}
        assert books[("liability:stored_value:alice:principal", "CNY")] == 0
    finally:
        fresh.close()
