"""`sale.completed`: a terminal sold from its basket and took the money."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from pos_ledger.events import (
    Amount,
    CurrencyCode,
    EntryMeta,
    EventRejected,
    EventType,
    PositiveCount,
    Posting,
    ShortText,
    register,
    require_currency,
)
from pos_ledger.state import StoreState

LINES_MAX = 500
TENDERS_MAX = 20
TenderMethod = Literal["cash", "wechat", "alipay", "unionpay", "card", "member_balance"]

#: Debit account per tender method; cash is per terminal (each drawer is counted alone).
TENDER_ACCOUNTS: dict[str, str] = {
    "wechat": "asset:psp:wechat",
    "alipay": "asset:psp:alipay",
    "unionpay": "asset:psp:unionpay",
    "card": "asset:card:acquirer",
    # Settled by the stored_value.spent that the members module appends right after the sale.
    "member_balance": "clearing:stored_value",
}
REVENUE_ACCOUNT = "revenue:sales"
#: Money a captured payment brought in before a sale applied it (pos_ledger.catalog.payments).
UNAPPLIED_PAYMENTS_ACCOUNT = "liability:unapplied_payments"
DISCOUNT_ACCOUNT = "contra:discount:manual"


def cash_account(terminal_id: str) -> str:
    return f"asset:cash:{terminal_id}"


class SaleLine(msgspec.Struct, frozen=True):
    sku: ShortText
    name: ShortText
    qty: PositiveCount
    unit_price_minor: Amount


class Tender(msgspec.Struct, frozen=True):
    method: TenderMethod
    amount_minor: Amount
    change_minor: Amount = 0
    #: A payment taken through the payments API (already captured): the sale applies it
    #: instead of debiting the tender's asset again.
    payment_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


class SaleCompleted(msgspec.Struct, frozen=True):
    order_id: UUID
    currency: CurrencyCode
    lines: Annotated[list[SaleLine], msgspec.Meta(min_length=1, max_length=LINES_MAX)]
    discount_minor: Amount
    total_minor: Amount
    tenders: Annotated[list[Tender], msgspec.Meta(max_length=TENDERS_MAX)]
    member_id: str | None = None
    channel: str = "counter"


def lines_total(lines: list[SaleLine]) -> int:
    return sum(line.qty * line.unit_price_minor for line in lines)


def _check_totals(sale: SaleCompleted) -> None:
    gross = lines_total(sale.lines)
    if gross - sale.discount_minor != sale.total_minor:
        raise EventRejected(
            "totals_mismatch",
            f"lines {gross} minus discount {sale.discount_minor} is not total {sale.total_minor}",
        )
    for tender in sale.tenders:
        if tender.change_minor and tender.method != "cash":
            raise EventRejected("invalid_tender", f"change is only given in cash, not {tender.method}")
        if tender.change_minor > tender.amount_minor:
            raise EventRejected("invalid_tender", "change exceeds the cash tendered")
    paid = sum(t.amount_minor - t.change_minor for t in sale.tenders)
    if paid != sale.total_minor:
        raise EventRejected(
            "tenders_mismatch", f"tenders minus change {paid} is not total {sale.total_minor}"
        )


def sale_postings(sale: SaleCompleted, terminal_id: str) -> list[Posting]:
    """Debit what came in (per tender) and the discount; credit gross sales revenue."""
    currency_code = sale.currency
    postings: list[Posting] = []
    for tender in sale.tenders:
        net = tender.amount_minor - tender.change_minor
        if net:
            account = cash_account(terminal_id) if tender.method == "cash" else TENDER_ACCOUNTS[tender.method]
            if tender.payment_id is not None:
                account = UNAPPLIED_PAYMENTS_ACCOUNT
            postings.append((account, currency_code, net))
    if sale.discount_minor:
        postings.append((DISCOUNT_ACCOUNT, currency_code, sale.discount_minor))
    gross = lines_total(sale.lines)
    if gross:
        postings.append((REVENUE_ACCOUNT, currency_code, -gross))
    return postings


def _decide(sale: SaleCompleted, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(sale.currency, state)
    _check_totals(sale)
    return sale_postings(sale, terminal_id)


#: Feature modules (members, coupons) add their own checks and follow-up events here,
#: so a sale needs no import of them: checks raise EventRejected, reactions return events.
SALE_CHECKS: list[Callable[[SaleCompleted, StoreState], None]] = []
SALE_REACTIONS: list[Callable[[SaleCompleted, StoreState, EntryMeta], list[tuple[str, dict[str, Any]]]]] = []
#: State changes of feature modules (the shift's drawer and totals); they run on replay too, so only assign.
SALE_EVOLVERS: list[Callable[[SaleCompleted, StoreState, EntryMeta], None]] = []


def _decide_with_features(sale: SaleCompleted, state: StoreState, terminal_id: str) -> list[Posting]:
    postings = _decide(sale, state, terminal_id)
    for check in SALE_CHECKS:
        check(sale, state)
    return postings


def _evolve(sale: SaleCompleted, state: StoreState, meta: EntryMeta) -> None:
    for evolve in SALE_EVOLVERS:
        evolve(sale, state, meta)


def _react(sale: SaleCompleted, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    return [event for reaction in SALE_REACTIONS for event in reaction(sale, state, meta)]


#: "any": a terminal's counter sale, or the server's for a completed paid online order
#: (pos_ledger.catalog.orders), so revenue is recognised by this one event type either way.
SALE_COMPLETED = register(
    EventType("sale.completed", SaleCompleted, _decide_with_features, _evolve, origin="any", react=_react)
)
