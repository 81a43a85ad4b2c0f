"""Members and stored value over real HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import time
import uuid

import httpx

from pos_ledger import _core
from pos_ledger.loyalty import store_tag
from pos_ledger.simulate import Client, Terminal
from tests.loyalty_support import (
    PROBLEM,
    STORE,
    balances,
    configure,
    member,
    offline,
    ok,
    recharge,
    refused,
    register,
    sale,
    spend,
)


def chain_length(admin: httpx.Client) -> int:
    length: int = ok(admin.get(f"/v1/stores/{STORE}/chain"))["length"]
    return length


def test_register_and_read_a_member(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    configure(admin)
    created = register(admin, "alice", phone="13800000000")
    assert created["tier"] == "standard" and created["balance_minor"] == 0 and created["points"] == 0
    assert member(admin, "alice")["phone"] == "13800000000"
    missing = admin.get(f"/v1/stores/{STORE}/members/nobody")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)
    again = admin.post(f"/v1/stores/{STORE}/members", json={"member_id": "alice"})
    assert again.status_code == 409
    assert admin.post(f"/v1/stores/{STORE}/members", json={"name": "no auth"},
                      headers={"authorization": "Bearer wrong"}).status_code == 401


def test_recharge_applies_the_best_rule_and_is_idempotent(shop: tuple[Client, Terminal],
                                                          admin: httpx.Client) -> None:
    configure(admin)
    register(admin, "alice")
    small = ok(recharge(admin, "alice", 5_000, "r0"), 201)
    assert (small["bonus_minor"], small["rule_name"]) == (0, "")
    first = ok(recharge(admin, "alice", 30_000, "r1"), 201)
    assert (first["bonus_minor"], first["rule_name"]) == (8_000, "pay 300 get 80")
    big = ok(recharge(admin, "alice", 60_000, "r2"), 201)
    assert (big["bonus_minor"], big["rule_name"]) == (16_000, "pay 500 get 10%+100")
    retried = ok(recharge(admin, "alice", 30_000, "r1"), 200)
    assert retried["created"] is False and retried["bonus_minor"] == 8_000
    reused = recharge(admin, "alice", 1_000, "r1")
    assert reused.status_code == 409
    state = member(admin, "alice")
    assert (state["principal_minor"], state["bonus_minor"]) == (95_000, 24_000)
    books = balances(admin)
    assert books[("liability:stored_value:alice:principal", "CNY")] == -95_000
    assert books[("liability:stored_value:alice:bonus", "CNY")] == -24_000
    assert books[("expense:promotion:recharge_bonus", "CNY")] == 24_000
    assert books[("asset:psp:wechat", "CNY")] == 95_000


def test_spend_uses_principal_then_bonus_and_never_overdraws(shop: tuple[Client, Terminal],
                                                             admin: httpx.Client) -> None:
    configure(admin)
    register(admin, "alice")
    ok(recharge(admin, "alice", 10_000, "r1"), 201)  # 100 + 20 bonus
    first = ok(spend(admin, "alice", 11_000, "o1"), 201)
    assert (first["principal_minor"], first["bonus_minor"]) == (10_000, 1_000)
    length, before = chain_length(admin), balances(admin)
    body = refused(spend(admin, "alice", 1_001, "o2"), "insufficient_stored_value")
    assert body["type"].endswith("/rule-violated")
    assert chain_length(admin) == length and balances(admin) == before  # nothing written
    ok(spend(admin, "alice", 1_000, "o2"), 201)
    assert member(admin, "alice")["balance_minor"] == 0
    retry = spend(admin, "alice", 1_000, "o2", spend_id=first["spend_id"])
    assert retry.status_code == 409  # same key, different spend: refused, not applied


def test_refunding_a_recharge_returns_only_unspent_principal_and_voids_its_bonus(
        shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    configure(admin)
    register(admin, "alice")
    ok(recharge(admin, "alice", 10_000, "r1", method="alipay"), 201)
    ok(spend(admin, "alice", 3_000, "o1"), 201)
    refund = ok(admin.post(f"/v1/stores/{STORE}/members/alice/recharges/r1/refund"))
    assert (refund["principal_returned_minor"], refund["bonus_voided_minor"]) == (7_000, 2_000)
    assert refund["member"]["balance_minor"] == 0
    again = admin.post(f"/v1/stores/{STORE}/members/alice/recharges/r1/refund")
    assert refused(again, "recharge_already_refunded")
    books = balances(admin)
    assert books[("liability:stored_value:alice:principal", "CNY")] == 0
    assert books[("liability:stored_value:alice:bonus", "CNY")] == 0
    assert books[("asset:psp:alipay", "CNY")] == 3_000
    assert books[("expense:promotion:recharge_bonus", "CNY")] == 0


def test_points_tiers_and_points_redemption(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    configure(admin)
    register(admin, "alice")
    url = f"/v1/stores/{STORE}/members/alice"
    earned = ok(admin.post(f"{url}/checkout/confirm", json={"order_ref": "o1", "amount_minor": 60_050}))
    assert earned["points_earned"] == 600 and earned["member"]["tier"] == "silver"
    redeemed = ok(admin.post(f"{url}/points/redeem", json={"points": 100, "order_ref": "o2"}), 201)
    assert redeemed["discount_minor"] == 100 and redeemed["member"]["points"] == 500
    refused(admin.post(f"{url}/points/redeem", json={"points": 501, "order_ref": "o3"}), "insufficient_points")
    books = balances(admin)
    assert books[("liability:points:alice", "PTS")] == -500
    assert books[("contra:discount:points", "CNY")] == 100


def test_member_card_qr_verifies_offline_with_the_server_key(shop: tuple[Client, Terminal],
                                                             admin: httpx.Client) -> None:
    register(admin, "alice")
    card = ok(admin.get(f"/v1/stores/{STORE}/members/alice/card"))
    public_key = base64.b64decode(ok(admin.get(f"/v1/stores/{STORE}"))["server_public_key"])
    assert base64.b64decode(card["server_public_key"]) == public_key
    kind, expires_at, token_id, payload = _core.token_verify(public_key, card["token"], int(time.time()))
    assert kind == 2 and bytes(payload) == store_tag("s1") and expires_at == card["expires_at"]
    assert bytes(token_id).hex() == member(admin, "alice")["card_id"]  # what a terminal caches
    assert ok(admin.post(f"/v1/stores/{STORE}/members/card/verify", json={"token": card["token"]}))[
        "member_id"] == "alice"
    svg = admin.get(f"/v1/stores/{STORE}/members/alice/card.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in svg.text


def test_a_customer_opens_a_card_by_scanning_the_store_qr(shop: tuple[Client, Terminal],
                                                          admin: httpx.Client) -> None:
    join = ok(admin.get(f"/v1/stores/{STORE}/join-qr"))
    created = ok(admin.post(f"/v1/stores/{STORE}/members", json={"join_token": join["token"]}), 201)
    assert created["source"] == "qr_join" and created["member_id"]
    tampered = join["token"][:-4] + ("AAAA" if not join["token"].endswith("AAAA") else "BBBB")
    bad = admin.post(f"/v1/stores/{STORE}/members", json={"join_token": tampered})
    assert bad.status_code == 400 and bad.json()["type"].endswith("/token-invalid")
    card = ok(admin.get(f"/v1/stores/{STORE}/members/{created['member_id']}/card"))
    wrong_kind = admin.post(f"/v1/stores/{STORE}/members", json={"join_token": card["token"]})
    assert wrong_kind.status_code == 400


def test_a_sale_paid_from_member_balance_spends_it_and_earns_points(shop: tuple[Client, Terminal],
                                                                   admin: httpx.Client) -> None:
    client, terminal = shop
    configure(admin)
    register(admin, "alice")
    ok(recharge(admin, "alice", 10_000, "r1"), 201)
    answer = client.post_events(STORE, "t1", [offline(terminal, "sale.completed",
                                                      sale("alice", 5_000, "member_balance"))])
    assert answer["results"][0]["status"] == "accepted"
    state = member(admin, "alice")
    assert state["balance_minor"] == 7_000 and state["points"] == 50
    books = balances(admin)
    assert books.get(("clearing:stored_value", "CNY"), 0) == 0
    assert books[("revenue:sales", "CNY")] == -5_000
    no_member = client.post_events(STORE, "t1", [offline(terminal, "sale.completed",
                                                         sale(None, 100, "member_balance"))])
    assert no_member["results"][0]["reason"] == "member_required"


def test_an_offline_spend_that_overdraws_is_recorded_as_a_conflict(shop: tuple[Client, Terminal],
                                                                  admin: httpx.Client) -> None:
    client, terminal = shop
    register(admin, "alice")
    ok(recharge(admin, "alice", 5_000, "r1"), 201)
    fact = {"member_id": "alice", "spend_id": "t1-sp-1", "currency": "CNY", "amount_minor": 8_000,
            "order_ref": str(uuid.uuid4()), "offline": True}
    answer = client.post_events(STORE, "t1", [offline(terminal, "stored_value.spent", fact)])
    assert answer["results"][0]["status"] == "accepted"
    assert member(admin, "alice")["balance_minor"] == 0
    conflicts = ok(admin.get(f"/v1/stores/{STORE}/conflicts"))
    assert [(c["kind"], c["amount_minor"], c["member_id"]) for c in conflicts] == [
        ("stored_value_overdrawn", 3_000, "alice")]
    books = balances(admin)
    assert books[("liability:stored_value:alice:principal", "CNY")] == 0
    assert books[("asset:receivable:stored_value:alice", "CNY")] == 3_000
    resolved = ok(admin.post(f"/v1/stores/{STORE}/conflicts/{conflicts[0]['conflict_id']}/resolve", json={
        "note": "collected in cash", "postings": [
            {"account": "asset:cash:server", "currency": "CNY", "amount_minor": 3_000},
            {"account": "asset:receivable:stored_value:alice", "currency": "CNY", "amount_minor": -3_000}]}))
    assert resolved["resolved"] is True
    assert ok(admin.get(f"/v1/stores/{STORE}/conflicts")) == []
    assert balances(admin)[("asset:receivable:stored_value:alice", "CNY")] == 0
