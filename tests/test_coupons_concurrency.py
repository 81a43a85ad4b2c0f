"""50 simultaneous redemptions of one coupon: exactly one succeeds (threads and processes, both backends)."""

from __future__ import annotations

from datetime import timedelta

import httpx

from pos_ledger.ledger import Ledger
from pos_ledger.loyalty import Loyalty
from tests.conftest import ADMIN_TOKEN, SERVER_SEED, LiveServer
from tests.loyalty_concurrency import WRITERS, race_processes, race_threads
from tests.loyalty_support import NOW, STORE, campaign, issue, ok, register


def test_fifty_threads_redeem_one_coupon_over_http(live_server: LiveServer, admin: httpx.Client) -> None:
    ok(admin.post("/v1/stores", json={"store_id": STORE, "name": "S", "currency": "CNY",
                                      "timezone": "Asia/Shanghai"}), 201)
    register(admin, "alice")
    campaign(admin, "c1")
    coupon = issue(admin, "c1", "alice")
    requests = [(f"/v1/stores/{STORE}/coupons/{coupon['token']}/redeem",
                 {"order_ref": f"order-{i}", "subtotal_minor": 20_000}) for i in range(WRITERS)]
    statuses = race_threads(live_server.url, {"authorization": f"Bearer {ADMIN_TOKEN}"}, requests)
    assert statuses == {201: 1, 409: WRITERS - 1}
    read = ok(admin.get(f"/v1/stores/{STORE}/coupons/{coupon['coupon_id']}"))
    assert read["status"] == "redeemed" and len(read["redemptions"]) == 1
    balances = ok(admin.get(f"/v1/stores/{STORE}/balances"))["balances"]
    assert {b["account"]: b["balance_minor"] for b in balances}["contra:discount:coupon:c1"] == 2_000


def _redeem(loyalty: Loyalty, index: int) -> None:
    coupon_id = _redeem.coupon_id  # type: ignore[attr-defined]
    loyalty.redeem_coupon(STORE, coupon_id, redemption_id=f"p-{index}", order_ref=f"order-{index}",
                          lines=None, subtotal_minor=20_000)


def test_fifty_processes_redeem_one_coupon(database: str) -> None:
    ledger = Ledger(database, SERVER_SEED)
    try:
        loyalty = Loyalty(ledger)
        ledger.open_store(STORE, "S", "CNY", "Asia/Shanghai")
        loyalty.register_member(STORE, member_id="alice", name="", phone="")
        loyalty.create_campaign(STORE, {"campaign_id": "c1", "name": "100-20", "kind": "cash_off",
                                        "threshold_minor": 10_000, "off_minor": 2_000, "quota_total": 10,
                                        "valid_from": (NOW - timedelta(days=1)).isoformat(),
                                        "valid_until": (NOW + timedelta(days=1)).isoformat()})
        coupon = loyalty.issue_coupon(STORE, "c1", member_id="alice")
    finally:
        ledger.close()
    _redeem.coupon_id = coupon.coupon_id  # type: ignore[attr-defined]
    outcomes = race_processes(database, SERVER_SEED, STORE, _redeem)
    assert outcomes == {"ok": 1, "coupon_already_redeemed": WRITERS - 1}, outcomes
    fresh = Ledger(database, SERVER_SEED)
    try:
        coupon = Loyalty(fresh).coupon(STORE, coupon.coupon_id)
        assert len(coupon.redemptions) == 1
        books = {(a, c): d - k for a, c, d, k in fresh.balances(STORE)}
        assert books[("contra:discount:coupon:c1", "CNY")] == 2_000
    finally:
        fresh.close()
