"""Orders live: the SSE stream (resume with Last-Event-ID, start at the end, heartbeats) and the
accept timeout written by the server, exactly once, across a restart of the live server."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.sse_support import SseReader
from tests.test_orders_http import STORE, act, log_types, order_body, place

STREAM = f"/v1/stores/{STORE}/orders/stream"


def test_stream_follows_orders_and_resumes_with_last_event_id(shop: Any, admin: httpx.Client,
                                                              live_server: LiveServer) -> None:
    earlier = place(admin)  # before the stream opens: not sent (the stream starts at the end)
    reader = SseReader(admin, STREAM)
    assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
    order = place(admin)
    act(admin, order["order_id"], "accept")
    (placed_at, placed), (accepted_at, accepted) = reader.events(2)
    assert placed["type"] == "order.placed" and placed["position"] == placed_at
    assert placed["order"]["order_id"] == order["order_id"] and placed["order"]["status"] == "placed"
    assert accepted["type"] == "order.accepted" and accepted["order"]["status"] == "accepted"
    assert accepted_at > placed_at
    assert earlier["order_id"] not in {placed["order"]["order_id"], accepted["order"]["order_id"]}
    reader.close()
    # While nobody listens: two more steps and a menu change (not an order event).
    act(admin, order["order_id"], "start")
    admin.put(f"/v1/stores/{STORE}/menu/MOCHA", json={"name": "Mocha", "price_minor": 3000, "category": "coffee"})
    act(admin, order["order_id"], "ready")
    resumed = SseReader(admin, STREAM, headers={"last-event-id": str(accepted_at)})
    missed = resumed.events(2)
    assert [m["type"] for _, m in missed] == ["order.started", "order.ready"]
    assert [m["order"]["status"] for _, m in missed] == ["preparing", "ready"]
    assert missed[0][0] > accepted_at and missed[1][0] > missed[0][0]
    with pytest.raises(queue.Empty):
        resumed.next(timeout_s=0.5)  # no duplicate, nothing else
    # From the very start: every order event of the log, each once, in log order.
    everything = SseReader(admin, STREAM, headers={"last-event-id": "0"})
    seen = everything.events(5)
    assert [m["type"] for _, m in seen] == ["order.placed", "order.placed", "order.accepted", "order.started",
                                             "order.ready"]
    assert seen[0][1]["order"]["order_id"] == earlier["order_id"]
    # Each message shows the order as it was at that position.
    assert [m["order"]["status"] for _, m in seen[1:]] == ["placed", "accepted", "preparing", "ready"]
    positions = [p for p, _ in seen]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for stream in (resumed, everything):
        stream.close()


def test_stream_sends_heartbeats_and_refuses_a_bad_last_event_id(shop: Any, admin: httpx.Client,
                                                                  live_server: LiveServer) -> None:
    live_server.app.state.sse_heartbeat_s = 0.2
    reader = SseReader(admin, STREAM)
    comments = [reader.next(timeout_s=5, comments=True).data for _ in range(3)]
    assert "heartbeat" in comments
    reader.close()
    bad = admin.get(STREAM, headers={"last-event-id": "yesterday"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


def test_the_log_stream_sends_every_entry(shop: Any, admin: httpx.Client) -> None:
    reader = SseReader(admin, f"/v1/stores/{STORE}/events/stream")
    order = place(admin)
    position, message = reader.events(1)[0]
    assert message["type"] == "order.placed" and message["terminal_id"] == "server"
    assert json.loads(message["body"])["data"]["order_id"] == order["order_id"]
    stored = admin.get(f"/v1/stores/{STORE}/events", params={"after": position - 1, "limit": 1}).json()[0]
    assert (stored["body"], stored["sig"], stored["hash"]) == (message["body"], message["sig"], message["hash"])
    reader.close()


def _server(path: Path) -> LiveServer:
    return LiveServer(str(path)).start()


def test_accept_timeout_is_written_once_across_a_restart(tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite3"
    first = _server(database)
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=first.url, headers=headers, timeout=30) as admin:
        admin.post("/v1/stores", json={"store_id": STORE, "name": "Shop", "currency": "CNY",
                                       "timezone": "Asia/Shanghai"}).raise_for_status()
        for sku, price, category in (("LATTE", 2800, "coffee"), ("TART", 900, "bakery")):
            admin.put(f"/v1/stores/{STORE}/menu/{sku}",
                      json={"name": sku, "price_minor": price, "category": category}).raise_for_status()
        admin.patch(f"/v1/stores/{STORE}/settings", json={"orders_accept_timeout_s": 2}).raise_for_status()
        order = place(admin)
        kept = place(admin)
        assert act(admin, kept["order_id"], "accept").status_code == 200
    first.stop()  # down before the deadline: nobody is running when it passes
    time.sleep(2.5)
    # Two servers on the same database come up after the deadline and both scan at start.
    second, third = _server(database), _server(database)
    try:
        with httpx.Client(base_url=second.url, headers=headers, timeout=30) as admin:
            deadline = time.monotonic() + 10
            while admin.get(f"/v1/stores/{STORE}/orders/{order['order_id']}").json()["status"] != "cancelled":
                assert time.monotonic() < deadline, "the expired order was not cancelled"
                time.sleep(0.1)
            time.sleep(2.5)  # more scans on both servers
            cancelled = admin.get(f"/v1/stores/{STORE}/orders/{order['order_id']}").json()
            assert cancelled["reason"] == "accept_timeout" and cancelled["cancelled_by"] == "server"
            assert log_types(admin).count("order.cancelled") == 1
            assert admin.get(f"/v1/stores/{STORE}/orders/{kept['order_id']}").json()["status"] == "accepted"
            late = act(admin, order["order_id"], "accept")
            assert late.status_code == 409 and late.json()["reason"] == "invalid_transition"
    finally:
        second.stop()
        third.stop()


def test_an_order_within_its_deadline_is_not_expired(shop: Any, admin: httpx.Client) -> None:
    admin.patch(f"/v1/stores/{STORE}/settings", json={"orders_accept_timeout_s": 1}).raise_for_status()
    order = place(admin)
    accepted = place(admin)
    act(admin, accepted["order_id"], "accept")
    deadline = time.monotonic() + 10
    while admin.get(f"/v1/stores/{STORE}/orders/{order['order_id']}").json()["status"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert admin.get(f"/v1/stores/{STORE}/orders/{accepted['order_id']}").json()["status"] == "accepted"
    assert order_body()["channel"] == "mini_program"
