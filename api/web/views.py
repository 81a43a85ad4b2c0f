"""The back-office pages. Each is `@page(slug, label, capability)` + a view + `templates/<slug>.html`."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from api.auth import COUPONS_READ, EVENTS_READ, MEMBERS_READ, REPORTS_READ, STORE_READ
from api.web.pages import PageContext, format_money, page

SHIFT_ID: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
GROUP_BYS: Final = ("day", "hour", "item", "category", "method", "terminal", "channel")
#: The members page's default window (the issue's contract: the last 30 days, today included).
MEMBERS_WINDOW_DAYS: Final = 30
TREND_BUCKETS_MAX: Final = 8
STORED_VALUE_LABELS: Final = {
    "outstanding_principal_minor": "Outstanding principal", "outstanding_bonus_minor": "Outstanding bonus",
    "recharged_minor": "Recharged", "bonus_granted_minor": "Bonus granted", "spent_minor": "Spent",
    "refunded_minor": "Refunded", "outstanding_minor": "Outstanding (total)",
    "recharge_refunded_minor": "Recharges refunded", "bonus_voided_minor": "Bonus voided",
}
#: The campaigns report's columns (api/routes/reports.py CampaignRow), labelled for the owner.
CAMPAIGN_RESULT_LABELS: Final = {
    "campaign_id": "Campaign id", "name": "Name", "kind": "Kind", "issued": "Issued", "redeemed": "Redeemed",
    "redemption_rate": "Redemption rate", "discount_minor": "Discount", "revenue_minor": "Revenue",
}
TOP_ITEMS: Final = 10


def today(ctx: PageContext) -> date:
    try:
        zone = ZoneInfo(str(ctx.store.get("timezone") or "UTC"))
    except Exception:
        zone = ZoneInfo("UTC")
    return datetime.now(zone).date()


def query_date(ctx: PageContext, name: str, default: date) -> date:
    raw = ctx.request.query_params.get(name, "")
    try:
        return date.fromisoformat(raw) if raw else default
    except ValueError:
        return default


def window(ctx: PageContext, days: int) -> tuple[date, date]:
    end = query_date(ctx, "to", today(ctx))
    start = query_date(ctx, "from", end - timedelta(days=days - 1))
    return start, end


def major(ctx: PageContext, amount_minor: int | None) -> str:
    """A chart value: the exact decimal text of a minor amount (ECharts reads numeric strings)."""
    return format_money(amount_minor or 0, ctx.currency)


def change(now: int, before: int) -> str:
    """'+12.5%' / '-3.0%' / '' (no base); exact integer arithmetic, one decimal."""
    if before <= 0:
        return ""
    tenths = (abs(now - before) * 1000 + before // 2) // before
    sign = "+" if now >= before else "-"
    return f"{sign}{tenths // 10}.{tenths % 10}%"


def sales_path(ctx: PageContext) -> str:
    return f"/v1/stores/{ctx.store_id}/reports/sales"


async def sales(ctx: PageContext, start: date, end: date, group_by: str) -> Any:
    return await ctx.api(sales_path(ctx), **{"from": start.isoformat(), "to": end.isoformat(),
                                             "group_by": group_by})


def totals(report: Any) -> dict[str, int]:
    found = report.get("totals", {}) if isinstance(report, dict) else {}
    return {k: int(found.get(k, 0) or 0) for k in ("orders", "items", "gross_minor", "discount_minor",
                                                      "net_minor", "refunds_minor")}


def rows(report: Any) -> list[dict[str, Any]]:
    return list(report.get("rows", [])) if isinstance(report, dict) else []


def day_totals(report: Any, key: str) -> dict[str, int]:
    found = report.get(key, {}) if isinstance(report, dict) else {}
    return {k: int(found.get(k, 0) or 0) for k in ("orders", "items", "net_minor", "average_ticket_minor")}


@page("dashboard", "Dashboard", REPORTS_READ)
async def dashboard(ctx: PageContext) -> dict[str, Any]:
    day = query_date(ctx, "date", today(ctx))
    path = f"/v1/stores/{ctx.store_id}/reports/dashboard"
    # The same weekday last week is in the day's answer; its hours need that day's answer too.
    report, last_report = await asyncio.gather(ctx.api(path, date=day.isoformat()),
                                               ctx.api(path, date=(day - timedelta(days=7)).isoformat()))
    now, before = day_totals(report, "today"), day_totals(report, "same_weekday_last_week")
    hours = [f"{h:02d}" for h in range(24)]
    by_hour = {str(r["hour"]): r.get("net_minor", 0) for r in (report or {}).get("by_hour", [])}
    last_by_hour = {str(r["hour"]): r.get("net_minor", 0) for r in (last_report or {}).get("by_hour", [])}
    methods = (report or {}).get("method_mix", [])
    return {
        "day": day, "available": report is not None,
        "net_minor": now["net_minor"], "orders": now["orders"], "average_minor": now["average_ticket_minor"],
        "last_net_minor": before["net_minor"], "last_orders": before["orders"],
        "last_average_minor": before["average_ticket_minor"],
        "net_change": change(now["net_minor"], before["net_minor"]),
        "orders_change": change(now["orders"], before["orders"]),
        "average_change": change(now["average_ticket_minor"], before["average_ticket_minor"]),
        "top_items": (report or {}).get("top_items", [])[:TOP_ITEMS],
        "hour_chart": {
            "tooltip": {"trigger": "axis"}, "legend": {"data": [ctx.t("Today"), ctx.t("Last week")]},
            "xAxis": {"type": "category", "data": hours}, "yAxis": {"type": "value"},
            "series": [
                {"name": ctx.t("Today"), "type": "bar", "data": [major(ctx, by_hour.get(h)) for h in hours]},
                {"name": ctx.t("Last week"), "type": "line", "data": [major(ctx, last_by_hour.get(h)) for h in hours]},
            ],
        },
        "method_chart": {
            "tooltip": {"trigger": "item"},
            "series": [{"type": "pie", "radius": ["40%", "70%"],
                        "data": [{"name": str(m["method"]), "value": major(ctx, m.get("net_minor"))}
                                 for m in methods]}],
        },
    }


@page("sales", "Sales", REPORTS_READ)
async def sales_report(ctx: PageContext) -> dict[str, Any]:
    start, end = window(ctx, 7)
    group_by = ctx.request.query_params.get("group_by", "day")
    group_by = group_by if group_by in GROUP_BYS else "day"
    status, report = await ctx.api_status(sales_path(ctx), **{"from": start.isoformat(), "to": end.isoformat(),
                                                              "group_by": group_by})
    error = "" if status == 200 else (report or {}).get("detail", "") if isinstance(report, dict) else ""
    found = report if status == 200 else None
    keys = [str(r["key"]) for r in rows(found)]
    return {
        "start": start, "end": end, "group_by": group_by, "group_bys": GROUP_BYS, "report": found,
        "error": error or ("" if found is not None else ctx.t("Report not available yet")),
        "rows": rows(found), "totals": totals(found),
        "csv_url": f"{sales_path(ctx)}?from={start.isoformat()}&to={end.isoformat()}&group_by={group_by}&format=csv",
        "chart": {"tooltip": {"trigger": "axis"}, "xAxis": {"type": "category", "data": keys},
                  "yAxis": {"type": "value"},
                  "series": [{"name": ctx.t("Net"), "type": "bar",
                              "data": [major(ctx, r.get("net_minor")) for r in rows(found)]}]},
    }


def buckets(start: date, end: date) -> list[tuple[date, date]]:
    days = (end - start).days + 1
    size = max(7, -(-days // TREND_BUCKETS_MAX))
    found = []
    cursor = start
    while cursor <= end:
        found.append((cursor, min(end, cursor + timedelta(days=size - 1))))
        cursor += timedelta(days=size)
    return found


@page("members", "Members", REPORTS_READ)
async def members(ctx: PageContext) -> dict[str, Any]:
    start, end = window(ctx, MEMBERS_WINDOW_DAYS)
    path = f"/v1/stores/{ctx.store_id}/reports/members"
    status, report = await ctx.api_status(path, **{"from": start.isoformat(), "to": end.isoformat()})
    found = report if status == 200 and isinstance(report, dict) else None
    periods = buckets(start, end) if found is not None and start <= end else []
    trend = await asyncio.gather(*[ctx.api(path, **{"from": a.isoformat(), "to": b.isoformat()})
                                   for a, b in periods])
    labels = [a.isoformat() for a, _ in periods]
    segments = dict((found or {}).get("segments", {}))
    tiers = dict((found or {}).get("tiers", {}))
    return {
        "start": start, "end": end, "report": found,
        "error": "" if found is not None else (report or {}).get("detail", ctx.t("Report not available yet"))
        if isinstance(report, dict) else ctx.t("Report not available yet"),
        "segments": segments, "tiers": tiers,
        "trend_chart": {
            "tooltip": {"trigger": "axis"}, "legend": {"data": [ctx.t("New members"), ctx.t("Returning members")]},
            "xAxis": {"type": "category", "data": labels}, "yAxis": {"type": "value", "minInterval": 1},
            "series": [
                {"name": ctx.t("New members"), "type": "bar", "stack": "m",
                 "data": [(r or {}).get("new_members", 0) for r in trend]},
                {"name": ctx.t("Returning members"), "type": "bar", "stack": "m",
                 "data": [(r or {}).get("returning_members", 0) for r in trend]},
            ],
        },
        "segment_chart": {"tooltip": {"trigger": "item"},
                          "series": [{"type": "pie", "radius": "65%",
                                      "data": [{"name": k, "value": v} for k, v in segments.items()]}]},
        "tier_chart": {"tooltip": {"trigger": "axis"}, "xAxis": {"type": "category", "data": list(tiers)},
                       "yAxis": {"type": "value", "minInterval": 1},
                       "series": [{"type": "bar", "data": list(tiers.values())}]},
    }


@page("menu", "Menu", STORE_READ)
async def menu(ctx: PageContext) -> dict[str, Any]:
    items = await ctx.api(f"/v1/stores/{ctx.store_id}/menu") or []
    categories: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        categories.setdefault(item.get("category", ""), []).append(item)
    return {"categories": categories, "can_edit": ctx.principal.may("store:manage"),
            "exponent": exponent(ctx)}


def exponent(ctx: PageContext) -> int:
    from pos_ledger import money

    try:
        return money.currency(ctx.currency).exponent
    except Exception:
        return 2


@page("program", "Member program", MEMBERS_READ)
async def program(ctx: PageContext) -> dict[str, Any]:
    found = await ctx.api(f"/v1/stores/{ctx.store_id}/member-program") or {}
    rules = list(found.get("recharge_rules", []))
    tiers = list(found.get("tiers", []))
    return {"program": found, "rules": rules + [{}] * 2, "tiers": tiers + [{}] * 2,
            "can_edit": ctx.principal.may("store:manage"), "exponent": exponent(ctx)}


@page("campaigns", "Campaigns", COUPONS_READ)
async def campaigns(ctx: PageContext) -> dict[str, Any]:
    found, results = await asyncio.gather(
        ctx.api(f"/v1/stores/{ctx.store_id}/campaigns"),
        ctx.api(f"/v1/stores/{ctx.store_id}/reports/campaigns") if ctx.principal.may(REPORTS_READ)
        else asyncio.sleep(0, None))
    result_rows = results.get("campaigns", results.get("rows", [])) if isinstance(results, dict) else results
    moment = today(ctx)
    return {"campaigns": found or [], "results": result_rows or [], "results_available": results is not None,
            "result_labels": CAMPAIGN_RESULT_LABELS,
            "can_edit": ctx.principal.may("store:manage"), "exponent": exponent(ctx),
            "default_from": moment.isoformat(), "default_until": (moment + timedelta(days=30)).isoformat(),
            "store_offset": store_offset(ctx)}


def store_offset(ctx: PageContext) -> str:
    """The store's UTC offset now ('+08:00'): a campaign's dates start at the store's midnight."""
    try:
        zone = ZoneInfo(str(ctx.store.get("timezone") or "UTC"))
    except Exception:
        zone = ZoneInfo("UTC")
    raw = datetime.now(zone).strftime("%z") or "+0000"
    return f"{raw[:3]}:{raw[3:]}"


