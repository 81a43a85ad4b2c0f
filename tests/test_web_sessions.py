"""Back-office sessions over real HTTP: login, cookie flags, CSRF, slow-down, roles, stores, logout, language."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.web.i18n import LANGUAGES, language
from pos_ledger.errors import AlreadyExists, InvalidInput, Unauthorized
from pos_ledger.ledger import Ledger
from pos_ledger.simulate import Client, Terminal
from pos_ledger.staff import FAILURES_PER_USERNAME_MAX, LoginThrottled, StaffService, normalise_username
from pos_ledger.staff_table import StaffTable
from tests.conftest import ADMIN_TOKEN, SERVER_SEED, LiveServer
from tests.loyalty_support import STORE, offline, ok, register, sale
from tests.web_support import PASSWORD, add_staff, csrf_of, logged_in


@pytest.fixture
def database(tmp_path: Path) -> str:
    """SQLite only here: tests/test_staff.py runs the account flow on PostgreSQL too."""
    return str(tmp_path / "ledger.sqlite3")


def test_root_leads_to_login_then_to_the_store_dashboard(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                          live_server: LiveServer) -> None:
    add_staff(admin, STORE, "ann", "owner")
    with httpx.Client(base_url=live_server.url) as browser:
        assert browser.get("/").headers["location"] == "/login"
        page = browser.get("/login")
        assert page.status_code == 200 and 'name="username"' in page.text and 'name="password"' in page.text
        # No CSRF field at all (a script, not a browser): still a login; the store is never asked for.
        answer = browser.post("/login", data={"username": "ANN", "password": PASSWORD})
        assert answer.status_code == 303 and answer.headers["location"] == f"/stores/{STORE}/dashboard"
        cookies = answer.headers.get_list("set-cookie")
        session_cookie = next(c for c in cookies if c.startswith("pos_session="))
        assert "Path=/" in session_cookie
        for cookie in cookies:  # the session's, and the login form's token being cleared
            assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Secure" not in cookie
        dashboard = browser.get(answer.headers["location"])
        assert dashboard.status_code == 200 and 'data-testid="net-sales-today"' in dashboard.text
        assert browser.get("/").headers["location"] == f"/stores/{STORE}/dashboard"
    with httpx.Client(base_url=live_server.url) as browser:
        secure = browser.post("/login", data={"username": "ann", "password": PASSWORD},
                              headers={"x-forwarded-proto": "https"})
        assert "Secure" in secure.headers["set-cookie"]


def test_wrong_passwords_slow_down_per_username_and_address(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                            live_server: LiveServer) -> None:
    add_staff(admin, STORE, "ann", "owner")
    with httpx.Client(base_url=live_server.url) as browser:
        for _ in range(FAILURES_PER_USERNAME_MAX):
            wrong = browser.post("/login", data={"username": "ann", "password": "not the password"})
            assert wrong.status_code == 401 and "pos_session" not in wrong.headers.get("set-cookie", "")
            assert 'data-testid="login-error"' in wrong.text
        locked = browser.post("/login", data={"username": "ann", "password": PASSWORD})
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert "pos_session" not in locked.headers.get("set-cookie", "")
        # Another username from the same address still logs in (its address count is below its limit).
        add_staff(admin, STORE, "bob", "viewer")
        assert browser.post("/login", data={"username": "bob", "password": PASSWORD}).status_code == 303


def test_state_changes_with_the_cookie_need_the_csrf_token(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                           live_server: LiveServer) -> None:
    add_staff(admin, STORE, "ann", "manager")
    browser = logged_in(live_server.url, "ann")
    item = {"name": "Mocha", "price_minor": 3200, "category": "coffee"}
    missing = browser.put(f"/v1/stores/{STORE}/menu/MOCHA", json=item)
    assert missing.status_code == 403 and missing.json()["type"].endswith("/csrf-token-invalid")
    wrong = browser.put(f"/v1/stores/{STORE}/menu/MOCHA", json=item, headers={"x-csrf-token": "nope"})
    assert wrong.status_code == 403
    token = csrf_of(browser, f"/stores/{STORE}/menu")
    foreign = browser.put(f"/v1/stores/{STORE}/menu/MOCHA", json=item,
                          headers={"x-csrf-token": token, "origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert "MOCHA" not in {i["sku"] for i in ok(admin.get(f"/v1/stores/{STORE}/menu"))}
    done = browser.put(f"/v1/stores/{STORE}/menu/MOCHA", json=item, headers={"x-csrf-token": token})
    assert done.status_code == 200
    # Reads need no token; the session reaches every JSON route its role allows.
    assert browser.get(f"/v1/stores/{STORE}/balances").status_code == 200
    # A login form posted from another site is refused too (login CSRF).
    with httpx.Client(base_url=live_server.url) as other:
        forged = other.post("/login", data={"username": "ann", "password": PASSWORD},
                            headers={"origin": "https://evil.example"})
        assert forged.status_code == 403 and "pos_session" not in forged.headers.get("set-cookie", "")
        other.get("/login")
        mismatched = other.post("/login", data={"username": "ann", "password": PASSWORD, "csrf_token": "x"})
        assert mismatched.status_code == 403
    browser.close()


def test_a_viewer_changes_nothing_and_staff_see_only_their_store(shop: tuple[Client, Terminal],
                                                                  admin: httpx.Client,
                                                                  live_server: LiveServer) -> None:
    ok(admin.post("/v1/stores", json={"store_id": "s2", "name": "Other", "currency": "CNY",
                                      "timezone": "Asia/Shanghai"}), 201)
    add_staff(admin, STORE, "vera", "viewer")
    browser = logged_in(live_server.url, "vera")
    token = csrf_of(browser, f"/stores/{STORE}/menu")
    refused = browser.put(f"/v1/stores/{STORE}/menu/LATTE", json={"name": "Latte", "price_minor": 1},
                          headers={"x-csrf-token": token})
    assert refused.status_code == 403
    assert browser.delete(f"/v1/stores/{STORE}/menu/LATTE", headers={"x-csrf-token": token}).status_code == 403
    assert ok(admin.get(f"/v1/stores/{STORE}/menu"))[1]["price_minor"] == 2800
    menu_page = browser.get(f"/stores/{STORE}/menu")
    assert menu_page.status_code == 200 and "api-form" not in menu_page.text and "Latte" in menu_page.text
    assert browser.get(f"/v1/stores/{STORE}/menu").status_code == 200
    assert browser.get("/v1/stores/s2/menu").status_code == 403
    other_page = browser.get("/stores/s2/dashboard")
    assert other_page.status_code == 403 and "s2" not in re.sub(r"<head>.*</head>", "", other_page.text, flags=re.S)
    assert browser.get("/stores").headers["location"] == f"/stores/{STORE}/dashboard"
    browser.close()


def test_the_store_is_asked_only_when_username_and_password_open_two_stores(
        shop: tuple[Client, Terminal], admin: httpx.Client, live_server: LiveServer) -> None:
    ok(admin.post("/v1/stores", json={"store_id": "s2", "name": "Other", "currency": "CNY",
                                      "timezone": "Asia/Shanghai"}), 201)
    add_staff(admin, STORE, "sam", "owner")
    add_staff(admin, "s2", "sam", "viewer")
    with httpx.Client(base_url=live_server.url) as browser:
        ambiguous = browser.post("/login", data={"username": "sam", "password": PASSWORD})
        assert ambiguous.status_code == 409 and 'name="store"' in ambiguous.text
        assert "pos_session" not in ambiguous.headers.get("set-cookie", "")
        chosen = browser.post("/login", data={"username": "sam", "password": PASSWORD, "store": "s2"})
        assert chosen.headers["location"] == "/stores/s2/dashboard"
        token = csrf_of(browser, "/stores/s2/menu")
        # The s2 viewer is not the s1 owner: nothing of s1, nothing changed in s2.
        assert browser.get(f"/v1/stores/{STORE}/menu").status_code == 403
        assert browser.put("/v1/stores/s2/menu/X", json={"name": "x", "price_minor": 1},
                           headers={"x-csrf-token": token}).status_code == 403
    with httpx.Client(base_url=live_server.url) as browser:
        wrong_store = browser.post("/login", data={"username": "sam", "password": PASSWORD, "store": "s3"})
        assert wrong_store.status_code == 401


def test_logout_revokes_the_session(shop: tuple[Client, Terminal], admin: httpx.Client,
                                    live_server: LiveServer) -> None:
    add_staff(admin, STORE, "ann", "owner")
    browser = logged_in(live_server.url, "ann")
    cookie = browser.cookies["pos_session"]
    token = csrf_of(browser, f"/stores/{STORE}/dashboard")
    assert browser.post("/logout", data={"csrf_token": "wrong"}).status_code == 403
    assert browser.post("/logout", data={"csrf_token": token},
                        headers={"origin": "https://evil.example"}).status_code == 403
    assert browser.get(f"/v1/stores/{STORE}/menu").status_code == 200  # still logged in
    out = browser.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    with httpx.Client(base_url=live_server.url, cookies={"pos_session": cookie}) as stolen:
        assert stolen.get(f"/v1/stores/{STORE}/menu").status_code == 401
        page = stolen.get(f"/stores/{STORE}/dashboard")
        assert page.status_code == 303 and page.headers["location"].startswith("/login?next=")
    browser.close()
    # A script (no Origin, no form token) may end its own session too.
    script = logged_in(live_server.url, "ann")
    cookie = script.cookies["pos_session"]
    assert script.post("/logout").headers["location"] == "/login"
    script.close()
    with httpx.Client(base_url=live_server.url, cookies={"pos_session": cookie}) as stolen:
        assert stolen.get(f"/v1/stores/{STORE}/menu").status_code == 401


def test_the_admin_token_logs_in_as_admin_and_picks_a_store(shop: tuple[Client, Terminal],
                                                            live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as browser:
        assert browser.post("/login", data={"username": "admin", "password": "guess"}).status_code == 401
        answer = browser.post("/login", data={"username": "admin", "password": ADMIN_TOKEN})
        assert answer.headers["location"] == "/stores"
        stores = browser.get("/stores")
        assert f'href="/stores/{STORE}/dashboard"' in stores.text
        assert browser.get(f"/stores/{STORE}/campaigns").status_code == 200
        # next= only ever leads to a path on this server.
        again = browser.get("/login", params={"next": "//evil.example/x"})
        assert again.headers["location"] == "/stores"


def test_login_bodies_are_small_and_labels_follow_the_browser(shop: tuple[Client, Terminal],
                                                              live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as browser:
        huge = browser.post("/login", data={"username": "a", "password": "b" * 40_000})
        assert huge.status_code == 413
        chinese = browser.get("/login", headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"})
        assert "登录" in chinese.text and 'lang="zh-CN"' in chinese.text
        english = browser.get("/login", headers={"accept-language": "fr-FR,en;q=0.5"})
        assert "Log in" in english.text and "登录" not in english.text


def test_dashboard_and_members_hooks_carry_the_reports_numbers(shop: tuple[Client, Terminal],
                                                               admin: httpx.Client,
                                                               live_server: LiveServer) -> None:
    client, terminal = shop
    add_staff(admin, STORE, "ann", "owner")
    register(admin, "m1")
    register(admin, "m2")
    now = datetime.now(UTC)
    sales = [sale("m1", 2_800), sale("m1", 1_900, method="cash"), sale("m2", 900), sale(None, 4_100)]
    answer = client.post_events(STORE, "t1", [offline(terminal, "sale.completed", s, now) for s in sales])
    assert [r["status"] for r in answer["results"]] == ["accepted"] * 4
    browser = logged_in(live_server.url, "ann")
    dashboard = browser.get(f"/stores/{STORE}/dashboard").text
    report = ok(admin.get(f"/v1/stores/{STORE}/reports/sales", params={"group_by": "day"}))
    net = re.search(r'data-testid="net-sales-today" data-minor="(-?\d+)"', dashboard)
    orders = re.search(r'data-testid="orders-today" data-value="(\d+)"', dashboard)
    assert net is not None and orders is not None
    assert int(net.group(1)) == report["totals"]["net_minor"] == 9_700
    assert int(orders.group(1)) == report["totals"]["orders"] == 4
    members = browser.get(f"/stores/{STORE}/members").text
    rate = re.search(r'data-testid="repurchase-rate" data-value="([0-9.]+)"', members)
    assert rate is not None and float(rate.group(1)) == 0.5  # m1 bought twice, m2 once
    browser.close()


def test_login_service_on_the_real_table(tmp_path: Path) -> None:
    database = str(tmp_path / "ledger.sqlite3")
    ledger = Ledger(database, SERVER_SEED)
    table = StaffTable(database)
    try:
        ledger.open_store("s9", "Shop", "CNY", "Asia/Shanghai")
        service = StaffService(table, ledger)
        service.add("s9", "Zoe", PASSWORD, "viewer", now=1_000)
        with pytest.raises(AlreadyExists):
            service.add("s9", "zoe", PASSWORD, "owner", now=1_000)
        opened = service.login("zoe", PASSWORD, "10.0.0.1", "admin-token", now=1_000)
        assert service.session(opened.token, "admin-token", now=1_001) == opened.session
        assert service.session(opened.token, "admin-token", now=1_000 + 12 * 3600) is None  # expired
        assert service.session("forged", "admin-token", now=1_001) is None
        for attempt in range(FAILURES_PER_USERNAME_MAX):
            with pytest.raises(Unauthorized):
                service.login("zoe", f"wrong {attempt}", "10.0.0.2", "admin-token", now=2_000)
        with pytest.raises(LoginThrottled):
            service.login("zoe", PASSWORD, "10.0.0.3", "admin-token", now=2_000)
        # The window ends: the right password works again, and clears the count.
        assert service.login("zoe", PASSWORD, "10.0.0.3", "admin-token", now=2_000 + 15 * 60).token
        admin = service.login("admin", "admin-token", "10.0.0.4", "admin-token", now=3_000)
        assert admin.session.store_id is None
        assert service.session(admin.token, "rotated-token", now=3_001) is None  # the token changed
        service.logout(opened.token, now=3_002)
        assert service.session(opened.token, "admin-token", now=3_003) is None
    finally:
        table.close()
        ledger.close()


@given(st.text(max_size=80))
def test_a_username_is_stored_in_one_form(raw: str) -> None:
    try:
        name = normalise_username(raw)
    except InvalidInput:
        return
    assert normalise_username(name) == name and name == name.lower() and 1 <= len(name) <= 64


@given(st.text(max_size=200))
def test_any_accept_language_picks_a_supported_language(header: str) -> None:
    assert language(header) in LANGUAGES


def test_accept_language_honours_quality() -> None:
    assert language("en;q=0.4, zh-TW;q=0.8") == "zh"
    assert language("zh;q=0, en") == "en"
    assert language("") == "en"
    assert language(str(uuid.uuid4())) == "en"


def test_every_form_on_every_page_carries_the_csrf_token(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                          live_server: LiveServer) -> None:
    from api.web.pages import NAV

    add_staff(admin, STORE, "ann", "owner")
    browser = logged_in(live_server.url, "ann")
    token = csrf_of(browser, f"/stores/{STORE}/dashboard")
    for entry in NAV:
        page = browser.get(f"/stores/{STORE}/{entry.slug}")
        assert page.status_code == 200, entry.slug
        forms = re.findall(r"<form\b[^>]*>.*?</form>", page.text, flags=re.S)
        assert forms, entry.slug  # at least the logout form
        for form in forms:
            field = re.search(r'<input type="hidden" name="csrf_token" value="([^"]+)"([^>]*)>', form)
            assert field is not None and field.group(1) == token, (entry.slug, form[:200])
            # A GET form's copy is disabled: the token never travels in a URL.
            assert ('method="get"' in form) == ("disabled" in field.group(2)), (entry.slug, form[:200])
    browser.close()


def test_pages_load_nothing_from_another_origin(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                 live_server: LiveServer) -> None:
    """No CDN: a shop that goes offline keeps its back office (ECharts is vendored with its licence)."""
    from api.web.pages import NAV, STATIC_DIR

    assert "Apache License" in (STATIC_DIR / "vendor" / "echarts-LICENSE.txt").read_text()
    add_staff(admin, STORE, "ann", "owner")
    anonymous = httpx.Client(base_url=live_server.url)
    browser = logged_in(live_server.url, "ann")
    pages = [anonymous.get("/login"), *[browser.get(f"/stores/{STORE}/{entry.slug}") for entry in NAV]]
    anonymous.close()
    for page in pages:
        path = page.url.path
        assert page.status_code == 200, path
        for reference in re.findall(r'(?:src|href)="([^"]*)"', page.text):
            assert reference.startswith(("/", "?", "#")) and not reference.startswith("//"), (path, reference)
        assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/app.css", "/static/vendor/echarts-5.6.0.common.min.js"):
        assert browser.get(asset).status_code == 200
    browser.close()
