"""Reports over HTTP on the real server (SQLite and PostgreSQL): every group-by, CSV, bad input,
the Z report reconciliation, members, campaigns, stored value and projection status."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from pos_ledger.simulate import Client, Terminal
from tests.conftest import LiveServer

ZONE = ZoneInfo("Asia/Shanghai")
REPORTS = "/v1/stores/s1/reports"


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def line(sku: str, qty: int, price: int) -> dict[str, Any]:
    return {"sku": sku, "name": sku.title(), "qty": qty, "unit_price_minor": price}


def sale(lines: list[dict[str, Any]], discount: int, tenders: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    gross = sum(x["qty"] * x["unit_price_minor"] for x in lines)
    return {"order_id": str(uuid.uuid4()), "currency": "CNY", "lines": lines, "discount_minor": discount,
            "total_minor": gross - discount, "tenders": tenders, **extra}


def sell(client: Client, terminal: Terminal, data: dict[str, Any], at: datetime) -> None:
    answer = client.post_events("s1", terminal.key.terminal_id, [terminal.sign("sale.completed", data, at)])
    assert answer["results"][0]["status"] == "accepted", answer


def row(key: str, orders: int, items: int, gross: int, discount: int, net: int) -> dict[str, Any]:
    return {"key": key, "orders": orders, "items": items, "gross_minor": gross, "discount_minor": discount,
            "net_minor": net}


@pytest.fixture
def three_sales(shop: tuple[Client, Terminal]) -> tuple[Client, Terminal]:
    """Two store-local days (one sale just before local midnight), a menu change between sales."""
    client, terminal = shop
    sell(client, terminal, sale([line("LATTE", 2, 2800), line("TART", 1, 900)], 500,
                                [{"method": "cash", "amount_minor": 10_000, "change_minor": 4000}]),
         datetime(2026, 3, 1, 23, 30, tzinfo=ZONE))
    client.put_menu_item("s1", "LATTE", "Latte", 2800, "drinks")
    sell(client, terminal, sale([line("LATTE", 1, 2800)], 0,
                                [{"method": "wechat", "amount_minor": 1800}, {"method": "cash", "amount_minor": 1000}],
                                channel="mini_program"),
         datetime(2026, 3, 2, 0, 15, tzinfo=ZONE))
    sell(client, terminal, sale([line("TART", 3, 900)], 200, [{"method": "alipay", "amount_minor": 2500}]),
         datetime(2026, 3, 2, 9, 5, tzinfo=ZONE))
    return client, terminal


EXPECTED = {
    "day": [row("2026-03-01", 1, 3, 6500, 500, 6000), row("2026-03-02", 2, 4, 5500, 200, 5300)],
    "hour": [row("00", 1, 1, 2800, 0, 2800), row("09", 1, 3, 2700, 200, 2500), row("23", 1, 3, 6500, 500, 6000)],
    "item": [row("LATTE", 2, 3, 8400, 0, 8400), row("TART", 2, 4, 3600, 0, 3600)],
    "category": [row("bakery", 2, 4, 3600, 0, 3600), row("coffee", 1, 2, 5600, 0, 5600),
                 row("drinks", 1, 1, 2800, 0, 2800)],
    "method": [row("alipay", 1, 3, 2700, 200, 2500), row("cash", 2, 4, 9300, 500, 7000),
               row("wechat", 1, 1, 2800, 0, 1800)],
    "terminal": [row("t1", 3, 7, 12000, 700, 11300)],
    "channel": [row("counter", 2, 6, 9200, 700, 8500), row("mini_program", 1, 1, 2800, 0, 2800)],
}


def test_sales_by_every_group_in_the_store_timezone(admin: httpx.Client, three_sales: Any) -> None:
    totals = {"orders": 3, "items": 7, "gross_minor": 12000, "discount_minor": 700, "net_minor": 11300,
              "refunds_minor": 0}
    for group_by, rows in EXPECTED.items():
        report = ok(admin.get(f"{REPORTS}/sales", params={"from": "2026-03-01", "to": "2026-03-02",
                                                          "group_by": group_by}))
        assert report["rows"] == rows, group_by
        assert report["totals"] == totals
        assert report["as_of_position"] == ok(admin.get("/v1/stores/s1/chain"))["length"]
    one_day = ok(admin.get(f"{REPORTS}/sales", params={"from": "2026-03-02", "to": "2026-03-02"}))
    assert one_day["rows"] == EXPECTED["day"][1:]
    assert one_day["totals"]["orders"] == 2


def test_sales_as_csv_starts_with_a_header(admin: httpx.Client, three_sales: Any) -> None:
    response = admin.get(f"{REPORTS}/sales", params={"from": "2026-03-01", "to": "2026-03-02",
                                                     "group_by": "method", "format": "csv"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0] == ["key", "orders", "items", "gross_minor", "discount_minor", "net_minor"]
    assert [[r["key"], *(str(r[c]) for c in table[0][1:])] for r in EXPECTED["method"]] == table[1:]
    assert response.headers["x-as-of-position"] == str(ok(admin.get("/v1/stores/s1/chain"))["length"])


@pytest.mark.parametrize("params", [
    {"group_by": "week"},
    {"from": "2026-02-30", "to": "2026-03-01"},
    {"from": "2026-3-1", "to": "2026-03-01"},
    {"from": "yesterday"},
    {"from": ""},
    {"from": "2026-03-02", "to": "2026-03-01"},
    {"from": "2025-02-28", "to": "2026-03-01"},
    {"format": "xml"},
])
def test_bad_input_is_a_422_problem(admin: httpx.Client, shop: Any, params: dict[str, str]) -> None:
    response = admin.get(f"{REPORTS}/sales", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if "group_by" not in params and "format" not in params:
        for report in ("members", "stored-value"):
            assert admin.get(f"{REPORTS}/{report}", params=params).status_code == 422


def test_a_366_day_window_is_allowed(admin: httpx.Client, shop: Any) -> None:
    ok(admin.get(f"{REPORTS}/sales", params={"from": "2024-01-01", "to": "2024-12-31"}))  # leap year: 366 days


def test_unknown_store_is_404_and_reports_need_a_credential(admin: httpx.Client, anonymous: httpx.Client,
                                                           shop: Any) -> None:
    for path in ("reports/sales", "reports/members", "reports/campaigns", "reports/stored-value",
                 "reports/dashboard", "projections"):
        response = admin.get(f"/v1/stores/nowhere/{path}")
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/problem+json")
        assert anonymous.get(f"/v1/stores/s1/{path}").status_code == 401


def test_reports_have_their_problems_in_openapi(admin: httpx.Client) -> None:
    paths = ok(admin.get("/openapi.json"))["paths"]
    for path in ("sales", "members", "campaigns", "stored-value", "dashboard"):
        responses = paths[f"/v1/stores/{{store_id}}/reports/{path}"]["get"]["responses"]
        assert {"401", "403", "404", "422"} <= set(responses), path
        assert "application/problem+json" in responses["422"]["content"]
    members = paths["/v1/stores/{store_id}/reports/members"]["get"]["description"]
    assert "champions" in members and "hibernating" in members


def test_projection_status(admin: httpx.Client, three_sales: Any) -> None:
    length = ok(admin.get("/v1/stores/s1/chain"))["length"]
    status = ok(admin.get("/v1/stores/s1/projections"))
    assert {s["name"] for s in status} == {"sales", "members", "campaigns", "stored_value"}
    for entry in status:
        assert entry == {"name": entry["name"], "position": length, "chain_length": length, "lag": 0,
                         "error": None}


def test_a_closed_shifts_sales_equal_its_z_report(admin: httpx.Client, shop: tuple[Client, Terminal]) -> None:
    client, terminal = shop
    shift = ok(admin.post("/v1/stores/s1/shifts", json={"float_minor": 10_000, "terminal_id": "t1"}), 201)
    now = datetime.now(UTC)
    sell(client, terminal, sale([line("LATTE", 1, 2800)], 0,
                                [{"method": "cash", "amount_minor": 5000, "change_minor": 2200}]), now)
    sell(client, terminal, sale([line("TART", 2, 900), line("LATTE", 1, 2800)], 300,
                                [{"method": "wechat", "amount_minor": 2000}, {"method": "cash", "amount_minor": 2300}]),
         now)
    sell(client, terminal, sale([line("TART", 1, 900)], 0, [{"method": "card", "amount_minor": 900}]), now)
    z = ok(admin.post(f"/v1/stores/s1/shifts/{shift['shift_id']}/close", json={"counted_minor": 15_100}))
    today = now.astimezone(ZONE).date()
    window = {"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}
    report = ok(admin.get(f"{REPORTS}/sales", params={**window, "group_by": "method"}))
    assert {r["key"]: r["net_minor"] for r in report["rows"]} == z["tenders"]
    assert report["totals"]["orders"] == z["sales_count"] == 3
    assert report["totals"]["discount_minor"] == z["discounts_minor"]
    assert report["totals"]["net_minor"] == sum(z["tenders"].values())
    assert report["totals"]["refunds_minor"] == z["refunds_minor"]


def test_members_campaigns_stored_value_and_dashboard(admin: httpx.Client, shop: tuple[Client, Terminal]) -> None:
    client, terminal = shop
    for member_id in ("m1", "m2", "m3"):
        ok(admin.post("/v1/stores/s1/members", json={"member_id": member_id}), 201)
    ok(admin.put("/v1/stores/s1/member-program", json={
        "recharge_rules": [{"name": "100+20", "paid_minor_min": 10_000, "bonus_minor": 2000}]}))
    ok(admin.post("/v1/stores/s1/members/m1/recharge", json={"amount_minor": 10_000, "currency": "CNY"}), 201)
    ok(admin.post("/v1/stores/s1/members/m1/spend", json={"amount_minor": 10_500, "order_ref": "o-1"}), 201)
    now = datetime.now(UTC)
    today = now.astimezone(ZONE).date()
    # m1 buys twice today, m2 once today and once 40 days ago, m3 never.
    for member_id, at in (("m1", now), ("m1", now), ("m2", now), ("m2", now - timedelta(days=40))):
        sell(client, terminal, sale([line("LATTE", 1, 2800)], 0, [{"method": "alipay", "amount_minor": 2800}],
                                    member_id=member_id), at)
    campaign = {"campaign_id": "spring", "name": "Spring", "kind": "cash_off", "off_minor": 500,
                "valid_from": (now - timedelta(days=1)).isoformat(), "valid_until": (now + timedelta(days=9)).isoformat(),
                "quota_total": 10}
    ok(admin.post("/v1/stores/s1/campaigns", json=campaign), 201)
    coupons = [ok(admin.post("/v1/stores/s1/campaigns/spring/issue", json={}), 201) for _ in range(4)]
    order = sale([line("LATTE", 2, 2800)], 500, [{"method": "wechat", "amount_minor": 5100}])
    ok(admin.post(f"/v1/stores/s1/coupons/{coupons[0]['coupon_id']}/redeem",
                  json={"order_ref": order["order_id"], "subtotal_minor": 5600}), 201)
    sell(client, terminal, order, now)

    window = {"from": (today - timedelta(days=6)).isoformat(), "to": today.isoformat()}
    members = ok(admin.get(f"{REPORTS}/members", params=window))
    assert (members["active_members"], members["new_members"], members["returning_members"]) == (2, 1, 1)
    assert members["repurchase_rate"] == 0.5
    assert members["tiers"] == {"standard": 3}
    assert sum(members["segments"].values()) == 2

    campaigns = ok(admin.get(f"{REPORTS}/campaigns"))["campaigns"]
    assert campaigns == [{"campaign_id": "spring", "name": "Spring", "kind": "cash_off", "issued": 4, "redeemed": 1,
                          "redemption_rate": 0.25, "discount_minor": 500, "revenue_minor": 5100}]

    stored = ok(admin.get(f"{REPORTS}/stored-value", params=window))
    balances = ok(admin.get("/v1/stores/s1/balances"))["balances"]
    principal = -sum(b["balance_minor"] for b in balances if b["account"].endswith(":principal")
                     and b["account"].startswith("liability:stored_value:"))
    bonus = -sum(b["balance_minor"] for b in balances if b["account"].endswith(":bonus")
                 and b["account"].startswith("liability:stored_value:"))
    assert (stored["outstanding_principal_minor"], stored["outstanding_bonus_minor"]) == (principal, bonus) == (0, 1500)
    assert (stored["recharged_minor"], stored["bonus_granted_minor"], stored["spent_minor"]) == (10_000, 2000, 10_500)

    board = ok(admin.get(f"{REPORTS}/dashboard", params={"date": today.isoformat()}))
    assert board["today"]["orders"] == 4 and board["today"]["net_minor"] == 3 * 2800 + 5100
    assert board["today"]["average_ticket_minor"] == 3375  # 13500 / 4
    assert board["same_weekday_last_week"]["date"] == (today - timedelta(days=7)).isoformat()
    assert len(board["by_hour"]) == 24 and sum(h["orders"] for h in board["by_hour"]) == 4
    assert board["top_items"][0]["sku"] == "LATTE" and board["top_items"][0]["name"] == "Latte"
    assert {m["method"]: m["net_minor"] for m in board["method_mix"]} == {"alipay": 3 * 2800, "wechat": 5100}


def test_reports_follow_a_live_server(live_server: LiveServer, admin: httpx.Client,
                                      shop: tuple[Client, Terminal]) -> None:
    """The background runner folds new sales without a report asking (woken by the commit)."""
    client, terminal = shop
    sell(client, terminal, sale([line("TART", 1, 900)], 0, [{"method": "card", "amount_minor": 900}]),
         datetime.now(UTC))
    runner = live_server.app.state.projections.runner
    length = live_server.ledger.chain("s1")[1]
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while min(p for p, _, _ in runner.positions("s1").values()) < length:
        assert datetime.now(UTC) < deadline, runner.positions("s1")
        time.sleep(0.05)
