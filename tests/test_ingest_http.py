"""Every ingest rule of the HTTP contract, over real HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pos_ledger import _core
from pos_ledger.simulate import Client, Terminal, TerminalKey

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
PROBLEM = "application/problem+json"


def sale_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),
        "currency": "CNY",
        "lines": [
            {"sku": "LATTE", "name": "Latte", "qty": 2, "unit_price_minor": 2800},
            {"sku": "OPEN", "name": "Open-price item", "qty": 1, "unit_price_minor": 150},
        ],
        "discount_minor": 250,
        "total_minor": 5500,
        "tenders": [
            {"method": "wechat", "amount_minor": 3000},
            {"method": "cash", "amount_minor": 3000, "change_minor": 500},
        ],
    }
    data.update(overrides)
    return data


def signed(terminal: Terminal, event_type: str = "sale.completed", data: dict[str, Any] | None = None,
           *, seq: int | None = None, event_id: str | None = None) -> dict[str, str]:
    terminal.seq = terminal.seq + 1 if seq is None else seq
    body = json.dumps({"id": event_id or str(uuid.uuid4()), "seq": terminal.seq, "type": event_type,
                       "at": NOW.isoformat(), "data": sale_data() if data is None else data},
                      separators=(",", ":")).encode()
    return {"body": body.decode(), "sig": base64.b64encode(_core.ed25519_sign(terminal.key.seed, body)).decode()}


def post(client: Client, events: list[dict[str, str]], terminal_id: str = "t1") -> dict[str, Any]:
    answer: dict[str, Any] = client.post_events("s1", terminal_id, events)
    return answer


def statuses(answer: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(r["status"], r["reason"]) for r in answer["results"]]


def test_accepted_events_get_positions_and_the_chain_recomputes(shop: tuple[Client, Terminal],
                                                                anonymous: httpx.Client, admin: httpx.Client) -> None:
    client, terminal = shop
    events = [signed(terminal) for _ in range(3)]
    answer = post(client, events)
    assert statuses(answer) == [("accepted", None)] * 3
    positions = [r["position"] for r in answer["results"]]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert [r["id"] for r in answer["results"]] == [json.loads(e["body"])["id"] for e in events]

    log = admin.get("/v1/stores/s1/events", params={"after": 0, "limit": 1000}).json()
    head = bytes(32)
    for position, entry in enumerate(log, start=1):
        assert entry["position"] == position
        head = hashlib.sha256(head + entry["body"].encode() + base64.b64decode(entry["sig"])).digest()
        assert entry["hash"] == head.hex()
    assert [e["body"] for e in log[-3:]] == [e["body"] for e in events]  # the exact bytes, stored
    chain = admin.get("/v1/stores/s1/chain").json()
    assert chain == {"head": head.hex(), "length": len(log)}
    assert answer["chain_head"] == head.hex()


def test_duplicate_returns_the_original_position_and_counts_nothing_twice(
        shop: tuple[Client, Terminal], anonymous: httpx.Client, admin: httpx.Client) -> None:
    client, terminal = shop
    event = signed(terminal)
    first = post(client, [event])
    balances_before = admin.get("/v1/stores/s1/balances").json()
    again = post(client, [event, event])
    assert statuses(again) == [("duplicate", None), ("duplicate", None)]
    assert {r["position"] for r in again["results"]} == {first["results"][0]["position"]}
    assert admin.get("/v1/stores/s1/balances").json() == balances_before
    assert again["chain_head"] == first["chain_head"]


def test_same_id_with_a_different_body_is_rejected_id_reused(shop: tuple[Client, Terminal]) -> None:
    client, terminal = shop
    event_id = str(uuid.uuid4())
    post(client, [signed(terminal, event_id=event_id)])
    answer = post(client, [signed(terminal, event_id=event_id)])
    assert statuses(answer) == [("rejected", "id_reused")]
    # within one request too
    other = str(uuid.uuid4())
    answer = post(client, [signed(terminal, event_id=other), signed(terminal, event_id=other)])
    assert statuses(answer) == [("accepted", None), ("rejected", "id_reused")]


def test_bad_signature_and_wrong_key_are_rejected(shop: tuple[Client, Terminal]) -> None:
    client, terminal = shop
    good = signed(terminal)
    tampered = dict(good, body=good["body"].replace('"qty":2', '"qty":3'))
    stranger = Terminal(TerminalKey.generate("t1"), seq=terminal.seq)
    answer = post(client, [tampered, signed(stranger), {"body": good["body"], "sig": "not base64!"},
                           {"body": good["body"], "sig": base64.b64encode(b"short").decode()}])
    assert statuses(answer) == [("rejected", "bad_signature")] * 4
    assert post(client, [good])["results"][0]["status"] == "accepted"


@pytest.mark.parametrize(
    ("event_type", "data", "reason"),
    [
        ("sale.refunded.typo", sale_data(), "unknown_type"),
        ("store.opened", {"store_id": "s1"}, "type_not_allowed"),
        ("sale.completed", sale_data(lines="nope"), "invalid_data"),
        ("sale.completed", sale_data(total_minor=-1), "invalid_data"),
        ("sale.completed", sale_data(total_minor=1.5), "invalid_data"),
        ("sale.completed", sale_data(order_id="not-a-uuid"), "invalid_data"),
        ("sale.completed", sale_data(tenders=[{"method": "bitcoin", "amount_minor": 5500}]), "invalid_data"),
        ("sale.completed", sale_data(total_minor=5400), "totals_mismatch"),
        ("sale.completed", sale_data(tenders=[{"method": "wechat", "amount_minor": 5000}]), "tenders_mismatch"),
        ("sale.completed",
         sale_data(tenders=[{"method": "card", "amount_minor": 6000, "change_minor": 500}]), "invalid_tender"),
        ("sale.completed", sale_data(currency="USD"), "currency_mismatch"),
    ],
)
def test_rule_breaking_events_are_rejected_with_a_stable_reason(
        shop: tuple[Client, Terminal], event_type: str, data: dict[str, Any], reason: str) -> None:
    client, terminal = shop
    answer = post(client, [signed(terminal, event_type, data), signed(terminal)])
    assert statuses(answer) == [("rejected", reason), ("accepted", None)]


def test_malformed_bodies_are_rejected(shop: tuple[Client, Terminal]) -> None:
    client, terminal = shop
    for body in (b"not json", b'{"id": "x"}', b'{"id":"%s","seq":1,"type":"sale.completed","at":"2026-11-23T10:00:00","data":{}}' % str(uuid.uuid4()).encode()):
        sig = base64.b64encode(_core.ed25519_sign(terminal.key.seed, body)).decode()
        answer = post(client, [{"body": body.decode(), "sig": sig}])
        assert statuses(answer) == [("rejected", "malformed_body")]


def test_seq_must_move_forward(shop: tuple[Client, Terminal]) -> None:
    client, terminal = shop
    assert statuses(post(client, [signed(terminal, seq=10)])) == [("accepted", None)]
    answer = post(client, [signed(terminal, seq=10), signed(terminal, seq=9), signed(terminal, seq=11)])
    assert statuses(answer) == [("rejected", "seq_not_increasing"), ("rejected", "seq_not_increasing"),
                                ("accepted", None)]


def test_revoked_terminal_events_are_rejected(shop: tuple[Client, Terminal], admin: httpx.Client) -> None:
    client, terminal = shop
    accepted = signed(terminal)
    post(client, [accepted])
    assert admin.delete("/v1/stores/s1/terminals/t1").status_code == 204
    answer = post(client, [signed(terminal), accepted])
    assert statuses(answer) == [("rejected", "terminal_revoked"), ("duplicate", None)]
    assert admin.delete("/v1/stores/s1/terminals/t1").status_code == 404


def test_request_limits_are_413_and_nothing_is_written(shop: tuple[Client, Terminal],
                                                       anonymous: httpx.Client, admin: httpx.Client) -> None:
    _client, terminal = shop
    before = admin.get("/v1/stores/s1/chain").json()
    event = signed(terminal)
    response = anonymous.post("/v1/stores/s1/terminals/t1/events", json={"events": [event] * 1001})
    assert response.status_code == 413
    assert response.headers["content-type"].startswith(PROBLEM)
    huge = {"events": [dict(event, body=event["body"] + " " * (1 << 20))]}
    response = anonymous.post("/v1/stores/s1/terminals/t1/events", json=huge)
    assert response.status_code == 413
    assert response.json()["type"].endswith("body-too-large")
    assert admin.get("/v1/stores/s1/chain").json() == before


@pytest.mark.parametrize("payload", [b"{", b"[]", b'{"events": 3}', b'{"events": [{"body": 1, "sig": ""}]}'])
def test_malformed_requests_are_422_problems(shop: tuple[Client, Terminal], anonymous: httpx.Client,
                                             payload: bytes) -> None:
    response = anonymous.post("/v1/stores/s1/terminals/t1/events", content=payload,
                              headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM)


def test_unknown_store_and_terminal_are_404(shop: tuple[Client, Terminal], anonymous: httpx.Client, admin: httpx.Client) -> None:
    _, terminal = shop
    for path in ("/v1/stores/nope/terminals/t1/events", "/v1/stores/s1/terminals/nope/events"):
        response = anonymous.post(path, json={"events": [signed(terminal)]})
        assert response.status_code == 404
        assert response.headers["content-type"].startswith(PROBLEM)
    assert admin.get("/v1/stores/nope/chain").status_code == 404


def test_sale_postings_balance_and_reach_the_balances(shop: tuple[Client, Terminal],
                                                      anonymous: httpx.Client, admin: httpx.Client) -> None:
    client, terminal = shop
    post(client, [signed(terminal), signed(terminal)])
    rows = admin.get("/v1/stores/s1/balances").json()["balances"]
    balances = {r["account"]: r["balance_minor"] for r in rows}
    assert balances == {
        "asset:psp:wechat": 6000,
        "asset:cash:t1": 5000,
        "contra:discount:manual": 500,
        "revenue:sales": -11500,
    }
    assert sum(r["debit_minor"] for r in rows) == sum(r["credit_minor"] for r in rows)


class TestBackOffice:
    def test_admin_calls_need_the_token(self, live_server: Any, anonymous: httpx.Client) -> None:
        response = anonymous.post("/v1/stores", json={"store_id": "x", "name": "X", "currency": "CNY",
                                                      "timezone": "Asia/Shanghai"})
        assert response.status_code == 401
        assert response.headers["content-type"].startswith(PROBLEM)

    def test_store_creation_validates_and_conflicts(self, admin: httpx.Client) -> None:
        body = {"store_id": "x1", "name": "X", "currency": "CNY", "timezone": "Asia/Shanghai"}
        assert admin.post("/v1/stores", json=body).status_code == 201
        assert admin.post("/v1/stores", json=body).status_code == 409
        assert admin.post("/v1/stores", json=dict(body, store_id="x2", currency="ZZZ")).status_code == 422
        assert admin.post("/v1/stores", json=dict(body, store_id="x3", timezone="Mars/Base")).status_code == 422
        assert admin.post("/v1/stores", json=dict(body, store_id="bad id!")).status_code == 422

    def test_terminal_keys_must_be_strong(self, admin: httpx.Client) -> None:
        admin.post("/v1/stores", json={"store_id": "k", "name": "K", "currency": "CNY", "timezone": "UTC"})
        identity = bytes([1]) + bytes(31)  # the neutral element: order 1
        order_2 = bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
        for key in (identity, order_2, b"\x00" * 31, b"x" * 33):
            response = admin.post("/v1/stores/k/terminals", json={
                "terminal_id": "t", "public_key": base64.b64encode(key).decode()})
            assert response.status_code == 400, key
            assert response.headers["content-type"].startswith(PROBLEM)
        response = admin.post("/v1/stores/k/terminals", json={"terminal_id": "t", "public_key": "%%%"})
        assert response.status_code == 400
        good = TerminalKey.generate("t").public_key_b64
        assert admin.post("/v1/stores/k/terminals", json={"terminal_id": "t", "public_key": good}).status_code == 201
        assert admin.post("/v1/stores/k/terminals", json={"terminal_id": "t", "public_key": good}).status_code == 409


def test_two_tills_may_pick_the_same_idempotency_key(shop: tuple[Client, Terminal],
                                                     anonymous: httpx.Client, admin: httpx.Client) -> None:
    client, first = shop
    second = Terminal(TerminalKey.generate("t2"), seq=0)
    client.register_terminal("s1", second.key, "till 2")
    before = admin.get("/v1/stores/s1/chain").json()["length"]
    headers = {"idempotency-key": "batch-1"}
    one = {"events": [signed(first)]}
    two = {"events": [signed(second)]}
    answer = anonymous.post("/v1/stores/s1/terminals/t1/events", json=one, headers=headers)
    assert answer.status_code == 200 and answer.json()["results"][0]["status"] == "accepted"
    other = anonymous.post("/v1/stores/s1/terminals/t2/events", json=two, headers=headers)
    assert other.status_code == 200 and other.json()["results"][0]["status"] == "accepted"
    replay = anonymous.post("/v1/stores/s1/terminals/t1/events", json=one, headers=headers)
    assert replay.headers.get("idempotent-replayed") == "true" and replay.json() == answer.json()
    reused = anonymous.post("/v1/stores/s1/terminals/t1/events", json=two, headers=headers)
    assert reused.status_code == 422
    assert admin.get("/v1/stores/s1/chain").json()["length"] == before + 2
