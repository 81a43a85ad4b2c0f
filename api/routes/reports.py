"""Reports for the back office: sales, members, campaigns, stored value, the dashboard.

Every report reads the projections (`projections/reports.py`), after folding
what the log holds beyond them, so an answer includes the writes that were
acknowledged before the request. JSON by default; `?format=csv` for a CSV whose
first row is the header.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from api.auth import REPORTS_READ, Principal, allow
from api.deps import LedgerDep
from api.routes.stores import StoreId
from pos_ledger.errors import InvalidInput
from projections import reports
from projections.db import Sql
from projections.service import ProjectionService

router = APIRouter(prefix="/v1/stores", tags=["reports"])



class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


_PROBLEM = {"application/problem+json": {"schema": Problem.model_json_schema()}}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No credential, or not a valid one", "content": _PROBLEM},
    403: {"description": "The credential lacks reports:read or is for another store", "content": _PROBLEM},
    404: {"description": "No such store", "content": _PROBLEM},
    422: {"description": "Bad input: unknown group_by or format, malformed or reversed dates, "
                         "a range over 366 days", "content": _PROBLEM},
}
From = Annotated[str | None, Query(alias="from", description="First store-local day, YYYY-MM-DD "
                                   "(default: 29 days before `to`)")]
To = Annotated[str | None, Query(alias="to", description="Last store-local day, inclusive, YYYY-MM-DD (default: today)")]
Format = Annotated[str, Query(alias="format", description="json (default) or csv")]
Reader = Annotated[Principal, allow(REPORTS_READ)]


class SalesRow(BaseModel):
    key: str
    orders: int
    items: int
    gross_minor: int
    discount_minor: int
    net_minor: int


class SalesTotals(BaseModel):
    orders: int
    items: int
    gross_minor: int
    discount_minor: int
    net_minor: int
    refunds_minor: int


class SalesReport(BaseModel):
    as_of_position: int
    rows: list[SalesRow]
    totals: SalesTotals


class MembersReport(BaseModel):
    as_of_position: int
    active_members: int
    new_members: int
    returning_members: int
    repurchase_rate: float
    segments: dict[str, int]
    tiers: dict[str, int]


class CampaignRow(BaseModel):
    campaign_id: str
    name: str
    kind: str
    issued: int
    redeemed: int
    redemption_rate: float
    discount_minor: int
    revenue_minor: int


class CampaignsReport(BaseModel):
    as_of_position: int
    campaigns: list[CampaignRow]


class StoredValueReport(BaseModel):
    as_of_position: int
    outstanding_principal_minor: int
    outstanding_bonus_minor: int
    outstanding_minor: int
    recharged_minor: int
    bonus_granted_minor: int
    spent_minor: int
    refunded_minor: int
    recharge_refunded_minor: int
    bonus_voided_minor: int


def service_of(request: Request) -> ProjectionService:
    service: ProjectionService = request.app.state.projections
    return service


def _today(ledger: Any, store_id: str) -> date:
    """The store's local date now (also checks the store exists: 404 otherwise)."""
    return datetime.now(ZoneInfo(ledger.store(store_id).timezone)).date()


def _check_format(output: str) -> None:
    if output not in ("json", "csv"):
        raise InvalidInput(f"format must be json or csv, got {output!r}")


def _read(request: Request, store_id: str, query: Callable[[Sql], dict[str, Any]]) -> dict[str, Any]:
    service = service_of(request)
    service.catch_up(store_id)
    with service.db.read() as sql:
        return query(sql)


def csv_response(header: list[str], rows: list[list[Any]], as_of_position: int) -> Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return Response(buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"X-As-Of-Position": str(as_of_position)})


def _metrics_csv(report: dict[str, Any]) -> Response:
    """A flat report as `metric,value` rows (nested counts as `segments.<name>`)."""
    rows: list[list[Any]] = []
    for name, value in report.items():
        if isinstance(value, dict):
            rows += [[f"{name}.{k}", v] for k, v in value.items()]
        else:
            rows.append([name, value])
    return csv_response(["metric", "value"], rows, int(report["as_of_position"]))


