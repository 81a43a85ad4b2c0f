"""Campaigns and coupons over real HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from pos_ledger import _core
from pos_ledger.ledger import Ledger
from pos_ledger.loyalty import store_tag
from pos_ledger.simulate import Client, Terminal, TerminalKey
from tests.loyalty_support import (
    NOW,
    STORE,
    balances,
    campaign,
    configure,
    issue,
    offline,
    ok,
    redeem,
    refused,
    register,
    sale,
)

BASKET = [{"sku": "LATTE", "qty": 3, "unit_price_minor": 2_800}, {"sku": "TART", "qty": 2, "unit_price_minor": 900}]


def test_campaign_rules_are_checked(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    created = campaign(admin, "c1")
    assert created["issued"] == 0 and created["redeemed"] == 0
    assert admin.post(f"/v1/stores/{STORE}/campaigns", json={"campaign_id": "c1"}).status_code == 422
    duplicate = admin.post(f"/v1/stores/{STORE}/campaigns", json={**{k: v for k, v in created.items()
                                                                      if k not in ("issued", "redeemed")}})
    assert duplicate.status_code == 409
    backwards = admin.post(f"/v1/stores/{STORE}/campaigns", json={
        "campaign_id": "c2", "name": "x", "kind": "cash_off", "off_minor": 1, "quota_total": 1,
        "valid_from": NOW.isoformat(), "valid_until": (NOW - timedelta(days=1)).isoformat()})
    assert backwards.status_code == 409 and backwards.json()["reason"] == "invalid_data"
    # Before 1970 or past 2106 no coupon token could carry the expiry: refused up front.
    for start, end in (("1056-01-01T00:00:00+00:00", "1057-01-01T00:00:00+00:00"),
                       (NOW.isoformat(), "2300-01-01T00:00:00+00:00")):
        ancient = admin.post(f"/v1/stores/{STORE}/campaigns", json={
            "campaign_id": "c3", "name": "x", "kind": "cash_off", "off_minor": 1, "quota_total": 1,
            "valid_from": start, "valid_until": end})
        assert ancient.status_code == 409 and ancient.json()["reason"] == "invalid_data"
    # The claim QR of a campaign that has ended is refused, not signed.
    ended = campaign(admin, "c4", issue_rule="qr_claim", valid_from=(NOW - timedelta(days=9)).isoformat(),
                     valid_until=(NOW - timedelta(days=1)).isoformat())
    assert ended["issued"] == 0
    for suffix in ("claim-qr", "claim-qr.svg"):
        answer = admin.get(f"/v1/stores/{STORE}/campaigns/c4/{suffix}")
        assert answer.status_code == 409 and answer.json()["reason"] == "campaign_not_active"


def test_issue_respects_quota_and_per_member_limit(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    register(admin, "alice")
    register(admin, "bob")
    campaign(admin, "c1", quota_total=3, per_member_limit=2)
    issue(admin, "c1", "alice")
    issue(admin, "c1", "alice")
    refused(admin.post(f"/v1/stores/{STORE}/campaigns/c1/issue", json={"member_id": "alice"}),
            "member_limit_reached")
    issue(admin, "c1", "bob")
    refused(admin.post(f"/v1/stores/{STORE}/campaigns/c1/issue", json={"member_id": "bob"}), "quota_exhausted")
    assert ok(admin.get(f"/v1/stores/{STORE}/campaigns/c1"))["issued"] == 3
    ended = campaign(admin, "old", valid_from=(NOW - timedelta(days=9)).isoformat(),
                     valid_until=(NOW - timedelta(days=1)).isoformat())
    refused(admin.post(f"/v1/stores/{STORE}/campaigns/{ended['campaign_id']}/issue", json={}),
            "campaign_not_active")


def test_a_coupon_is_written_off_once_by_scanning_its_qr(shop: tuple[Client, Terminal],
                                                         admin: httpx.Client) -> None:
    register(admin, "alice")
    campaign(admin, "c1")
    coupon = issue(admin, "c1", "alice")
    public_key = base64.b64decode(ok(admin.get(f"/v1/stores/{STORE}"))["server_public_key"])
    kind, expires_at, token_id, payload = _core.token_verify(public_key, coupon["token"], int(time.time()))
    assert (kind, bytes(token_id).hex(), bytes(payload)) == (1, coupon["coupon_id"], store_tag("s1"))
    assert expires_at == int(datetime.fromisoformat(coupon["expires_at"]).timestamp())
    svg = admin.get(f"/v1/stores/{STORE}/coupons/{coupon['coupon_id']}/qr.svg")
    assert svg.status_code == 200 and "<svg" in svg.text

    refused(redeem(admin, coupon["token"], "o1", subtotal_minor=9_999), "coupon_not_applicable")
    done = ok(redeem(admin, coupon["token"], "o1"), 201)
    assert done["discount_minor"] == 2_000 and done["created"] is True
    assert ok(redeem(admin, coupon["token"], "o1"), 200)["created"] is False  # a retry, not a second use
    length = ok(admin.get(f"/v1/stores/{STORE}/chain"))["length"]
    refused(redeem(admin, coupon["coupon_id"], "o2"), "coupon_already_redeemed")
    assert ok(admin.get(f"/v1/stores/{STORE}/chain"))["length"] == length
    read = ok(admin.get(f"/v1/stores/{STORE}/coupons/{coupon['coupon_id']}"))
    assert read["status"] == "redeemed" and len(read["redemptions"]) == 1
    assert ok(admin.get(f"/v1/stores/{STORE}/campaigns/c1"))["redeemed"] == 1
    books = balances(admin)
    assert books[("contra:discount:coupon:c1", "CNY")] == 2_000
    forged = coupon["token"][:-3] + ("AAA" if not coupon["token"].endswith("AAA") else "BBB")
    assert admin.post(f"/v1/stores/{STORE}/coupons/{forged}/redeem",
                      json={"order_ref": "o3", "subtotal_minor": 20_000}).status_code == 400


def test_percent_off_with_a_cap_and_gift_item(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    register(admin, "alice")
    campaign(admin, "pct", kind="percent_off", threshold_minor=0, off_minor=0, percent_basis_points=1_250,
             cap_minor=1_000)
    campaign(admin, "gift", kind="gift_item", threshold_minor=5_000, off_minor=0, gift_sku="TART")
    pct = issue(admin, "pct", "alice")
    gift = issue(admin, "gift", "alice")
    small = ok(redeem(admin, pct["coupon_id"], "o1", lines=[{"sku": "X", "qty": 1, "unit_price_minor": 1_012}]),
               201)
    assert small["discount_minor"] == 126  # 12.5 % of 10.12 = 1.265 -> 1.26: half-even (half up gives 1.27)
    capped = ok(redeem(admin, issue(admin, "pct", "alice")["coupon_id"], "o3",
                       lines=[{"sku": "X", "qty": 1, "unit_price_minor": 10_000}]), 201)
    assert capped["discount_minor"] == 1_000  # 12.5 % of 100.00 = 12.50, capped at 10.00
    refused(redeem(admin, gift["coupon_id"], "o2", lines=[{"sku": "LATTE", "qty": 2, "unit_price_minor": 2_800}]),
            "coupon_not_applicable")
    free = ok(redeem(admin, gift["coupon_id"], "o2", lines=BASKET), 201)
    assert free["discount_minor"] == 900


def test_best_coupon_at_checkout(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    register(admin, "alice")
    campaign(admin, "c20", threshold_minor=10_000, off_minor=2_000)
    campaign(admin, "c20soon", threshold_minor=5_000, off_minor=2_000, coupon_valid_seconds=86_400)
    campaign(admin, "c50", threshold_minor=50_000, off_minor=5_000)
    campaign(admin, "pct", kind="percent_off", threshold_minor=0, off_minor=0, percent_basis_points=1_000)
    late = issue(admin, "c20", "alice")
    soon = issue(admin, "c20soon", "alice")
    issue(admin, "c50", "alice")
    issue(admin, "pct", "alice")
    answer = ok(admin.post(f"/v1/stores/{STORE}/checkout/best-coupon", json={"member_id": "alice",
                                                                             "lines": BASKET}))
    # basket 102.00: c50 does not apply; 20 off twice (tie) beats 10 % = 10.20
    assert [a["campaign_id"] for a in answer["applicable"]] == ["c20soon", "c20", "pct"]
    assert answer["best"]["coupon_id"] == soon["coupon_id"] and answer["best"]["saving_minor"] == 2_000
    ok(redeem(admin, soon["coupon_id"], "o1", lines=BASKET), 201)
    again = ok(admin.post(f"/v1/stores/{STORE}/checkout/best-coupon", json={"member_id": "alice",
                                                                            "lines": BASKET}))
    assert again["best"]["coupon_id"] == late["coupon_id"]
    none = ok(admin.post(f"/v1/stores/{STORE}/checkout/best-coupon", json={
        "member_id": "alice", "lines": [{"sku": "X", "qty": 1, "unit_price_minor": 0}]}))
    assert none == {"applicable": [], "best": None}


def test_qr_claim_issues_one_coupon_per_member_limit(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    register(admin, "alice")
    campaign(admin, "claim", issue_rule="qr_claim", per_member_limit=1)
    campaign(admin, "manual")
    qr = ok(admin.get(f"/v1/stores/{STORE}/campaigns/claim/claim-qr"))
    assert admin.get(f"/v1/stores/{STORE}/campaigns/claim/claim-qr.svg").status_code == 200
    assert admin.get(f"/v1/stores/{STORE}/campaigns/manual/claim-qr").status_code == 422
    coupon = ok(admin.post(f"/v1/stores/{STORE}/coupons/claim",
                           json={"claim_token": qr["token"], "member_id": "alice"}), 201)
    assert coupon["source"] == "qr_claim" and coupon["member_id"] == "alice"
    refused(admin.post(f"/v1/stores/{STORE}/coupons/claim", json={"claim_token": qr["token"],
                                                                  "member_id": "alice"}),
            "member_limit_reached")
    join = ok(admin.get(f"/v1/stores/{STORE}/join-qr"))
    wrong = admin.post(f"/v1/stores/{STORE}/coupons/claim", json={"claim_token": join["token"],
                                                                  "member_id": "alice"})
    assert wrong.status_code == 400


def test_coupons_are_issued_right_after_a_qualifying_payment(shop: tuple[Client, Terminal],
                                                             admin: httpx.Client) -> None:
    client, terminal = shop
    register(admin, "alice")
    campaign(admin, "after", issue_rule="after_payment", after_payment_min_minor=5_000, per_member_limit=5)
    answer = client.post_events(STORE, "t1", [
        offline(terminal, "sale.completed", sale("alice", 4_999)),
        offline(terminal, "sale.completed", sale("alice", 5_000)),
        offline(terminal, "sale.completed", sale(None, 9_000)),
    ])
    assert [r["status"] for r in answer["results"]] == ["accepted"] * 3
    coupons = ok(admin.get(f"/v1/stores/{STORE}/members/alice/coupons"))
    assert [(c["campaign_id"], c["source"], c["status"]) for c in coupons] == [("after", "after_payment",
                                                                                 "active")]


def test_void_and_expiry_are_refused_online(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    register(admin, "alice")
    campaign(admin, "c1")
    coupon = issue(admin, "c1", "alice")
    ok(admin.post(f"/v1/stores/{STORE}/coupons/{coupon['coupon_id']}/void", json={"reason": "mistake"}))
    refused(redeem(admin, coupon["coupon_id"], "o1"), "coupon_voided")
    refused(admin.post(f"/v1/stores/{STORE}/coupons/{coupon['coupon_id']}/void", json={}), "coupon_voided")
    # Expiry: a campaign ending two seconds from now; its coupon is refused once that instant passes.
    ends = datetime.now(UTC) + timedelta(seconds=2)
    campaign(admin, "brief", valid_until=ends.isoformat())
    brief = issue(admin, "brief", "alice")
    assert datetime.fromisoformat(brief["expires_at"]) == ends
    time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.1)
    assert ok(admin.get(f"/v1/stores/{STORE}/coupons/{brief['coupon_id']}"))["status"] == "expired"
    refused(redeem(admin, brief["coupon_id"], "o2"), "coupon_expired")
    assert ok(admin.get(f"/v1/stores/{STORE}/campaigns/brief"))["redeemed"] == 0


def test_offline_double_redemption_at_two_terminals_is_one_conflict(shop: tuple[Client, Terminal],
                                                                    admin: httpx.Client) -> None:
    client, first = shop
    second = Terminal(TerminalKey.generate("t2"), seq=0)
    client.register_terminal(STORE, second.key, "till 2")
    register(admin, "alice")
    campaign(admin, "c1")
    coupon = issue(admin, "c1", "alice")
    at = datetime.now(UTC)

    def fact(terminal: Terminal, redemption_id: str) -> dict[str, str]:
        return offline(terminal, "coupon.redeemed", {
            "coupon_id": coupon["coupon_id"], "redemption_id": redemption_id, "order_ref": str(uuid.uuid4()),
            "currency": "CNY", "discount_minor": 2_000, "redeemed_at": at.isoformat(), "offline": True})

    queue_1, queue_2 = [fact(first, "t1-r1")], [fact(second, "t2-r1")]
    for _ in range(2):  # each terminal syncs its queue twice
        assert client.post_events(STORE, "t1", queue_1)["results"][0]["status"] in ("accepted", "duplicate")
        assert client.post_events(STORE, "t2", queue_2)["results"][0]["status"] in ("accepted", "duplicate")
    conflicts = ok(admin.get(f"/v1/stores/{STORE}/conflicts"))
    assert [(c["kind"], c["coupon_id"], c["fact_terminal_id"]) for c in conflicts] == [
        ("coupon_double_redemption", coupon["coupon_id"], "t2")]
    assert ok(admin.get(f"/v1/stores/{STORE}/campaigns/c1"))["redeemed"] == 1
    books = balances(admin)
    assert books[("contra:discount:coupon:c1", "CNY")] == 2_000  # the campaign is charged once
    assert books[("expense:loss:coupon_conflict", "CNY")] == 2_000  # the second use is not lost silently
    read = ok(admin.get(f"/v1/stores/{STORE}/coupons/{coupon['coupon_id']}"))
    assert [r["conflict"] for r in read["redemptions"]] == ["", "coupon_already_redeemed"]
    refused(redeem(admin, coupon["coupon_id"], "o9"), "coupon_already_redeemed")


def test_an_offline_redemption_after_expiry_is_a_conflict(shop: tuple[Client, Terminal],
                                                          admin: httpx.Client) -> None:
    client, terminal = shop
    register(admin, "alice")
    campaign(admin, "short", coupon_valid_seconds=3_600)
    coupon = issue(admin, "short", "alice")
    late = datetime.fromisoformat(coupon["expires_at"]) + timedelta(seconds=1)
    answer = client.post_events(STORE, "t1", [offline(terminal, "coupon.redeemed", {
        "coupon_id": coupon["coupon_id"], "redemption_id": "late-1", "order_ref": "o1", "currency": "CNY",
        "discount_minor": 2_000, "redeemed_at": late.isoformat(), "offline": True}, at=late)])
    assert answer["results"][0]["status"] == "accepted"
    assert [c["kind"] for c in ok(admin.get(f"/v1/stores/{STORE}/conflicts"))] == ["coupon_redeemed_expired"]
    assert ok(admin.get(f"/v1/stores/{STORE}/campaigns/short"))["redeemed"] == 0
    configure(admin)


def test_expiry_is_derived_from_time_not_from_a_job(ledger: Ledger) -> None:
    from pos_ledger.catalog.coupons import BasketLine
    from pos_ledger.errors import EventRefused
    from pos_ledger.loyalty import Loyalty

    loyalty = Loyalty(ledger)
    ledger.open_store(STORE, "S", "CNY", "UTC")
    loyalty.register_member(STORE, member_id="alice", name="", phone="")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    loyalty.create_campaign(STORE, {"campaign_id": "jan", "name": "January", "kind": "cash_off",
                                    "off_minor": 500, "quota_total": 10, "coupon_valid_seconds": 7 * 86_400,
                                    "valid_from": start.isoformat(),
                                    "valid_until": (start + timedelta(days=31)).isoformat()})
    issued_at = start + timedelta(days=28)
    coupon = loyalty.issue_coupon(STORE, "jan", member_id="alice", now=issued_at)
    assert coupon.expires_at == start + timedelta(days=31)  # the campaign ends before the 7 days do
    basket = [BasketLine("LATTE", 1, 2_800)]
    assert [a.saving_minor for a in loyalty.best_coupons(STORE, "alice", basket, now=issued_at)] == [500]
    assert loyalty.best_coupons(STORE, "alice", basket, now=coupon.expires_at) == []
    for now, reason in ((coupon.expires_at, "coupon_expired"), (start - timedelta(seconds=1), "coupon_not_yet_valid")):
        try:
            loyalty.redeem_coupon(STORE, coupon.coupon_id, redemption_id=f"r-{reason}", order_ref="o1",
                                  lines=basket, subtotal_minor=None, now=now)
        except EventRefused as refused:
            assert refused.reason == reason
        else:
            raise AssertionError("an expired coupon was redeemed")
    _, redemption, created = loyalty.redeem_coupon(STORE, coupon.coupon_id, redemption_id="ok", order_ref="o1",
                                                   lines=basket, subtotal_minor=None,
                                                   now=coupon.expires_at - timedelta(seconds=1))
    assert created and redemption.discount_minor == 500
