"""The back office's reports: queries over the read models, never a fold of the log.

Every answer carries `as_of_position`, the chain position of the projection it
read, taken in the same snapshot as its rows. Dates are store-local
`YYYY-MM-DD`, `from` and `to` inclusive, at most `WINDOW_DAYS_MAX` days.
Amounts are integer minor units of the store's currency.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any, Final

from pos_ledger.errors import InvalidInput
from projections.db import Sql

WINDOW_DAYS_MAX: Final = 366
GROUP_BY: Final = ("day", "hour", "item", "category", "method", "terminal", "channel")
TOP_ITEMS_MAX: Final = 10
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SALES_COLUMNS: Final = ("key", "orders", "items", "gross_minor", "discount_minor", "net_minor")

#: RFM scores (1-5) of a member active in the window, as of its last day (`to`).
RECENCY_DAYS: Final = (7, 14, 30, 60)  # days since the last purchase: <=7 -> 5, <=14 -> 4, ... >60 -> 1
FREQUENCY_ORDERS: Final = (2, 3, 5, 10)  # orders in the window: 1 -> 1, 2 -> 2, 3-4 -> 3, 5-9 -> 4, >=10 -> 5
MONETARY_MINOR: Final = (5_000, 20_000, 50_000, 100_000)  # net spent: <50.00 -> 1 ... >=1000.00 -> 5
SEGMENTS: Final = ("champions", "loyal", "potential_loyalists", "new_customers", "at_risk",
                   "hibernating", "need_attention")
RFM_DESCRIPTION: Final = """\
Segments ("user portraits") score each member active in the window on recency, frequency and
monetary value, 1 (low) to 5 (high), as of the window's last day (`to`):

