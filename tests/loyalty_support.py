"""Helpers shared by the loyalty tests (members, coupons, concurrency, properties)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from pos_ledger.simulate import Terminal

STORE = "s1"
PROBLEM = "application/problem+json"
NOW = datetime.now(UTC)

PROGRAM: dict[str, Any] = {
    "recharge_rules": [
        {"name": "pay 100 get 20", "paid_minor_min": 10_000, "bonus_minor": 2_000},
        {"name": "pay 300 get 80", "paid_minor_min": 30_000, "bonus_minor": 8_000},
        {"name": "pay 500 get 10%+100", "paid_minor_min": 50_000, "bonus_minor": 10_000,
         "bonus_basis_points": 1_000},
    ],
    "tiers": [{"tier": "silver", "points_lifetime_min": 500}, {"tier": "gold", "points_lifetime_min": 2_000}],
    "earn_minor_per_point": 100,
    "point_value_minor": 1,
}


def ok(response: httpx.Response, status: int | None = None) -> Any:
    assert response.status_code < 400, response.text
    if status is not None:
        assert response.status_code == status, response.text
    return response.json()


def refused(response: httpx.Response, reason: str) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["reason"] == reason, body
    return body


def configure(admin: httpx.Client) -> None:
    ok(admin.put(f"/v1/stores/{STORE}/member-program", json=PROGRAM))


def register(admin: httpx.Client, member_id: str, **extra: Any) -> dict[str, Any]:
    return ok(admin.post(f"/v1/stores/{STORE}/members", json={"member_id": member_id, "name": member_id,
                                                               **extra}), 201)


def member(admin: httpx.Client, member_id: str) -> dict[str, Any]:
    return ok(admin.get(f"/v1/stores/{STORE}/members/{member_id}"))


def recharge(admin: httpx.Client, member_id: str, amount_minor: int, recharge_id: str | None = None,
             method: str = "wechat") -> httpx.Response:
    return admin.post(f"/v1/stores/{STORE}/members/{member_id}/recharge",
                      json={"amount_minor": amount_minor, "currency": "CNY", "method": method,
                            "recharge_id": recharge_id or uuid.uuid4().hex})


def spend(admin: httpx.Client, member_id: str, amount_minor: int, order_ref: str,
          spend_id: str | None = None) -> httpx.Response:
    return admin.post(f"/v1/stores/{STORE}/members/{member_id}/spend",
                      json={"amount_minor": amount_minor, "order_ref": order_ref,
                            "spend_id": spend_id or uuid.uuid4().hex})


def campaign(admin: httpx.Client, campaign_id: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "campaign_id": campaign_id, "name": "100 minus 20", "kind": "cash_off",
        "threshold_minor": 10_000, "off_minor": 2_000,
        "valid_from": (NOW - timedelta(days=1)).isoformat(),
        "valid_until": (NOW + timedelta(days=30)).isoformat(),
        "quota_total": 100, "issue_rule": "manual",
    }
    spec.update(overrides)
    return ok(admin.post(f"/v1/stores/{STORE}/campaigns", json=spec), 201)


def issue(admin: httpx.Client, campaign_id: str, member_id: str | None) -> dict[str, Any]:
    return ok(admin.post(f"/v1/stores/{STORE}/campaigns/{campaign_id}/issue",
                         json={"member_id": member_id}), 201)


def redeem(admin: httpx.Client, code: str, order_ref: str, subtotal_minor: int = 15_000,
           **extra: Any) -> httpx.Response:
    return admin.post(f"/v1/stores/{STORE}/coupons/{code}/redeem",
                      json={"order_ref": order_ref, "subtotal_minor": subtotal_minor, **extra})


def balances(admin: httpx.Client) -> dict[tuple[str, str], int]:
    rows = ok(admin.get(f"/v1/stores/{STORE}/balances"))["balances"]
    return {(r["account"], r["currency"]): r["balance_minor"] for r in rows}


def sale(member_id: str | None, total_minor: int, method: str = "wechat", order_id: str | None = None,
         discount_minor: int = 0) -> dict[str, Any]:
    return {
        "order_id": order_id or str(uuid.uuid4()), "currency": "CNY",
        "lines": [{"sku": "LATTE", "name": "Latte", "qty": 1, "unit_price_minor": total_minor + discount_minor}],
        "discount_minor": discount_minor, "total_minor": total_minor,
        "tenders": [{"method": method, "amount_minor": total_minor}], "member_id": member_id,
    }


def offline(terminal: Terminal, event_type: str, data: dict[str, Any],
            at: datetime | None = None) -> dict[str, str]:
    return terminal.sign(event_type, data, at or datetime.now(UTC))