@router.get("/{store_id}/reports/sales", response_model=SalesReport, responses=PROBLEM_RESPONSES)
def sales_report(store_id: StoreId, request: Request, ledger: LedgerDep, _: Reader,
                 start: From = None, end: To = None, group_by: str = "day", output: Format = "json") -> Any:
    """Sales of `sale.completed` events by store-local day of their `at`.

    Row keys by `group_by`: `day` (YYYY-MM-DD), `hour` (`00`..`23`), `item` (sku),
    `category` (the sku's menu category at the time of the sale), `method` (tender
    method), `terminal`, `channel`; rows in key order. gross = sum of qty x
    unit_price_minor; discount = the sale's discount; net = gross - discount; orders =
    sales; items = sum of qty. `method` rows: net is that method's tendered amount
    less change and a two-tender sale counts once in each method's orders (items,
    gross and discount are those of the sales that used the method). `item` and
    `category` rows leave discount at 0 (the totals carry it). `totals.refunds_minor`
    is the money refunded in the window by refund date (`refund.issued` and
    `stored_value.refunded`).
    """
    today = _today(ledger, store_id)
    first, last = reports.window(start, end, today)
    _check_format(output)
    if group_by not in reports.GROUP_BY:
        raise InvalidInput(f"group_by must be one of {', '.join(reports.GROUP_BY)}; got {group_by!r}")
    report = _read(request, store_id, lambda sql: reports.sales(sql, store_id, first, last, group_by))
    if output == "csv":
        return csv_response(list(reports.SALES_COLUMNS),
                            [[row[c] for c in reports.SALES_COLUMNS] for row in report["rows"]],
                            report["as_of_position"])
    return report


@router.get("/{store_id}/reports/members", response_model=MembersReport, responses=PROBLEM_RESPONSES,
            description="Members who bought in the window (a sale with `member_id`).\n\n"
            "active = members with at least one sale in the window; new = active members whose first sale "
            "ever is in the window; returning = active - new; repurchase_rate = members with two or more "
            "sales in the window / active, rounded to 4 places (0 when none).\n\n" + reports.RFM_DESCRIPTION)
def members_report(store_id: StoreId, request: Request, ledger: LedgerDep, _: Reader,
                   start: From = None, end: To = None, output: Format = "json") -> Any:
    first, last = reports.window(start, end, _today(ledger, store_id))
    _check_format(output)
    report = _read(request, store_id, lambda sql: reports.members(sql, store_id, first, last))
    return _metrics_csv(report) if output == "csv" else report


@router.get("/{store_id}/reports/campaigns", response_model=CampaignsReport, responses=PROBLEM_RESPONSES)
def campaigns_report(store_id: StoreId, request: Request, ledger: LedgerDep, _: Reader,
                     output: Format = "json") -> Any:
    """Per campaign: coupons issued, redeemed (the valid redemptions; one that broke a rule is a
    conflict, not a redemption), redemption_rate = redeemed / issued rounded to 4 places,
    discount_minor given by those redemptions, and revenue_minor: the net of the sales whose
    order_id is a redemption's order_ref (each order once per campaign)."""
    _today(ledger, store_id)
    _check_format(output)
    report = _read(request, store_id, lambda sql: reports.campaigns(sql, store_id))
    if output == "csv":
        columns = list(CampaignRow.model_fields)
        return csv_response(columns, [[row[c] for c in columns] for row in report["campaigns"]],
                            report["as_of_position"])
    return report


@router.get("/{store_id}/reports/stored-value", response_model=StoredValueReport, responses=PROBLEM_RESPONSES)
def stored_value_report(store_id: StoreId, request: Request, ledger: LedgerDep, _: Reader,
                        start: From = None, end: To = None, output: Format = "json") -> Any:
    """Members' stored value. outstanding_principal_minor and outstanding_bonus_minor are the balances
    now (at as_of_position) of all `liability:stored_value:*:principal` / `:bonus` accounts: they equal
    the ledger's balances. In the window, by store-local day: recharged_minor (principal paid in),
    bonus_granted_minor, spent_minor, refunded_minor (order refunds given back to balances),
    recharge_refunded_minor (principal paid back out by recharge refunds) and bonus_voided_minor."""
    first, last = reports.window(start, end, _today(ledger, store_id))
    _check_format(output)
    report = _read(request, store_id, lambda sql: reports.stored_value(sql, store_id, first, last))
    return _metrics_csv(report) if output == "csv" else report


@router.get("/{store_id}/reports/dashboard", responses=PROBLEM_RESPONSES)
def dashboard(store_id: StoreId, request: Request, ledger: LedgerDep, _: Reader,
              day: Annotated[str | None, Query(alias="date", description="Store-local day (default today)")] = None,
              ) -> dict[str, Any]:
    """The dashboard in one call: the day's totals (net, orders, average ticket), the same weekday a
    week before, net and orders per hour (24 rows), the tender method mix and the top items by gross."""
    today = _today(ledger, store_id)
    chosen = reports.parse_day(day, "date") or today
    return _read(request, store_id, lambda sql: reports.dashboard(sql, store_id, chosen))