* R (days since the member's last purchase in the window): <=7 -> 5, <=14 -> 4, <=30 -> 3, <=60 -> 2, else 1
* F (orders in the window): >=10 -> 5, >=5 -> 4, >=3 -> 3, 2 -> 2, 1 -> 1
* M (net spent in the window, minor units): >=100000 -> 5, >=50000 -> 4, >=20000 -> 3, >=5000 -> 2, else 1

Then the first rule that matches names the segment:

1. `champions`: R >= 4 and F >= 4 and M >= 4
2. `loyal`: R >= 3 and F >= 4
3. `potential_loyalists`: R >= 4 and F in 2..3
4. `new_customers`: R >= 4 and F = 1
5. `at_risk`: R <= 2 and F >= 3
6. `hibernating`: R <= 2 and F <= 2
7. `need_attention`: everything else

Every segment name is always present (0 when empty). `tiers` counts every registered member by
current tier (not only the active ones).
"""


def parse_day(text: str | None, name: str) -> date | None:
    if text is None:
        return None
    if not _DATE.match(text):
        raise InvalidInput(f"{name} must be a date YYYY-MM-DD, got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{name} is not a calendar date: {text!r}") from None


def window(start_text: str | None, end_text: str | None, today: date) -> tuple[date, date]:
    """(from, to) from the query; `to` defaults to today, `from` to 29 days before `to`."""
    end = parse_day(end_text, "to") or today
    start = parse_day(start_text, "from") or end - timedelta(days=29)
    if start > end:
        raise InvalidInput(f"from {start} is after to {end}")
    if (end - start).days + 1 > WINDOW_DAYS_MAX:
        raise InvalidInput(f"a report covers at most {WINDOW_DAYS_MAX} days, not {(end - start).days + 1}")
    return start, end


def position_of(sql: Sql, store_id: str, projection: str) -> int:
    row = sql.execute("SELECT position FROM rm_positions WHERE store_id = ? AND name = ?",
                      (store_id, projection)).fetchone()
    return 0 if row is None else int(row[0])


def _ints(row: tuple[Any, ...] | None, count: int) -> list[int]:
    if row is None:
        return [0] * count
    return [int(v or 0) for v in row]


# ---- sales ----

_HOURLY_KEYS: Final = {"day": "day", "hour": "hour", "terminal": "terminal_id", "channel": "channel"}


def _sales_rows(sql: Sql, store_id: str, start: str, end: str, group_by: str) -> list[dict[str, Any]]:
    where = "WHERE store_id = ? AND day BETWEEN ? AND ?"
    params = (store_id, start, end)
    if group_by in _HOURLY_KEYS:
        column = _HOURLY_KEYS[group_by]
        statement = (f"SELECT {column}, SUM(orders), SUM(items), SUM(gross_minor), SUM(discount_minor), "
                     f"SUM(net_minor) FROM rm_sales_hourly {where} GROUP BY {column} ORDER BY {column}")
    elif group_by == "method":
        statement = ("SELECT method, SUM(orders), SUM(items), SUM(gross_minor), SUM(discount_minor), "
                     f"SUM(net_minor) FROM rm_sales_methods {where} GROUP BY method ORDER BY method")
    else:
        table, column = ("rm_sales_items", "sku") if group_by == "item" else ("rm_sales_categories", "category")
        statement = (f"SELECT {column}, SUM(orders), SUM(items), SUM(gross_minor), 0, SUM(gross_minor) "
                     f"FROM {table} {where} GROUP BY {column} ORDER BY {column}")
    rows = []
    for key, *sums in sql.execute(statement, params).fetchall():
        orders, items, gross, discount, net = (int(v or 0) for v in sums)
        rows.append({"key": f"{int(key):02d}" if group_by == "hour" else str(key), "orders": orders,
                     "items": items, "gross_minor": gross, "discount_minor": discount, "net_minor": net})
    return rows


def sales(sql: Sql, store_id: str, start: date, end: date, group_by: str) -> dict[str, Any]:
    if group_by not in GROUP_BY:
        raise InvalidInput(f"group_by must be one of {', '.join(GROUP_BY)}; got {group_by!r}")
    as_of = position_of(sql, store_id, "sales")
    first, last = start.isoformat(), end.isoformat()
    rows = _sales_rows(sql, store_id, first, last, group_by)
    orders, items, gross, discount, net = _ints(sql.execute(
        "SELECT SUM(orders), SUM(items), SUM(gross_minor), SUM(discount_minor), SUM(net_minor) "
        "FROM rm_sales_hourly WHERE store_id = ? AND day BETWEEN ? AND ?", (store_id, first, last)).fetchone(), 5)
    refunds = _ints(sql.execute("SELECT SUM(refunds_minor) FROM rm_sales_refunds "
                                "WHERE store_id = ? AND day BETWEEN ? AND ?", (store_id, first, last)).fetchone(), 1)[0]
    totals = {"orders": orders, "items": items, "gross_minor": gross, "discount_minor": discount,
              "net_minor": net, "refunds_minor": refunds}
    return {"as_of_position": as_of, "rows": rows, "totals": totals}


# ---- members ----


def _score(value: int, thresholds: tuple[int, ...]) -> int:
    """1 + the number of thresholds reached (value >= threshold)."""
    return 1 + sum(1 for t in thresholds if value >= t)


def rfm(recency_days: int, orders: int, net_minor: int) -> tuple[int, int, int]:
    recency = 5 - sum(1 for t in RECENCY_DAYS if recency_days > t)
    return recency, _score(orders, FREQUENCY_ORDERS), _score(net_minor, MONETARY_MINOR)


def segment(recency: int, frequency: int, monetary: int) -> str:
    if recency >= 4 and frequency >= 4 and monetary >= 4:
        return "champions"
    if recency >= 3 and frequency >= 4:
        return "loyal"
    if recency >= 4 and frequency in (2, 3):
        return "potential_loyalists"
    if recency >= 4 and frequency == 1:
        return "new_customers"
    if recency <= 2 and frequency >= 3:
        return "at_risk"
    if recency <= 2 and frequency <= 2:
        return "hibernating"
    return "need_attention"


def round_ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator rounded half-even to 4 places (0 when the denominator is 0)."""
    if denominator == 0:
        return 0.0
    quotient, remainder = divmod(numerator * 10_000, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient / 10_000


def members(sql: Sql, store_id: str, start: date, end: date) -> dict[str, Any]:
    as_of = position_of(sql, store_id, "members")
    rows = sql.execute(
        "SELECT d.member_id, SUM(d.orders), SUM(d.net_minor), MAX(d.day), m.first_day "
        "FROM rm_member_days d JOIN rm_members m ON m.store_id = d.store_id AND m.member_id = d.member_id "
        "WHERE d.store_id = ? AND d.day BETWEEN ? AND ? GROUP BY d.member_id, m.first_day",
        (store_id, start.isoformat(), end.isoformat())).fetchall()
    segments = dict.fromkeys(SEGMENTS, 0)
    new = repeat = 0
    for _member, orders, net, last_day, first_day in rows:
        if first_day is not None and str(first_day) >= start.isoformat():
            new += 1
        if int(orders) >= 2:
            repeat += 1
        recency_days = (end - date.fromisoformat(str(last_day))).days
        segments[segment(*rfm(recency_days, int(orders), int(net)))] += 1
    tiers = {str(tier): int(count) for tier, count in sql.execute(
        "SELECT tier, COUNT(*) FROM rm_members WHERE store_id = ? AND registered = 1 GROUP BY tier ORDER BY tier",
        (store_id,)).fetchall()}
    active = len(rows)
    return {"as_of_position": as_of, "active_members": active, "new_members": new,
            "returning_members": active - new, "repurchase_rate": round_ratio(repeat, active),
            "segments": segments, "tiers": tiers}


# ---- campaigns ----


def campaigns(sql: Sql, store_id: str) -> dict[str, Any]:
    as_of = position_of(sql, store_id, "campaigns")
    revenue = {str(c): int(v or 0) for c, v in sql.execute(
        "SELECT r.campaign_id, SUM(o.net_minor) FROM rm_campaign_redeemed_orders r JOIN rm_campaign_orders o "
        "ON o.store_id = r.store_id AND o.order_ref = r.order_ref WHERE r.store_id = ? GROUP BY r.campaign_id",
        (store_id,)).fetchall()}
    rows = []
    for campaign_id, name, kind, issued, redeemed, discount in sql.execute(
            "SELECT campaign_id, name, kind, issued, redeemed, discount_minor FROM rm_campaigns "
            "WHERE store_id = ? ORDER BY campaign_id", (store_id,)).fetchall():
        rows.append({"campaign_id": str(campaign_id), "name": str(name), "kind": str(kind),
                     "issued": int(issued), "redeemed": int(redeemed),
                     "redemption_rate": round_ratio(int(redeemed), int(issued)),
                     "discount_minor": int(discount), "revenue_minor": revenue.get(str(campaign_id), 0)})
    return {"as_of_position": as_of, "campaigns": rows}


# ---- stored value ----


def stored_value(sql: Sql, store_id: str, start: date, end: date) -> dict[str, Any]:
    as_of = position_of(sql, store_id, "stored_value")
    principal, bonus = _ints(sql.execute(
        "SELECT principal_minor, bonus_minor FROM rm_stored_value_outstanding WHERE store_id = ?",
        (store_id,)).fetchone(), 2)
    flows = _ints(sql.execute(
        "SELECT SUM(recharged_minor), SUM(bonus_granted_minor), SUM(spent_minor), SUM(refunded_minor), "
        "SUM(recharge_refunded_minor), SUM(bonus_voided_minor) FROM rm_stored_value_days "
        "WHERE store_id = ? AND day BETWEEN ? AND ?", (store_id, start.isoformat(), end.isoformat())).fetchone(), 6)
    names = ("recharged_minor", "bonus_granted_minor", "spent_minor", "refunded_minor",
             "recharge_refunded_minor", "bonus_voided_minor")
    return {"as_of_position": as_of, "outstanding_principal_minor": principal, "outstanding_bonus_minor": bonus,
            "outstanding_minor": principal + bonus, **dict(zip(names, flows, strict=True))}


# ---- dashboard ----


def _half_even_div(numerator: int, denominator: int) -> int:
    if denominator == 0:
        return 0
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def _day_totals(sql: Sql, store_id: str, day: date) -> dict[str, Any]:
    orders, items, gross, discount, net = _ints(sql.execute(
        "SELECT SUM(orders), SUM(items), SUM(gross_minor), SUM(discount_minor), SUM(net_minor) "
        "FROM rm_sales_hourly WHERE store_id = ? AND day = ?", (store_id, day.isoformat())).fetchone(), 5)
    return {"date": day.isoformat(), "orders": orders, "items": items, "gross_minor": gross,
            "discount_minor": discount, "net_minor": net,
            "average_ticket_minor": _half_even_div(net, orders)}


def dashboard(sql: Sql, store_id: str, day: date) -> dict[str, Any]:
    as_of = position_of(sql, store_id, "sales")
    text = day.isoformat()
    hours = {int(h): (int(o or 0), int(n or 0)) for h, o, n in sql.execute(
        "SELECT hour, SUM(orders), SUM(net_minor) FROM rm_sales_hourly WHERE store_id = ? AND day = ? "
        "GROUP BY hour", (store_id, text)).fetchall()}
    methods = [{"method": str(m), "orders": int(o or 0), "net_minor": int(n or 0)} for m, o, n in sql.execute(
        "SELECT method, orders, net_minor FROM rm_sales_methods WHERE store_id = ? AND day = ? "
        "ORDER BY net_minor DESC, method", (store_id, text)).fetchall()]
    top = [{"sku": str(s), "name": str(name if name is not None else s), "orders": int(o), "items": int(i),
            "gross_minor": int(g)} for s, name, o, i, g in sql.execute(
        "SELECT i.sku, m.name, i.orders, i.items, i.gross_minor FROM rm_sales_items i "
        "LEFT JOIN rm_sales_menu m ON m.store_id = i.store_id AND m.sku = i.sku "
        "WHERE i.store_id = ? AND i.day = ? ORDER BY i.gross_minor DESC, i.sku LIMIT ?",
        (store_id, text, TOP_ITEMS_MAX)).fetchall()]
    refunds = _ints(sql.execute("SELECT refunds_minor FROM rm_sales_refunds WHERE store_id = ? AND day = ?",
                                (store_id, text)).fetchone(), 1)[0]
    return {
        "as_of_position": as_of,
        "date": text,
        "today": {**_day_totals(sql, store_id, day), "refunds_minor": refunds},
        "same_weekday_last_week": _day_totals(sql, store_id, day - timedelta(days=7)),
        "by_hour": [{"hour": f"{h:02d}", "orders": hours.get(h, (0, 0))[0], "net_minor": hours.get(h, (0, 0))[1]}
                    for h in range(24)],
        "method_mix": methods,
        "top_items": top,
    }
