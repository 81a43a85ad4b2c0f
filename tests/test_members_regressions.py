"""Regression tests for failures other POS systems are known for (points and stored value)."""

from __future__ import annotations

import json
import uuid

import httpx

from pos_ledger.simulate import Client, Terminal, TerminalKey
from tests.loyalty_support import (
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

URL = f"/v1/stores/{STORE}/members/alice"


def refund(admin: httpx.Client, order_ref: str, refund_id: str, amount_minor: int,
           includes_reward_line: bool = False) -> httpx.Response:
    return admin.post(f"{URL}/orders/{order_ref}/refund", json={
        "refund_id": refund_id, "amount_minor": amount_minor, "includes_reward_line": includes_reward_line})


def test_a_retried_checkout_confirmation_applies_points_once(shop: tuple[Client, Terminal],
                                                             admin: httpx.Client) -> None:
    client, terminal = shop
    configure(admin)
    register(admin, "alice")
    for attempt in range(3):
        answer = ok(admin.post(f"{URL}/checkout/confirm", json={"order_ref": "o1", "amount_minor": 12_345}))
        assert answer["points_earned"] == 123 and answer["created"] is (attempt == 0)
    assert member(admin, "alice")["points"] == 123
    # The terminal retries its sale confirmation: the same signed body, then a re-signed copy.
    order_id = str(uuid.uuid4())
    event = offline(terminal, "sale.completed", sale("alice", 5_000, order_id=order_id))
    assert client.post_events(STORE, "t1", [event])["results"][0]["status"] == "accepted"
    assert client.post_events(STORE, "t1", [event])["results"][0]["status"] == "duplicate"
    resent = offline(terminal, "sale.completed", json.loads(event["body"])["data"])
    assert client.post_events(STORE, "t1", [resent])["results"][0]["status"] == "accepted"
    assert member(admin, "alice")["points"] == 123 + 50
    assert balances(admin)[("liability:points:alice", "PTS")] == -173


def test_refunding_an_order_that_earned_and_spent_points_reverses_both_once(
        shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    configure(admin)
    register(admin, "alice")
    ok(admin.post(f"{URL}/checkout/confirm", json={"order_ref": "seed", "amount_minor": 5_000}))  # 50 points
    ok(admin.post(f"{URL}/points/redeem", json={"points": 30, "order_ref": "o1"}), 201)
    ok(admin.post(f"{URL}/checkout/confirm", json={"order_ref": "o1", "amount_minor": 10_000}))  # 100 points
    assert member(admin, "alice")["points"] == 120
    first = ok(refund(admin, "o1", "rf1", 10_000))
    assert (first["points_earned_reversed_total"], first["points_spent_returned_total"]) == (100, 30)
    assert first["member"]["points"] == 50 and first["created"] is True
    retry = ok(refund(admin, "o1", "rf1", 10_000))
    assert retry["created"] is False and retry["member"]["points"] == 50
    refused(refund(admin, "o1", "rf2", 1), "refund_exceeds_order")
    assert member(admin, "alice")["points"] == 50
    assert balances(admin)[("liability:points:alice", "PTS")] == -50


def test_partial_refunds_with_and_without_the_reward_line(shop: tuple[Client, Terminal],
                                                          admin: httpx.Client) -> None:
    configure(admin)
    register(admin, "alice")
    ok(admin.post(f"{URL}/checkout/confirm", json={"order_ref": "seed", "amount_minor": 10_000}))  # 100
    ok(admin.post(f"{URL}/points/redeem", json={"points": 40, "order_ref": "o1"}), 201)  # the reward line
    ok(admin.post(f"{URL}/checkout/confirm", json={"order_ref": "o1", "amount_minor": 10_001}))  # 100
    assert member(admin, "alice")["points"] == 160
    without = ok(refund(admin, "o1", "p1", 3_333))
    assert (without["points_earned_reversed_total"], without["points_spent_returned_total"]) == (33, 0)
    with_reward = ok(refund(admin, "o1", "p2", 3_333, includes_reward_line=True))
    assert (with_reward["points_earned_reversed_total"], with_reward["points_spent_returned_total"]) == (66, 40)
    rest = ok(refund(admin, "o1", "p3", 3_335, includes_reward_line=True))
    assert (rest["points_earned_reversed_total"], rest["points_spent_returned_total"]) == (100, 40)
    assert rest["member"]["points"] == 100  # back to what the seed order earned

    # Without the reward line until the order is fully refunded: the spent points come back then.
    ok(admin.post(f"{URL}/points/redeem", json={"points": 20, "order_ref": "o2"}), 201)
    ok(admin.post(f"{URL}/checkout/confirm", json={"order_ref": "o2", "amount_minor": 2_000}))
    assert ok(refund(admin, "o2", "q1", 1_000))["points_spent_returned_total"] == 0
    last = ok(refund(admin, "o2", "q2", 1_000))
    assert (last["points_earned_reversed_total"], last["points_spent_returned_total"]) == (20, 20)
    assert last["member"]["points"] == 100


def test_refund_reverses_points_earned_by_a_terminal_sale_and_returns_its_stored_value(
        shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    client, terminal = shop
    configure(admin)
    register(admin, "alice")
    ok(recharge(admin, "alice", 10_000, "r1"), 201)
    order_id = str(uuid.uuid4())
    client.post_events(STORE, "t1", [offline(terminal, "sale.completed",
                                             sale("alice", 8_000, "member_balance", order_id=order_id))])
    assert (member(admin, "alice")["balance_minor"], member(admin, "alice")["points"]) == (4_000, 80)
    half = ok(refund(admin, order_id, "rf1", 4_000))
    assert half["stored_value_returned_total_minor"] == 4_000 and half["points_earned_reversed_total"] == 40
    assert ok(refund(admin, order_id, "rf1", 4_000))["created"] is False
    state = member(admin, "alice")
    assert (state["principal_minor"], state["bonus_minor"], state["points"]) == (6_000, 2_000, 40)


def test_two_offline_terminals_syncing_the_same_queue_twice(shop: tuple[Client, Terminal],
                                                            admin: httpx.Client) -> None:
    client, first = shop
    second = Terminal(TerminalKey.generate("t2"), seq=0)
    client.register_terminal(STORE, second.key, "till 2")
    configure(admin)
    register(admin, "alice")
    ok(recharge(admin, "alice", 10_000, "r1"), 201)  # 120.00 to spend

    def spend_fact(terminal: Terminal, spend_id: str, amount_minor: int) -> dict[str, str]:
        return offline(terminal, "stored_value.spent", {
            "member_id": "alice", "spend_id": spend_id, "currency": "CNY", "amount_minor": amount_minor,
            "order_ref": spend_id, "offline": True})

    queue_1 = [spend_fact(first, "t1-a", 5_000), spend_fact(first, "t1-b", 2_000)]
    queue_2 = [spend_fact(second, "t2-a", 7_000)]
    for sync in range(2):
        expected = "accepted" if sync == 0 else "duplicate"
        assert {r["status"] for r in client.post_events(STORE, "t1", queue_1)["results"]} == {expected}
        assert {r["status"] for r in client.post_events(STORE, "t2", queue_2)["results"]} == {expected}
    assert member(admin, "alice")["balance_minor"] == 0
    conflicts = ok(admin.get(f"/v1/stores/{STORE}/conflicts"))
    assert [(c["kind"], c["amount_minor"], c["fact_terminal_id"]) for c in conflicts] == [
        ("stored_value_overdrawn", 2_000, "t2")]
    books = balances(admin)
    assert books[("revenue:sales", "CNY")] == -14_000  # every spend counted once
    assert books[("asset:receivable:stored_value:alice", "CNY")] == 2_000
    assert books[("liability:stored_value:alice:principal", "CNY")] == 0
    assert books[("liability:stored_value:alice:bonus", "CNY")] == 0


def test_a_terminal_cannot_claim_its_spend_settles_a_sale(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    client, terminal = shop
    configure(admin)
    register(admin, "alice")
    ok(recharge(admin, "alice", 5_000), 201)
    forged = offline(terminal, "stored_value.spent", {
        "member_id": "alice", "spend_id": "sp1", "currency": "CNY", "amount_minor": 1_000,
        "order_ref": "o1", "offline": True, "settles_sale": True})
    result = client.post_events(STORE, "t1", [forged])["results"][0]
    assert (result["status"], result["reason"]) == ("rejected", "invalid_data")
    assert member(admin, "alice")["balance_minor"] == 5_000


def test_a_retried_refund_of_an_order_paid_from_stored_value_only_is_answered_again(
        shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    configure(admin)
    register(admin, "alice")
    ok(recharge(admin, "alice", 5_000), 201)
    ok(spend(admin, "alice", 3_000, "o9"), 201)
    first = ok(refund(admin, "o9", "rf9", 1_000))
    assert first["created"] is True and first["stored_value_returned_total_minor"] == 1_000
    again = ok(refund(admin, "o9", "rf9", 1_000))
    assert again["created"] is False and again["stored_value_returned_total_minor"] == 1_000
    assert member(admin, "alice")["balance_minor"] == 3_000


def test_a_retried_points_redemption_answers_what_was_recorded(shop: tuple[Client, Terminal],
                                                               admin: httpx.Client) -> None:
    configure(admin)
    register(admin, "alice")
    ok(admin.post(f"{URL}/checkout/confirm", json={"order_ref": "seed", "amount_minor": 10_000}))  # 100 points
    first = ok(admin.post(f"{URL}/points/redeem", json={"points": 30, "order_ref": "o1", "redemption_id": "pr1"}),
               201)
    # The back office changes the point value; the retry still answers the discount that was given.
    program = ok(admin.get(f"/v1/stores/{STORE}/member-program"))
    ok(admin.put(f"/v1/stores/{STORE}/member-program", json={**program, "point_value_minor": 5}))
    again = ok(admin.post(f"{URL}/points/redeem", json={"points": 30, "order_ref": "o1", "redemption_id": "pr1"}))
    assert again["created"] is False and again["discount_minor"] == first["discount_minor"] == 30
    reused = admin.post(f"{URL}/points/redeem", json={"points": 50, "order_ref": "o1", "redemption_id": "pr1"})
    assert reused.status_code == 409 and reused.json()["type"].endswith("idempotency-key-reused")
    assert member(admin, "alice")["points"] == 70
