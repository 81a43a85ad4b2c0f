"""What the back office changes besides pages: a menu item's availability and pausing a campaign."""

from __future__ import annotations

import json

import httpx

from pos_ledger.catalog.menu import menu_of
from pos_ledger.ledger import Ledger
from pos_ledger.simulate import Client, Terminal
from tests.conftest import SERVER_SEED, LiveServer
from tests.loyalty_support import STORE, campaign, offline, ok, refused, register, sale


def test_menu_item_availability_is_a_menu_event(shop: tuple[Client, Terminal], admin: httpx.Client,
                                               live_server: LiveServer) -> None:
    items = {i["sku"]: i for i in ok(admin.get(f"/v1/stores/{STORE}/menu"))}
    assert items["LATTE"]["available"] is True  # written before the field existed: available
    sold_out = ok(admin.put(f"/v1/stores/{STORE}/menu/LATTE", json={
        "name": "Latte", "price_minor": 2800, "category": "coffee", "available": False}))
    assert sold_out["available"] is False
    items = {i["sku"]: i for i in ok(admin.get(f"/v1/stores/{STORE}/menu"))}
    assert items["LATTE"]["available"] is False and items["TART"]["available"] is True
    events = ok(admin.get(f"/v1/stores/{STORE}/events", params={"after": 0, "limit": 1000}))
    upserts = [e for e in events if '"menu.item_upserted"' in e["body"]]
    assert '"available":false' in upserts[-1]["body"]
    # Replayed from the log (a fresh ledger), the availability is the same.
    replayed = Ledger(live_server.settings.database, SERVER_SEED)
    try:
        assert menu_of(replayed.store(STORE))["LATTE"].available is False
        assert menu_of(replayed.store(STORE))["TART"].available is True
    finally:
        replayed.close()
    assert admin.put(f"/v1/stores/{STORE}/menu/LATTE", json={"name": "Latte", "price_minor": 2800,
                                                             "available": "maybe"}).status_code == 422


def test_a_paused_campaign_issues_nothing_until_resumed(shop: tuple[Client, Terminal],
                                                        admin: httpx.Client) -> None:
    client, terminal = shop
    register(admin, "alice")
    campaign(admin, "claim", issue_rule="qr_claim")
    campaign(admin, "after", issue_rule="after_payment", after_payment_min_minor=1_000, per_member_limit=5)
    qr = ok(admin.get(f"/v1/stores/{STORE}/campaigns/claim/claim-qr"))
    for campaign_id in ("claim", "after"):
        paused = ok(admin.post(f"/v1/stores/{STORE}/campaigns/{campaign_id}/pause", json={"reason": "sold out"}))
        assert paused["paused"] is True
    # Pausing twice changes nothing and writes nothing.
    head = ok(admin.get(f"/v1/stores/{STORE}/chain"))["length"]
    assert ok(admin.post(f"/v1/stores/{STORE}/campaigns/claim/pause", json={}))["paused"] is True
    assert ok(admin.get(f"/v1/stores/{STORE}/chain"))["length"] == head
    refused(admin.post(f"/v1/stores/{STORE}/coupons/claim", json={"claim_token": qr["token"],
                                                                  "member_id": "alice"}), "campaign_paused")
    refused(admin.post(f"/v1/stores/{STORE}/campaigns/claim/issue", json={"member_id": "alice"}),
            "campaign_paused")
    answer = client.post_events(STORE, "t1", [offline(terminal, "sale.completed", sale("alice", 5_000))])
    assert [r["status"] for r in answer["results"]] == ["accepted"]
    assert ok(admin.get(f"/v1/stores/{STORE}/members/alice/coupons")) == []
    # Resumed: issuing works again.
    assert ok(admin.post(f"/v1/stores/{STORE}/campaigns/claim/resume"))["paused"] is False
    coupon = ok(admin.post(f"/v1/stores/{STORE}/coupons/claim",
                           json={"claim_token": qr["token"], "member_id": "alice"}), 201)
    assert coupon["campaign_id"] == "claim"
    assert [c["paused"] for c in ok(admin.get(f"/v1/stores/{STORE}/campaigns"))] == [False, True]
    events = ok(admin.get(f"/v1/stores/{STORE}/events", params={"after": 0, "limit": 1000}))
    types = [json.loads(e["body"])["type"] for e in events if '"type":"campaign.' in e["body"]]
    assert types == ["campaign.created", "campaign.created", "campaign.paused", "campaign.paused",
                     "campaign.resumed"]
    assert admin.post(f"/v1/stores/{STORE}/campaigns/nope/pause", json={}).status_code == 404