@page("stored-value", "Stored value", REPORTS_READ)
async def stored_value(ctx: PageContext) -> dict[str, Any]:
    start, end = window(ctx, MEMBERS_WINDOW_DAYS)
    status, report = await ctx.api_status(f"/v1/stores/{ctx.store_id}/reports/stored-value",
                                          **{"from": start.isoformat(), "to": end.isoformat()})
    found = report if status == 200 and isinstance(report, dict) else None
    return {"start": start, "end": end, "report": found, "labels": STORED_VALUE_LABELS,
            "error": "" if found is not None else ctx.t("Report not available yet"),
            "figures": [(k, v) for k, v in (found or {}).items() if k.endswith("_minor")]}


@page("conflicts", "Conflicts", REPORTS_READ)
async def conflicts(ctx: PageContext) -> dict[str, Any]:
    include = ctx.request.query_params.get("include_resolved") == "true"
    found = await ctx.api(f"/v1/stores/{ctx.store_id}/conflicts",
                          include_resolved="true" if include else "false")
    return {"conflicts": found or [], "include_resolved": include,
            "can_edit": ctx.principal.may("store:manage")}


@page("shifts", "Shifts", REPORTS_READ)
async def shifts(ctx: PageContext) -> dict[str, Any]:
    day = query_date(ctx, "day", today(ctx))
    shift_id = ctx.request.query_params.get("shift", "")
    shift_id = shift_id if SHIFT_ID.match(shift_id) else ""
    report = await ctx.api(f"/v1/stores/{ctx.store_id}/z-report", day=day.isoformat())
    shift = await ctx.api(f"/v1/stores/{ctx.store_id}/shifts/{shift_id}/x-report") if shift_id else None
    return {"day": day, "report": report or {}, "shift_id": shift_id, "shift": shift}


