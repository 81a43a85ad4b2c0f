"""The order board in the browser (Debian's chromium): an order pushed through the API appears live
(SSE, no reload) with its sound, and the owner's clicks move it through accept → start → ready →
complete; a rejection takes its reason; the printers panel shows each printer's last report and asks
its bridge for a reprint. Screenshots go to var/screenshots/ (not committed)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pos_ledger.simulate import Client, Terminal, TerminalKey
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.loyalty_support import STORE
from tests.test_web_pages import browser, login, nav, shot  # noqa: F401  (browser: the chromium fixture)
from tests.web_support import add_staff, logged_in

pytestmark = pytest.mark.browser
ORDERS = f"/v1/stores/{STORE}/orders"


class Board:
    def __init__(self, server: LiveServer, admin: httpx.Client) -> None:
        self.server = server
        self.admin = admin
        self.url = server.url


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    server = LiveServer(str(tmp_path_factory.mktemp("board") / "ledger.sqlite3")).start()
    client = Client(server.url, ADMIN_TOKEN)
    client.open_store(STORE, "Test Shop", "CNY", "Asia/Shanghai")
    client.put_menu_item(STORE, "LATTE", "Latte", 2800, "coffee")
    client.put_menu_item(STORE, "TART", "Egg tart", 900, "bakery")
    bridge = Terminal(TerminalKey.generate("printer-1"), seq=0)
    client.register_terminal(STORE, bridge.key, "kitchen printer bridge")
    now = datetime.now(UTC)
    reports = [bridge.sign("print.completed", {"printer": "tcp://10.0.0.50:9100", "station": "receipt",
                                               "position": 3}, now),
               bridge.sign("print.failed", {"printer": "tcp://10.0.0.51:9100", "station": "kitchen:coffee",
                                            "position": 3, "reason": "printer_offline",
                                            "detail": "connection refused"}, now)]
    assert [r["status"] for r in client.post_events(STORE, "printer-1", reports)["results"]] == ["accepted"] * 2
    client.close()
    admin = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    add_staff(admin, STORE, "owner", "owner")
    try:
        yield Board(server, admin)
    finally:
        admin.close()
        server.stop()


def push(admin: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "meituan", "channel_order_id": uuid.uuid4().hex[:12],
        "lines": [{"sku": "LATTE", "qty": 2, "unit_price_minor": 2800, "note": "少糖 less sugar"},
                  {"sku": "TART", "qty": 1, "unit_price_minor": 900}],
        "fulfillment": {"type": "delivery", "address": "88 Nanjing Rd, apt 1201"}, "total_minor": 6500}
    body.update(overrides)
    response = admin.post(ORDERS, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def in_column(page: Any, column: str, order_id: str) -> Any:
    card = page.locator(f'[data-testid="column-{column}"] [data-order="{order_id}"]')
    card.wait_for(state="visible", timeout=10_000)
    return card


def test_order_board(browser: Any, board: Board) -> None:  # noqa: F811  (the imported fixture)
    page = login(browser, board)  # type: ignore[arg-type]
    nav(page, "orders")
    page.locator('[data-testid="live-state"][data-state="live"]').wait_for(timeout=10_000)
    assert page.locator('[data-testid="order-board"]').get_attribute("data-beeps") == "0"
    url = page.url

    order = push(board.admin)
    card = in_column(page, "placed", order["order_id"])   # arrived over SSE: the page was not reloaded
    assert page.url == url
    assert page.locator('[data-testid="order-board"]').get_attribute("data-beeps") == "1"
    assert "Meituan" in card.inner_text() and "65.00" in card.inner_text()
    assert "2 × Latte" in card.inner_text() and "88 Nanjing Rd" in card.inner_text()
    assert page.locator('[data-testid="column-placed"] .count').inner_text() == "1"

    card.locator('[data-testid="accept"]').click()
    card = in_column(page, "accepted", order["order_id"])
    assert page.locator('[data-testid="column-placed"] [data-order]').count() == 0
    card.locator('[data-testid="start"]').click()
    card = in_column(page, "preparing", order["order_id"])
    card.locator('[data-testid="ready"]').click()
    card = in_column(page, "ready", order["order_id"])
    card.locator('[data-testid="complete"]').click()
    card = in_column(page, "done", order["order_id"])
    assert card.locator('[data-testid="order-status"]').inner_text() == "Completed"
    assert board.admin.get(f"{ORDERS}/{order['order_id']}").json()["status"] == "completed"

    # A second order, rejected with its reason; a third is left waiting for the screenshot.
    rejected = push(board.admin, channel="mini_program", fulfillment={"type": "pickup",
                                                                      "pickup_at": "2026-12-02T12:30:00+08:00"})
    card = in_column(page, "placed", rejected["order_id"])
    card.locator('[data-testid="reject-open"]').click()
    card.locator('[data-testid="reject-reason"]').fill("sold out of tarts")
    card.locator('[data-testid="reject-confirm"]').click()
    card = in_column(page, "done", rejected["order_id"])
    assert "sold out of tarts" in card.inner_text()
    found = board.admin.get(f"{ORDERS}/{rejected['order_id']}").json()
    assert (found["status"], found["reason"]) == ("rejected", "sold out of tarts")
    waiting = push(board.admin, channel="eleme", fulfillment={"type": "dine_in", "table": "A3"},
                   lines=[{"sku": "TART", "qty": 4, "unit_price_minor": 900}], total_minor=3600)
    in_column(page, "placed", waiting["order_id"])
    assert page.locator('[data-testid="order-board"]').get_attribute("data-beeps") == "3"

    # Someone else's step (another till, the channel) moves the card live too.
    board.admin.post(f"{ORDERS}/{waiting['order_id']}/accept", json={}).raise_for_status()
    in_column(page, "accepted", waiting["order_id"])

    printers = page.locator('[data-testid="printers"]')
    assert "tcp://10.0.0.50:9100" in printers.inner_text() and "OK" in printers.inner_text()
    assert "Printer offline" in printers.inner_text() and "connection refused" in printers.inner_text()
    shot(page, "orders")

    # The reprint button asks the bridge (through the log) to print position 3 again.
    page.locator('[data-testid="reprint-printer-1"]').first.locator("button").click()
    wanted: list[dict[str, Any]] = []
    for _ in range(50):
        wanted = [e for e in board.admin.get(f"/v1/stores/{STORE}/events?limit=1000").json()
                  if '"print.reprint_requested"' in e["body"]]
        if wanted:
            break
        page.wait_for_timeout(100)
    assert len(wanted) == 1 and '"position":3' in wanted[0]["body"]

    # In Chinese, for the counter.
    zh = login(browser, board, locale="zh-CN")  # type: ignore[arg-type]
    zh.goto(f"{board.url}/stores/{STORE}/orders")
    assert "订单看板" in zh.locator("h1").inner_text()
    assert zh.locator(f'[data-testid="column-done"] [data-order="{order["order_id"]}"]').count() == 1
    shot(zh, "orders-zh")
    zh.context.close()
    page.context.close()


def test_order_board_is_not_for_an_auditor(board: Board) -> None:
    add_staff(board.admin, STORE, "auditor", "auditor")
    auditor = logged_in(board.url, "auditor")
    try:
        assert auditor.get(f"/stores/{STORE}/orders").status_code == 403
        assert 'data-nav="orders"' not in auditor.get(f"/stores/{STORE}/audit").text
    finally:
        auditor.close()


def test_board_renders_each_order_in_its_status_column_and_a_viewer_gets_no_buttons(board: Board) -> None:
    add_staff(board.admin, STORE, "viewer", "viewer")
    placed, accepted, cancelled = push(board.admin), push(board.admin), push(board.admin)
    board.admin.post(f"{ORDERS}/{accepted['order_id']}/accept", json={}).raise_for_status()
    board.admin.post(f"{ORDERS}/{cancelled['order_id']}/cancel", json={"reason": "customer called"}).raise_for_status()
    viewer = logged_in(board.url, "viewer")
    try:
        html = viewer.get(f"/stores/{STORE}/orders").text
    finally:
        viewer.close()

    def column(name: str) -> str:
        start = html.index(f'data-testid="column-{name}"')
        end = html.find('data-testid="column-', start + 1)
        return html[start:end if end > 0 else len(html)]

    assert placed["order_id"] in column("placed") and accepted["order_id"] not in column("placed")
    assert accepted["order_id"] in column("accepted")
    assert cancelled["order_id"] in column("done") and "customer called" in column("done")
    assert 'data-verb="accept"' not in html and "/reprints" not in html   # a viewer changes nothing
    assert 'data-testid="printers"' in html
