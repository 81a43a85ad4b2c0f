"""The apps page in the browser (Debian's chromium): the owner installs an app the admin registered,
sees its secrets once (a reload does not show them again), sees its scopes in plain words, its
webhook deliveries and the disabled-endpoint notice, replays from a position, and uninstalls it.
Screenshots go to var/screenshots/ (not committed)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.loyalty_support import STORE
from tests.platform_support import Receiver, register_app
from tests.test_web_pages import browser, login, nav, shot  # noqa: F401  (browser: the chromium fixture)
from tests.web_support import add_staff, logged_in

pytestmark = pytest.mark.browser
APPS = f"/v1/stores/{STORE}/apps"


class Shop:
    def __init__(self, server: LiveServer, admin: httpx.Client, receiver: Receiver) -> None:
        self.server = server
        self.admin = admin
        self.receiver = receiver
        self.url = server.url


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    server = LiveServer(str(tmp_path_factory.mktemp("apps") / "ledger.sqlite3")).start()
    admin = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    receiver = Receiver(secrets=[]).start()
    try:
        assert admin.post("/v1/stores", json={"store_id": STORE, "name": "Test Shop", "currency": "CNY",
                                              "timezone": "Asia/Shanghai"}).status_code == 201
        assert admin.put(f"/v1/stores/{STORE}/menu/TART", json={"name": "Egg tart", "price_minor": 900,
                                                                "category": "bakery"}).status_code in (200, 201)
        # The tests' receiver listens on loopback.
        assert admin.patch(f"/v1/stores/{STORE}/settings", json={"allow_local_webhooks": True}).status_code == 200
        add_staff(admin, STORE, "owner", "owner")
        add_staff(admin, STORE, "manager", "manager")
        yield Shop(server, admin, receiver)
    finally:
        receiver.stop()
        admin.close()
        server.stop()


def wait_until(predicate: Any, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
    return value


def place_order(admin: httpx.Client) -> int:
    response = admin.post(f"/v1/stores/{STORE}/orders", json={
        "channel": "phone", "channel_order_id": f"p-{time.monotonic_ns()}",
        "lines": [{"sku": "TART", "qty": 2, "unit_price_minor": 900}], "fulfillment": {"type": "pickup"},
        "total_minor": 1800})
    assert response.status_code == 201, response.text
    return int(response.json()["placed_position"])


def test_apps_page(browser: Any, shop: Shop) -> None:  # noqa: F811  (the imported fixture)
    register_app(shop.admin, "crm", ["orders:read", "members:read", "events:read"],
                 webhook_url=shop.receiver.url, event_types=["order.*"])
    page = login(browser, shop)  # type: ignore[arg-type]
    nav(page, "apps")
    available = page.locator('[data-testid="available-crm"]')
    assert "See online orders and completed sales" in available.inner_text()
    assert "See members with their personal details" in available.inner_text()
    assert page.locator('[data-testid="install-secrets"]').is_hidden()

    page.click('[data-testid="install-crm"]')
    secrets = page.locator('[data-testid="install-secrets"]')
    secrets.wait_for(state="visible")
    client_id = secrets.locator('[data-secret="client_id"]').inner_text()
    client_secret = page.locator('[data-testid="client-secret"]').inner_text()
    webhook_secret = page.locator('[data-testid="webhook-secret"]').inner_text()
    assert client_id and len(client_secret) >= 20 and webhook_secret.startswith("whsec_")
    assert "only this once" in page.locator('[data-testid="secrets-warning"]').inner_text()
    shot(page, "apps-installed-secrets")
    # The secrets shown are the install's: the client's token and the webhook's signature check.
    token = httpx.post(shop.url + "/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(client_id, client_secret))
    assert token.status_code == 200, token.text
    shop.receiver.secrets.append(webhook_secret)

    page.click('[data-testid="secrets-done"]')
    page.locator('[data-testid="installed-crm"]').wait_for()
    html = page.content()
    assert client_secret not in html and webhook_secret not in html
    page.reload()
    assert client_secret not in page.content() and webhook_secret not in page.content()
    installed = page.locator('[data-testid="installed-crm"]')
    assert client_id in installed.inner_text()
    assert "Read the store's event log" in installed.inner_text()
    assert page.locator('[data-testid="available-crm"]').count() == 0
    zh = login(browser, shop, locale="zh-CN")  # type: ignore[arg-type]
    nav(zh, "apps")
    assert "应用管理" in zh.locator("h1").inner_text()
    assert "查看线上订单和已完成的销售" in zh.locator('[data-testid="installed-crm"]').inner_text()
    shot(zh, "apps-zh")
    zh.context.close()

    # The endpoint answers 410 Gone: the delivery fails and the endpoint is disabled; the owner is told.
    shop.receiver.answer = lambda payload: 410
    position = place_order(shop.admin)
    wait_until(lambda: not shop.admin.get(f"{APPS}/crm").json()["webhook_enabled"])
    page.reload()
    notice = page.locator('[data-testid="webhook-disabled-crm"]')
    assert notice.is_visible() and "410" in notice.inner_text()
    row = page.locator(f'[data-delivery="crm:{position}"]')
    assert "order.placed" in row.inner_text() and "Failed" in row.inner_text() and "410" in row.inner_text()
    assert shop.receiver.rejected_signatures == 0
    shot(page, "apps")

    # Replay from the order's position once the endpoint works again: enabled, delivered.
    shop.receiver.answer = None
    form = page.locator('[data-testid="replay-crm"]')
    form.locator('input[name="from_position"]').fill(str(position))
    with page.expect_navigation():   # the form reloads the page when the API said 202
        form.locator("button").click()
    accepted = shop.receiver.wait_for(1)
    assert accepted[0]["data"]["position"] == position and accepted[0]["type"] == "order.placed"
    wait_until(lambda: shop.admin.get(f"{APPS}/crm").json()["webhook_enabled"])

    def delivered() -> bool:
        page.reload()
        return "Delivered" in page.locator(f'[data-delivery="crm:{position}"]').inner_text()

    wait_until(delivered)
    assert page.locator('[data-testid="webhook-disabled-crm"]').count() == 0

    # Uninstall (after the confirmation): the client's credentials stop working at once.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click('[data-testid="uninstall-crm"]')
    page.locator('[data-testid="available-crm"]').wait_for()
    assert page.locator('[data-testid="no-installed"]').is_visible()
    assert shop.admin.get(APPS).json() == []
    again = httpx.post(shop.url + "/oauth/token", data={"grant_type": "client_credentials"},
                       auth=(client_id, client_secret))
    assert again.status_code == 401
    page.context.close()


def test_apps_page_is_the_owners(shop: Shop) -> None:
    manager = logged_in(shop.url, "manager")
    try:
        assert manager.get(f"/stores/{STORE}/apps").status_code == 403
        assert 'data-nav="apps"' not in manager.get(f"/stores/{STORE}/dashboard").text
    finally:
        manager.close()
