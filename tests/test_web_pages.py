"""One Playwright test per back-office page, in Debian's chromium, each leaving a screenshot.

Screenshots go to var/screenshots/ (not committed). The pages are driven the way a
shop owner would: log in through the form, follow the nav, fill forms, click.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from pos_ledger.simulate import Client, Terminal, TerminalKey
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.loyalty_support import STORE, campaign, issue, offline, ok, register, sale
from tests.web_support import PASSWORD, add_staff

pytestmark = pytest.mark.browser
playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"


class Seeded:
    def __init__(self, server: LiveServer, admin: httpx.Client) -> None:
        self.server = server
        self.admin = admin
        self.url = server.url


def _seed(server: LiveServer) -> httpx.Client:
    client = Client(server.url, ADMIN_TOKEN)
    client.open_store(STORE, "Test Shop", "CNY", "Asia/Shanghai")
    client.put_menu_item(STORE, "LATTE", "Latte", 2800, "coffee")
    client.put_menu_item(STORE, "TART", "Egg tart", 900, "bakery")
    till = Terminal(TerminalKey.generate("t1"), seq=0)
    client.register_terminal(STORE, till.key, "till 1")
    admin = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    add_staff(admin, STORE, "owner", "owner")
    add_staff(admin, STORE, "viewer", "viewer")
    add_staff(admin, STORE, "auditor", "auditor")
    ok(admin.put(f"/v1/stores/{STORE}/member-program", json={"recharge_rules": [], "tiers": [
        {"tier": "silver", "points_lifetime_min": 0}, {"tier": "gold", "points_lifetime_min": 1000}]}))
    register(admin, "m1")
    register(admin, "m2")
    ok(admin.post(SHIFTS, json={"float_minor": 10_000, "terminal_id": "t1", "shift_id": "morning"}), 201)
    now = datetime.now(UTC)
    week_ago = now - timedelta(days=7)
    events = [offline(till, "sale.completed", s, now) for s in
              (sale("m1", 2_800), sale("m1", 1_900, method="cash"), sale("m2", 900), sale(None, 4_100))]
    events += [offline(till, "sale.completed", sale(None, 3_000), week_ago)]
    assert all(r["status"] == "accepted" for r in client.post_events(STORE, "t1", events)["results"])
    ok(admin.post(f"{SHIFTS}/morning/close", json={"counted_minor": 11_900}))
    ok(admin.post(f"/v1/stores/{STORE}/members/m1/recharge", json={"amount_minor": 10_000, "currency": "CNY"}),
       201)
    campaign(admin, "spring", issue_rule="qr_claim", name="Spring claim")
    campaign(admin, "c1")
    coupon = issue(admin, "c1", "m1")
    twice = [offline(till, "coupon.redeemed", {
        "coupon_id": coupon["coupon_id"], "redemption_id": f"r{i}", "order_ref": str(uuid.uuid4()),
        "currency": "CNY", "discount_minor": 2_000, "redeemed_at": now.isoformat(), "offline": True})
        for i in range(2)]
    assert [r["status"] for r in client.post_events(STORE, "t1", twice)["results"]] == ["accepted"] * 2
    client.close()
    return admin


SHIFTS = f"/v1/stores/{STORE}/shifts"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    server = LiveServer(str(tmp_path_factory.mktemp("web") / "ledger.sqlite3")).start()
    admin = _seed(server)
    try:
        yield Seeded(server, admin)
    finally:
        admin.close()
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield instance
        instance.close()


def login(browser: Any, seeded: Seeded, username: str = "owner", locale: str = "en-US",
          lands_on: str = "dashboard") -> Any:
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(seeded.url + "/")
    page.fill('input[name="username"]', username)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_url(re.compile(rf".*/stores/s1/{lands_on}$"))
    return page


def nav(page: Any, slug: str) -> None:
    page.click(f'nav a[data-nav="{slug}"]')
    page.wait_for_url(re.compile(rf".*/stores/s1/{slug}(\?.*)?$"))


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_login_page(browser: Any, seeded: Seeded) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(seeded.url + "/")
    assert page.url.endswith("/login")
    page.fill('input[name="username"]', "owner")
    page.fill('input[name="password"]', "wrong password")
    page.click('button[type="submit"]')
    assert page.locator('[data-testid="login-error"]').is_visible()
    shot(page, "login-error")
    page.fill('input[name="username"]', "owner")
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    page.wait_for_url(re.compile(r".*/stores/s1/dashboard$"))
    cookie = next(c for c in context.cookies() if c["name"] == "pos_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.click('[data-testid="logout"]')
    page.wait_for_url(re.compile(r".*/login$"))
    shot(page, "login")
    context.close()


def test_dashboard_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    totals = ok(seeded.admin.get(f"/v1/stores/{STORE}/reports/sales",
                                 params={"from": today, "to": today, "group_by": "day"}))["totals"]
    net = page.locator('[data-testid="net-sales-today"]')
    assert int(net.get_attribute("data-minor")) == totals["net_minor"] == 9_700
    assert int(page.locator('[data-testid="orders-today"]').get_attribute("data-value")) == 4
    assert "97.00" in net.inner_text()
    page.wait_for_selector('[data-testid="chart-by-hour"] canvas')
    page.wait_for_selector('[data-testid="chart-methods"] canvas')
    assert "Latte" in page.locator('[data-testid="top-items"]').inner_text()
    shot(page, "dashboard")
    week_ago = page.locator('input[name="date"]').input_value()
    day = (datetime.fromisoformat(week_ago) - timedelta(days=7)).date().isoformat()
    page.fill('input[name="date"]', day)
    page.click('form.filters button[type="submit"]')
    page.wait_for_url(re.compile(r".*date=.*"))
    assert int(page.locator('[data-testid="net-sales-today"]').get_attribute("data-minor")) == 3_000
    page.context.close()


def test_sales_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    nav(page, "sales")
    page.select_option('select[name="group_by"]', "method")
    page.click('[data-testid="sales-filters"] button[type="submit"]')
    page.wait_for_url(re.compile(r".*group_by=method.*"))
    table = page.locator('[data-testid="sales-table"]').inner_text()
    assert "cash" in table and "wechat" in table
    with page.expect_download() as download:
        page.click('[data-testid="csv-download"]')
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0].startswith("key,") and "cash" in text
    page.wait_for_selector(".chart canvas")
    shot(page, "sales")
    page.context.close()


def test_members_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    nav(page, "members")
    # Default window: the last 30 days; m1 bought twice, m2 once.
    assert float(page.locator('[data-testid="repurchase-rate"]').get_attribute("data-value")) == 0.5
    assert page.locator('[data-testid="active-members"]').get_attribute("data-value") == "2"
    page.wait_for_selector('[data-testid="chart-trend"] canvas')
    shot(page, "members")
    page.context.close()


def test_menu_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    nav(page, "menu")
    form = page.locator('[data-testid="menu-form-LATTE"]')
    form.locator('input[name="price_minor"]').fill("30.50")
    form.locator('input[name="available"]').uncheck()
    with page.expect_navigation():
        form.locator('button[type="submit"]').click()
    add = page.locator('[data-testid="menu-add"]')
    add.locator('input[name="sku"]').fill("MOCHA")
    add.locator('input[name="name"]').fill("Mocha")
    add.locator('input[name="price_minor"]').fill("32")
    add.locator('input[name="category"]').fill("coffee")
    with page.expect_navigation():
        add.locator('button[type="submit"]').click()
    items = {i["sku"]: i for i in ok(seeded.admin.get(f"/v1/stores/{STORE}/menu"))}
    assert items["LATTE"]["price_minor"] == 3050 and items["LATTE"]["available"] is False
    assert items["MOCHA"]["price_minor"] == 3200 and items["MOCHA"]["available"] is True
    # A bad price is refused in the page, nothing is sent.
    add.locator('input[name="sku"]').fill("BAD")
    add.locator('input[name="name"]').fill("Bad")
    add.locator('input[name="price_minor"]').fill("1.234")
    add.locator('button[type="submit"]').click()
    assert "decimals" in add.locator(".form-error").inner_text()
    assert "BAD" not in {i["sku"] for i in ok(seeded.admin.get(f"/v1/stores/{STORE}/menu"))}
    shot(page, "menu")
    page.context.close()


def test_program_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    nav(page, "program")
    page.fill('input[name="recharge_rules.0.name"]', "Pay 100 get 20")
    page.fill('input[name="recharge_rules.0.paid_minor_min"]', "100")
    page.fill('input[name="recharge_rules.0.bonus_minor"]', "20")
    with page.expect_navigation():
        page.click('[data-testid="program-form"] button[type="submit"]')
    program = ok(seeded.admin.get(f"/v1/stores/{STORE}/member-program"))
    assert [(r["name"], r["paid_minor_min"], r["bonus_minor"]) for r in program["recharge_rules"]] == [
        ("Pay 100 get 20", 10_000, 2_000)]
    assert [t["tier"] for t in program["tiers"]] == ["silver", "gold"]
    assert page.locator('input[name="recharge_rules.0.name"]').input_value() == "Pay 100 get 20"
    shot(page, "program")
    page.context.close()


def test_campaigns_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    nav(page, "campaigns")
    form = page.locator('[data-testid="campaign-form"]')
    form.locator('input[name="campaign_id"]').fill("autumn")
    form.locator('input[name="name"]').fill("Autumn 20 off")
    form.locator('select[name="issue_rule"]').select_option("qr_claim")
    form.locator('input[name="threshold_minor"]').fill("100")
    form.locator('input[name="off_minor"]').fill("20")
    with page.expect_navigation():
        form.locator('button[type="submit"]').click()
    created = ok(seeded.admin.get(f"/v1/stores/{STORE}/campaigns/autumn"))
    assert created["off_minor"] == 2_000 and created["threshold_minor"] == 10_000 and not created["paused"]
    with page.expect_navigation():
        page.click('[data-testid="pause-autumn"]')
    assert page.locator('[data-testid="campaign-status-autumn"]').inner_text() == "Paused"
    assert ok(seeded.admin.get(f"/v1/stores/{STORE}/campaigns/autumn"))["paused"] is True
    page.click('tr[data-campaign="spring"] details summary')
    image = page.locator('[data-testid="claim-qr-spring"]')
    image.wait_for(state="visible")
    page.wait_for_function("document.querySelector('[data-testid=\"claim-qr-spring\"]').naturalWidth > 0")
    assert "c1" in page.locator('[data-testid="campaign-results"]').inner_text()
    shot(page, "campaigns")
    page.context.close()


def test_stored_value_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    nav(page, "stored-value")
    report = ok(seeded.admin.get(f"/v1/stores/{STORE}/reports/stored-value"))
    shown = page.locator('[data-testid="outstanding_principal_minor"]').get_attribute("data-minor")
    assert int(shown) == report["outstanding_principal_minor"] == 10_000
    assert int(page.locator('[data-testid="recharged_minor"]').get_attribute("data-minor")) == 10_000
    shot(page, "stored-value")
    page.context.close()


def test_conflicts_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    nav(page, "conflicts")
    form = page.locator('form[data-testid^="resolve-"]').first
    form.locator('input[name="note"]').fill("customer paid the difference")
    shot(page, "conflicts")
    with page.expect_navigation():
        form.locator('button[type="submit"]').click()
    assert page.locator('[data-testid="no-conflicts"]').is_visible()
    resolved = ok(seeded.admin.get(f"/v1/stores/{STORE}/conflicts", params={"include_resolved": "true"}))
    assert [(c["resolved"], c["resolution_note"]) for c in resolved] == [(True, "customer paid the difference")]
    page.context.close()


def test_shifts_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    nav(page, "shifts")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    z = ok(seeded.admin.get(f"/v1/stores/{STORE}/z-report", params={"day": today}))
    assert z["shifts"] == ["morning"]
    assert page.locator('[data-testid="z-sales-count"]').first.get_attribute("data-value") == str(z["sales_count"])
    page.click('[data-testid="shift-link"]')
    page.wait_for_url(re.compile(r".*shift=morning.*"))
    assert "morning" in page.locator('[data-testid="shift-report"]').inner_text()
    shot(page, "shifts")
    page.context.close()


def test_projections_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded)
    nav(page, "projections")
    rows = page.locator('[data-testid="projections"] tbody tr')
    assert rows.count() >= 1
    status = ok(seeded.admin.get(f"/v1/stores/{STORE}/projections"))
    assert {p["name"] for p in status} == {rows.nth(i).get_attribute("data-projection") for i in range(rows.count())}
    shot(page, "projections")
    page.context.close()


def test_viewer_and_chinese_labels(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded, "viewer", locale="zh-CN")
    assert page.locator('nav a[data-nav="dashboard"]').inner_text() == "仪表盘"
    nav(page, "menu")
    assert page.locator("form.api-form").count() == 0
    shot(page, "viewer-zh-menu")
    page.context.close()


def test_audit_page(browser: Any, seeded: Seeded) -> None:
    page = login(browser, seeded, "auditor", lands_on="audit")
    assert [page.locator("nav a").nth(i).get_attribute("data-nav") for i in range(page.locator("nav a").count())] \
        == ["menu", "audit"]
    chain = ok(seeded.admin.get(f"/v1/stores/{STORE}/chain"))
    assert int(page.locator('[data-testid="chain-length"]').get_attribute("data-value")) == chain["length"]
    assert page.locator('[data-testid="chain-head"]').inner_text() == chain["head"]
    assert "staff.added" in page.locator('[data-testid="audit-entries"]').inner_text()
    shot(page, "audit")
    page.goto(seeded.url + f"/stores/{STORE}/dashboard")
    assert page.locator('[data-testid="error-message"]').is_visible()
    page.context.close()
