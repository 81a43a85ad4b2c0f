"""Online orders over the real HTTP server: push, duplicates, every transition, reads, settings."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import httpx
import pytest

from pos_ledger.catalog.orders import ORDER_TRANSITIONS, VERBS
from tests.conftest import LiveServer

STORE = "s1"
PROBLEM = "application/problem+json"
#: The statuses an order reaches by legal steps, and the verbs (in order) that reach each.
PATH_TO: dict[str, list[str]] = {
    "placed": [], "accepted": ["accept"], "rejected": ["reject"], "preparing": ["accept", "start"],
    "ready": ["accept", "start", "ready"], "completed": ["accept", "start", "ready", "complete"],
    "cancelled": ["cancel"],
}


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "mini_program", "channel_order_id": uuid.uuid4().hex,
        "lines": [{"sku": "LATTE", "qty": 2, "unit_price_minor": 2800, "note": "少糖"},
                  {"sku": "TART", "qty": 1, "unit_price_minor": 900}],
        "fulfillment": {"type": "pickup", "pickup_at": "2026-12-02T12:30:00+08:00"},
        "total_minor": 6500,
    }
    body.update(overrides)
    return body


def place(admin: httpx.Client, **overrides: Any) -> dict[str, Any]:
    response = admin.post(f"/v1/stores/{STORE}/orders", json=order_body(**overrides))
    assert response.status_code == 201, response.text
    return dict(response.json())


def act(admin: httpx.Client, order_id: str, verb: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return admin.post(f"/v1/stores/{STORE}/orders/{order_id}/{verb}", json=body if body is not None else {})


def chain_length(admin: httpx.Client) -> int:
    return int(admin.get(f"/v1/stores/{STORE}/chain").json()["length"])


def log_types(admin: httpx.Client) -> list[str]:
    entries = admin.get(f"/v1/stores/{STORE}/events", params={"limit": 1000}).json()
    return [json.loads(e["body"])["type"] for e in entries]


def test_a_pushed_order_is_placed_and_a_second_push_answers_the_same_order(shop: Any, admin: httpx.Client) -> None:
    body = order_body()
    first = admin.post(f"/v1/stores/{STORE}/orders", json=body)
    assert first.status_code == 201, first.text
    order = first.json()
    assert order["status"] == "placed" and order["total_minor"] == 6500 and order["currency"] == "CNY"
    assert [line["category"] for line in order["lines"]] == ["coffee", "bakery"]
    assert order["lines"][0]["note"] == "少糖"
    # The platform pushes again (keys in another order): the same order, nothing written.
    length = chain_length(admin)
    again = admin.post(f"/v1/stores/{STORE}/orders", content=json.dumps(dict(reversed(list(body.items())))),
                       headers={"content-type": "application/json"})
    assert again.status_code == 200, again.text
    assert again.json()["order_id"] == order["order_id"]
    assert chain_length(admin) == length
    # The same channel order id with another body is a conflict.
    changed = admin.post(f"/v1/stores/{STORE}/orders", json={**body, "lines": body["lines"][:1], "total_minor": 5600})
    assert changed.status_code == 409 and changed.headers["content-type"].startswith(PROBLEM)
    assert changed.json()["reason"] == "channel_order_conflict"
    # The same id on another channel is another order.
    other = admin.post(f"/v1/stores/{STORE}/orders", json={**body, "channel": "meituan"})
    assert other.status_code == 201 and other.json()["order_id"] != order["order_id"]
    assert log_types(admin).count("order.placed") == 2


@pytest.mark.parametrize(("overrides", "status", "fragment"), [
    ({"total_minor": 6400}, 422, "totals_mismatch"),
    ({"lines": [{"sku": "NOPE", "qty": 1, "unit_price_minor": 100}], "total_minor": 100}, 422, "unknown_sku"),
    ({"payment_id": "pay-unknown"}, 422, "unknown_payment"),
    ({"channel": "carrier_pigeon"}, 422, None),
    ({"fulfillment": {"type": "delivery"}}, 422, None),
    ({"lines": []}, 422, None),
    ({"total_minor": "6500"}, 422, None),
    ({"lines": [{"sku": "LATTE", "qty": 0, "unit_price_minor": 2800}], "total_minor": 0}, 422, None),
])
def test_bad_pushes_are_problems_and_write_nothing(shop: Any, admin: httpx.Client, overrides: dict[str, Any],
                                                    status: int, fragment: str | None) -> None:
    length = chain_length(admin)
    response = admin.post(f"/v1/stores/{STORE}/orders", json=order_body(**overrides))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    if fragment is not None:
        assert response.json()["reason"] == fragment
    assert chain_length(admin) == length


def test_every_legal_transition_answers_the_order(shop: Any, admin: httpx.Client) -> None:
    order = place(admin)
    for verb, status in (("accept", "accepted"), ("start", "preparing"), ("ready", "ready"),
                         ("complete", "completed")):
        response = act(admin, order["order_id"], verb)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
    assert [s["status"] for s in response.json()["history"]] == [
        "placed", "accepted", "preparing", "ready", "completed"]
    rejected = place(admin)
    response = act(admin, rejected["order_id"], "reject", {"reason": "sold out"})
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert response.json()["reason"] == "sold out"
    for path in (["cancel"], ["accept", "cancel"], ["accept", "start", "cancel"], ["accept", "start", "ready", "cancel"]):
        order = place(admin)
        for verb in path:
            response = act(admin, order["order_id"], verb, {"reason": "customer called"} if verb == "cancel" else None)
            assert response.status_code == 200, (path, response.text)
        assert response.json()["status"] == "cancelled"
        assert response.json()["cancelled_by"] == "store" and response.json()["reason"] == "customer called"
    # An unpaid completed order is no sale (the money was taken elsewhere).
    assert "sale.completed" not in log_types(admin)


def test_every_illegal_transition_is_409_invalid_transition(shop: Any, admin: httpx.Client) -> None:
    for status, verb in itertools.product(PATH_TO, VERBS):
        allowed, _ = ORDER_TRANSITIONS[VERBS[verb]]
        if status in allowed:
            continue
        order = place(admin)
        for step in PATH_TO[status]:
            assert act(admin, order["order_id"], step).status_code == 200
        length = chain_length(admin)
        response = act(admin, order["order_id"], verb)
        assert response.status_code == 409, (status, verb, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["reason"] == "invalid_transition", (status, verb)
        assert chain_length(admin) == length
        assert admin.get(f"/v1/stores/{STORE}/orders/{order['order_id']}").json()["status"] == status


def test_transition_bodies_and_unknown_orders(shop: Any, admin: httpx.Client) -> None:
    order = place(admin)
    no_body = admin.post(f"/v1/stores/{STORE}/orders/{order['order_id']}/accept")
    assert no_body.status_code == 200, no_body.text
    unknown_field = act(admin, order["order_id"], "start", {"reson": "typo"})
    assert unknown_field.status_code == 422
    too_long = act(admin, order["order_id"], "start", {"reason": "x" * 5000})
    assert too_long.status_code == 413
    missing = act(admin, str(uuid.uuid4()), "accept")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)
    assert admin.get(f"/v1/stores/{STORE}/orders/{uuid.uuid4()}").status_code == 404


def test_list_filters_by_status_and_time(shop: Any, admin: httpx.Client) -> None:
    first = place(admin)
    second = place(admin)
    act(admin, second["order_id"], "accept")
    everything = admin.get(f"/v1/stores/{STORE}/orders").json()["orders"]
    assert [o["order_id"] for o in everything] == [first["order_id"], second["order_id"]]
    accepted = admin.get(f"/v1/stores/{STORE}/orders", params={"status": "accepted"}).json()["orders"]
    assert [o["order_id"] for o in accepted] == [second["order_id"]]
    after_first = admin.get(f"/v1/stores/{STORE}/orders", params={"from": second["placed_at"]}).json()["orders"]
    assert [o["order_id"] for o in after_first] == [second["order_id"]]
    before_second = admin.get(f"/v1/stores/{STORE}/orders", params={"to": second["placed_at"]}).json()["orders"]
    assert [o["order_id"] for o in before_second] == [first["order_id"]]
    assert admin.get(f"/v1/stores/{STORE}/orders", params={"status": "lost"}).status_code == 422
    assert admin.get(f"/v1/stores/{STORE}/orders", params={"from": "yesterday"}).status_code == 422
    # A bound without an offset is the store's local time (Asia/Shanghai here).
    local = admin.get(f"/v1/stores/{STORE}/orders", params={"from": "2000-01-01T00:00:00"}).json()["orders"]
    assert len(local) == 2
    assert admin.get(f"/v1/stores/{STORE}/orders", params={"to": "2000-01-01"}).json()["orders"] == []


def test_an_unknown_member_still_places_the_order(shop: Any, admin: httpx.Client) -> None:
    order = place(admin, member_id="m-from-the-platform")
    assert order["member_id"] == "m-from-the-platform" and order["status"] == "placed"


def test_auto_accept_accepts_on_arrival(shop: Any, admin: httpx.Client) -> None:
    settings = admin.patch(f"/v1/stores/{STORE}/settings", json={"orders_auto_accept": True})
    assert settings.status_code == 200 and settings.json()["orders_auto_accept"] is True
    order = place(admin)
    assert order["status"] == "accepted"
    assert [s["status"] for s in order["history"]] == ["placed", "accepted"]


def test_terminals_push_and_act_with_their_signature_and_others_cannot(shop: Any, live_server: LiveServer,
                                                                         anonymous: httpx.Client) -> None:
    from pos_ledger import httpsig

    _, terminal = shop
    body = json.dumps(order_body()).encode()
    path = f"/v1/stores/{STORE}/orders"
    headers = httpsig.sign_request(terminal.key.seed, "t1", "POST", path, body, __import__("time").time().__int__())
    signed = anonymous.post(path, content=body, headers={"content-type": "application/json", **headers})
    assert signed.status_code == 201, signed.text
    assert anonymous.post(path, json=order_body()).status_code == 401
    assert anonymous.get(path).status_code == 401
    assert anonymous.get(f"{path}/stream").status_code == 401
    assert anonymous.get(f"/v1/stores/{STORE}/printers").status_code == 401


def test_openapi_documents_the_routes_and_their_problems(live_server: LiveServer) -> None:
    document = httpx.get(f"{live_server.url}/openapi.json").json()
    place_op = document["paths"]["/v1/stores/{store_id}/orders"]["post"]
    assert {"201", "200", "409", "413", "422"} <= set(place_op["responses"])
    assert "application/problem+json" in place_op["responses"]["409"]["content"]
    for verb in VERBS:
        op = document["paths"][f"/v1/stores/{{store_id}}/orders/{{order_id}}/{verb}"]["post"]
        assert "409" in op["responses"] and "413" in op["responses"]
    stream = document["paths"]["/v1/stores/{store_id}/orders/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]


def test_concurrent_duplicate_pushes_place_one_order(shop: Any, admin: httpx.Client, live_server: LiveServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = order_body()

    def push(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=live_server.url, headers=dict(admin.headers), timeout=30) as client:
            response = client.post(f"/v1/stores/{STORE}/orders", json=body)
            return response.status_code, response.json()["order_id"]

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(push, range(6)))
    assert sorted(status for status, _ in answers) == [200] * 5 + [201]
    assert len({order_id for _, order_id in answers}) == 1
    assert log_types(admin).count("order.placed") == 1