@page("projections", "Projections", REPORTS_READ)
async def projections(ctx: PageContext) -> dict[str, Any]:
    found = await ctx.api(f"/v1/stores/{ctx.store_id}/projections")
    return {"projections": found if isinstance(found, list) else [], "available": found is not None}


#: Entries the audit page shows (the newest); the whole log is `pos-ledger audit` / the events API.
AUDIT_ENTRIES: Final = 50


@page("audit", "Audit trail", EVENTS_READ)
async def audit(ctx: PageContext) -> dict[str, Any]:
    chain = await ctx.api(f"/v1/stores/{ctx.store_id}/chain") or {"head": "", "length": 0}
    after = max(0, int(chain["length"]) - AUDIT_ENTRIES)
    entries = await ctx.api(f"/v1/stores/{ctx.store_id}/events", after=after, limit=AUDIT_ENTRIES) or []
    shown = []
    for entry in reversed(entries):
        try:
            body = json.loads(entry["body"])
        except ValueError:
            body = {}
        shown.append({"position": entry["position"], "terminal_id": entry["terminal_id"],
                      "type": body.get("type", "?"), "at": str(body.get("at", ""))[:19].replace("T", " "), "hash": entry["hash"],
                      "data": json.dumps(body.get("data", {}), ensure_ascii=False)[:160]})
    return {"chain": chain, "entries": shown}
