"""Streams across server processes (Redis wake-ups) and the bridge's polling fallback; the bridge's
event schemas."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from api.main import create_app
from api.settings import Settings
from hardware_bridge.bridge import Bridge, BridgeConfig
from hardware_bridge.client import StoreClient
from hardware_bridge.journal import Journal
from hardware_bridge.printers import open_printer
from tests.bridge_support import STORE, make_key, positions_printed, register, sell
from tests.conftest import ADMIN_TOKEN, SERVER_SEED, LiveServer, free_port
from tests.escpos_support import FakePrinter
from tests.sse_support import SseReader

REDIS_URL = "redis://127.0.0.1:6379/0"


class Server:
    def __init__(self, database: str, redis_url: str | None) -> None:
        settings = Settings(database=database, admin_token=ADMIN_TOKEN, server_seed=SERVER_SEED, redis_url=redis_url)
        self.app = create_app(settings)
        self.app.state.sse_heartbeat_s = 60.0  # a wake-up, not a heartbeat, must deliver the message
        self.url = f"http://127.0.0.1:{free_port()}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=int(self.url.rsplit(":", 1)[1]),
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.state.ledger.close()


@pytest.mark.redis
def test_a_stream_on_one_server_hears_an_order_placed_on_another(tmp_path: Path) -> None:
    store = f"st{secrets.token_hex(4)}"  # Redis channels are per store: a fresh store keeps tests apart
    database = str(tmp_path / "shared.sqlite3")
    first, second = Server(database, REDIS_URL), Server(database, REDIS_URL)
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        with httpx.Client(base_url=first.url, headers=headers, timeout=30) as one, \
                httpx.Client(base_url=second.url, headers=headers, timeout=30) as two:
            one.post("/v1/stores", json={"store_id": store, "name": "S", "currency": "CNY",
                                         "timezone": "UTC"}).raise_for_status()
            one.put(f"/v1/stores/{store}/menu/LATTE", json={"name": "Latte", "price_minor": 2800}).raise_for_status()
            reader = SseReader(one, f"/v1/stores/{store}/orders/stream")
            time.sleep(1.0)  # the Redis subscriber is up
            started = time.monotonic()
            placed = two.post(f"/v1/stores/{store}/orders", json={
                "channel": "eleme", "channel_order_id": "E1", "total_minor": 2800,
                "lines": [{"sku": "LATTE", "qty": 1, "unit_price_minor": 2800}], "fulfillment": {"type": "pickup"}})
            assert placed.status_code == 201, placed.text
            [(_, message)] = reader.events(1, timeout_s=5)
            assert message["order"]["order_id"] == placed.json()["order_id"]
            assert time.monotonic() - started < 5
            reader.close()
    finally:
        first.stop()
        second.stop()


class NoStream(httpx.BaseTransport):
    """The real server, except that its event stream is not offered (an old server, a proxy that drops it)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.refused = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events/stream"):
            self.refused += 1
            return httpx.Response(404, json={"detail": "not here"})
        return self.inner.handle_request(request)


def test_the_bridge_polls_when_the_stream_is_unavailable(live_server: LiveServer, shop: Any, admin: httpx.Client,
                                                         tmp_path: Path) -> None:
    client, terminal = shop
    key = make_key(tmp_path / "bridge.key", "bridge-1")
    register(admin, key)
    transport = NoStream()
    printer = FakePrinter()
    store_client = StoreClient(live_server.url, STORE, "bridge-1", key.seed, transport=transport)
    journal = Journal(tmp_path / "journal.sqlite3")
    bridge = Bridge(BridgeConfig(STORE, printer.uri, ["receipt"], poll_interval_s=0.2), store_client,
                    open_printer(printer.uri), journal)
    try:
        bridge.prepare()
        bridge.start()
        positions = sell(client, terminal, [1000, 2000])
        assert positions_printed(printer.wait_for_jobs(2)) == positions
        assert transport.refused >= 1
    finally:
        bridge.stop()
        journal.close()
        store_client.close()
        printer.close()


def test_print_reports_are_checked_like_any_terminal_event(live_server: LiveServer, shop: Any) -> None:
    client, terminal = shop
    good = terminal.sign("print.completed", {"printer": "tcp://10.0.0.5:9100", "station": "kitchen:coffee",
                                             "position": 3}, datetime.now(UTC))
    bad_station = terminal.sign("print.failed", {"printer": "p", "station": "bar", "position": 3,
                                                 "reason": "printer_offline"}, datetime.now(UTC))
    bad_reason = terminal.sign("print.failed", {"printer": "p", "station": "receipt", "position": 3,
                                                "reason": "on_fire"}, datetime.now(UTC))
    results = client.post_events(STORE, "t1", [good, bad_station, bad_reason])["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected"]
    assert {r["reason"] for r in results[1:]} == {"invalid_data"}
    printers = client.http.get(f"/v1/stores/{STORE}/printers").json()["printers"]
    assert printers == [{"terminal_id": "t1", "printer": "tcp://10.0.0.5:9100", "state": "ok",
                         "station": "kitchen:coffee", "job_position": 3, "copy": 1, "detail": None,
                         "at": printers[0]["at"], "reported_position": results[0]["position"]}]
