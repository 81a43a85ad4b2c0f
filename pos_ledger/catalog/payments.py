"""Payments and refunds: `payment.requested`, `payment.captured`, `payment.failed`,
`payment.applied`, `refund.issued`.

Decisions (written down once):

* A payment is money received for an order (`order_ref`), before or without a
  sale. Capture debits what came in and credits `liability:unapplied_payments`:
  `asset:psp:{wechat|alipay|unionpay}` for a provider payment (the channel the
  provider reports at capture), `asset:cash:{terminal}` for cash (the drawer of
  the terminal that took it), `asset:card:acquirer` for card.
* Revenue is recognised once, by `sale.completed`. A sale tender that names a
  `payment_id` debits `liability:unapplied_payments` instead of the tender's asset
  (sales.py), so nothing is counted twice; the sale's check here requires the
  payment to be captured, in the same method, for the same amount net of refunds,
  and not applied to another sale. The server then appends `payment.applied`
  (pointing at the sale) so the payment knows its sale for refunds. A payment no
  sale applied stays a liability (a deposit, or an order still open).
* Split tender is several payments with one `order_ref` (and a sale naming them all).
* A refund is its own event pointing at the payment, with its own `refund_id`
  (reused on retry: same id, same payment and amount -> the same refund). Refunds
  never exceed what was captured, in total over all refunds of the payment.
  Postings: an unapplied payment reverses its capture (Dr unapplied, Cr the asset);
  an applied payment reverses the sale's postings proportionally: of the sale's
  revenue and discount, the share refunded so far over the sale's total, computed
  on the cumulative refunded amount (half-even) so repeated partial refunds add up
  exactly to the sale's postings when everything is refunded.
* Provider limits are rules here, checked against the time the server decided the
  refund (`at` in the data, so the auditor's re-run gives the same answer):
  WeChat Pay allows at most 50 refunds per payment, within 365 days of capture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

import msgspec

from pos_ledger.catalog import sales, shifts
from pos_ledger.catalog.sales import (
    DISCOUNT_ACCOUNT,
    REVENUE_ACCOUNT,
    TENDER_ACCOUNTS,
    UNAPPLIED_PAYMENTS_ACCOUNT,
    SaleCompleted,
    cash_account,
    lines_total,
)
from pos_ledger.events import (
    CurrencyCode,
    EntryMeta,
    EventRejected,
    EventType,
    Identifier,
    Posting,
    register,
    require_currency,
)
from pos_ledger.state import StoreState

FEATURE: Final = "payments"
Channel = Literal["wechat", "alipay", "unionpay"]
Method = Literal["qr", "code", "cash", "card"]
PositiveAmount = Annotated[int, msgspec.Meta(ge=1, le=10**15)]
Text = Annotated[str, msgspec.Meta(max_length=500)]
OrderRef = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/-]+$")]

#: Provider limits on refunds, per channel: (refunds per payment, days after capture).
REFUND_LIMITS: Final[dict[str, tuple[int, int]]] = {"wechat": (50, 365)}
#: Without a provider limit (cash, card, other channels) a payment still takes a bounded number.
REFUNDS_PER_PAYMENT_MAX: Final = 1_000


class PaymentRequested(msgspec.Struct, frozen=True):
    payment_id: Identifier
    order_ref: OrderRef
    amount_minor: PositiveAmount
    currency: CurrencyCode
    method: Method
    #: Who moves the money: a provider's name ("sandbox", ...), or "cash" / "card".
    provider: Identifier
    channel: Channel | None = None
    terminal_id: Identifier | None = None
    qr_payload: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class PaymentCaptured(msgspec.Struct, frozen=True):
    payment_id: Identifier
    amount_minor: PositiveAmount
    channel: Channel | None = None
    provider_transaction_id: Text = ""
    #: How the capture was learned: "charge", "query", "notification", "counter".
    source: Identifier = "charge"
    tendered_minor: int = 0


class PaymentFailed(msgspec.Struct, frozen=True):
    payment_id: Identifier
    reason: Identifier
    detail: Text = ""


class PaymentApplied(msgspec.Struct, frozen=True):
    payment_id: Identifier
    order_id: str
    sale_gross_minor: int
    sale_discount_minor: int
    sale_total_minor: int


class RefundIssued(msgspec.Struct, frozen=True):
    refund_id: Identifier
    payment_id: Identifier
    amount_minor: PositiveAmount
    #: When the server decided the refund: provider time limits are checked against it.
    at: datetime
    provider_refund_id: Text = ""
    reason: Text = ""
    #: The drawer a cash refund is paid from (default: the payment's terminal).
    terminal_id: Identifier | None = None


@dataclass(slots=True)
class Refund:
    refund_id: str
    payment_id: str
    amount_minor: int
    at: datetime
    provider_refund_id: str
    reason: str
    position: int


@dataclass(slots=True)
class Payment:
    payment_id: str
    order_ref: str
    amount_minor: int
    currency: str
    method: str
    provider: str
    channel: str | None
    terminal_id: str | None
    qr_payload: str | None
    requested_at: datetime
    status: str = "pending"
    provider_transaction_id: str = ""
    captured_at: datetime | None = None
    captured_source: str = ""
    tendered_minor: int = 0
    failure_reason: str = ""
    failure_detail: str = ""
    refunded_minor: int = 0
    refund_ids: list[str] = field(default_factory=list)
    applied_order_id: str | None = None

    @property
    def tender_method(self) -> str:
        """The sale tender method this payment stands for."""
        if self.method in ("cash", "card"):
            return self.method
        return self.channel or "unknown"


@dataclass(slots=True)
class AppliedSale:
    gross_minor: int
    discount_minor: int
    total_minor: int
    refunded_minor: int = 0


@dataclass(slots=True)
class PaymentsState:
    payments: dict[str, Payment] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    by_order: dict[str, list[str]] = field(default_factory=dict)
    sales: dict[str, AppliedSale] = field(default_factory=dict)


def payments_of(state: StoreState) -> PaymentsState:
    return state.feature(FEATURE, PaymentsState)


def asset_account(payment: Payment, channel: str | None = None) -> str:
    if payment.method == "cash":
        assert payment.terminal_id is not None
        return cash_account(payment.terminal_id)
    if payment.method == "card":
        return TENDER_ACCOUNTS["card"]
    return TENDER_ACCOUNTS[channel or payment.channel or "unionpay"]


def _payment(state: StoreState, payment_id: str) -> Payment:
    payment = payments_of(state).payments.get(payment_id)
    if payment is None:
        raise EventRejected("unknown_payment", f"no payment {payment_id!r}")
    return payment


# ---- payment.requested / captured / failed ----


def _decide_requested(data: PaymentRequested, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    if data.payment_id in payments_of(state).payments:
        raise EventRejected("payment_exists", f"payment {data.payment_id!r} already exists")
    if data.method == "cash" and data.terminal_id is None:
        raise EventRejected("terminal_required", "a cash payment goes into a terminal's drawer")
    return []


def _evolve_requested(data: PaymentRequested, state: StoreState, meta: EntryMeta) -> None:
    book = payments_of(state)
    book.payments[data.payment_id] = Payment(
        data.payment_id, data.order_ref, data.amount_minor, data.currency, data.method, data.provider,
        data.channel, data.terminal_id, data.qr_payload, meta.at)
    book.by_order.setdefault(data.order_ref, []).append(data.payment_id)


def _decide_captured(data: PaymentCaptured, state: StoreState, terminal_id: str) -> list[Posting]:
    payment = _payment(state, data.payment_id)
    if payment.status != "pending":
        raise EventRejected(f"payment_{payment.status}", f"payment {payment.payment_id!r} is {payment.status}")
    if data.amount_minor != payment.amount_minor:
        raise EventRejected("amount_mismatch",
                            f"captured {data.amount_minor}, requested {payment.amount_minor}")
    if payment.method in ("qr", "code") and data.channel is None and payment.channel is None:
        raise EventRejected("channel_required", "a provider capture names its channel")
    account = asset_account(payment, data.channel)
    return [(account, payment.currency, data.amount_minor),
            (UNAPPLIED_PAYMENTS_ACCOUNT, payment.currency, -data.amount_minor)]


def _evolve_captured(data: PaymentCaptured, state: StoreState, meta: EntryMeta) -> None:
    payment = payments_of(state).payments[data.payment_id]
    payment.status = "captured"
    payment.channel = data.channel or payment.channel
    payment.provider_transaction_id = data.provider_transaction_id
    payment.captured_at = meta.at
    payment.captured_source = data.source
    payment.tendered_minor = data.tendered_minor
    shifts.record_tender(state, payment.terminal_id, payment.tender_method, data.amount_minor)


def _decide_failed(data: PaymentFailed, state: StoreState, terminal_id: str) -> list[Posting]:
    payment = _payment(state, data.payment_id)
    if payment.status != "pending":
        raise EventRejected(f"payment_{payment.status}", f"payment {payment.payment_id!r} is {payment.status}")
    return []


def _evolve_failed(data: PaymentFailed, state: StoreState, meta: EntryMeta) -> None:
    payment = payments_of(state).payments[data.payment_id]
    payment.status = "failed"
    payment.failure_reason = data.reason
    payment.failure_detail = data.detail


# ---- sales that apply payments ----


def check_sale(sale: SaleCompleted, state: StoreState) -> None:
    seen: set[str] = set()
    for tender in sale.tenders:
        if tender.payment_id is None:
            continue
        if tender.payment_id in seen:
            raise EventRejected("payment_applied_twice", f"payment {tender.payment_id!r} named twice")
        seen.add(tender.payment_id)
        payment = _payment(state, tender.payment_id)
        if payment.status != "captured":
            raise EventRejected("payment_not_captured", f"payment {payment.payment_id!r} is {payment.status}")
        if payment.applied_order_id is not None:
            raise EventRejected("payment_already_applied",
                                f"payment {payment.payment_id!r} paid order {payment.applied_order_id}")
        if tender.method != payment.tender_method:
            raise EventRejected("tender_method_mismatch",
                                f"payment {payment.payment_id!r} was {payment.tender_method}, not {tender.method}")
        net = tender.amount_minor - tender.change_minor
        if net != payment.amount_minor - payment.refunded_minor:
            raise EventRejected("tender_amount_mismatch",
                                f"payment {payment.payment_id!r} holds {payment.amount_minor - payment.refunded_minor}")


def react_sale(sale: SaleCompleted, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    if all(t.payment_id is None for t in sale.tenders):
        return []  # the common sale: nothing to apply (and no gross to sum again)
    gross = lines_total(sale.lines)
    return [("payment.applied", {"payment_id": t.payment_id, "order_id": str(sale.order_id),
                                 "sale_gross_minor": gross, "sale_discount_minor": sale.discount_minor,
                                 "sale_total_minor": sale.total_minor})
            for t in sale.tenders if t.payment_id is not None]


def evolve_sale(sale: SaleCompleted, state: StoreState, meta: EntryMeta) -> None:
    """The shift counts the sale; tenders paid through payments were counted at capture."""
    direct = [t for t in sale.tenders if t.payment_id is None]
    for tender in direct:
        shifts.record_tender(state, meta.terminal_id, tender.method, tender.amount_minor - tender.change_minor)
    shift = shifts.open_shift_of(state, meta.terminal_id)
    if shift is not None:
        shift.sales_count += 1
        shift.discounts_minor += sale.discount_minor


def _decide_applied(data: PaymentApplied, state: StoreState, terminal_id: str) -> list[Posting]:
    payment = _payment(state, data.payment_id)
    if payment.applied_order_id is not None:
        raise EventRejected("payment_already_applied", f"payment {payment.payment_id!r} already applied")
    return []


def _evolve_applied(data: PaymentApplied, state: StoreState, meta: EntryMeta) -> None:
    book = payments_of(state)
    book.payments[data.payment_id].applied_order_id = data.order_id
    book.sales.setdefault(data.order_id, AppliedSale(data.sale_gross_minor, data.sale_discount_minor,
                                                     data.sale_total_minor))


# ---- refunds ----


def _half_even_div(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def check_refund(payment: Payment, refund_id: str, amount_minor: int, at: datetime, book: PaymentsState) -> None:
    """The refund rules; raises EventRejected (also used by the service before calling the provider)."""
    if payment.status != "captured":
        raise EventRejected("payment_not_captured", f"payment {payment.payment_id!r} is {payment.status}")
    if refund_id in book.refunds:
        raise EventRejected("refund_exists", f"refund {refund_id!r} already exists")
    remaining = payment.amount_minor - payment.refunded_minor
    if amount_minor > remaining:
        raise EventRejected("refund_exceeds_captured",
                            f"refund {amount_minor} but only {remaining} of {payment.amount_minor} is left")
    count_max, days_max = REFUND_LIMITS.get(payment.channel or "", (REFUNDS_PER_PAYMENT_MAX, None))
    if len(payment.refund_ids) >= count_max:
        raise EventRejected("refund_count_limit", f"{payment.channel} allows at most {count_max} refunds per payment")
    if days_max is not None and payment.captured_at is not None and at - payment.captured_at > timedelta(days=days_max):
        raise EventRejected("refund_window_closed", f"{payment.channel} refunds only within {days_max} days")


def _decide_refund(data: RefundIssued, state: StoreState, terminal_id: str) -> list[Posting]:
    book = payments_of(state)
    payment = _payment(state, data.payment_id)
    check_refund(payment, data.refund_id, data.amount_minor, data.at, book)
    currency_code = payment.currency
    account = asset_account(payment)
    if payment.method == "cash":
        account = cash_account(data.terminal_id or payment.terminal_id or "")
        drawer = shifts.drawer_minor(state, data.terminal_id or payment.terminal_id or "")
        if data.amount_minor > drawer:
            raise EventRejected("insufficient_cash", f"refund {data.amount_minor} but the drawer holds {drawer}")
    postings: list[Posting] = [(account, currency_code, -data.amount_minor)]
    sale = book.sales.get(payment.applied_order_id or "")
    if sale is None or sale.total_minor == 0:
        postings.append((UNAPPLIED_PAYMENTS_ACCOUNT, currency_code, data.amount_minor))
        return postings
    before = sale.refunded_minor
    after = before + data.amount_minor
    revenue = (_half_even_div(after * sale.gross_minor, sale.total_minor)
               - _half_even_div(before * sale.gross_minor, sale.total_minor))
    postings.append((REVENUE_ACCOUNT, currency_code, revenue))
    if revenue != data.amount_minor:
        postings.append((DISCOUNT_ACCOUNT, currency_code, data.amount_minor - revenue))
    return postings


def _evolve_refund(data: RefundIssued, state: StoreState, meta: EntryMeta) -> None:
    book = payments_of(state)
    payment = book.payments[data.payment_id]
    payment.refunded_minor += data.amount_minor
    payment.refund_ids.append(data.refund_id)
    book.refunds[data.refund_id] = Refund(data.refund_id, data.payment_id, data.amount_minor, data.at,
                                          data.provider_refund_id, data.reason, meta.position)
    sale = book.sales.get(payment.applied_order_id or "")
    if sale is not None:
        sale.refunded_minor += data.amount_minor
    terminal = data.terminal_id or payment.terminal_id
    shifts.record_refund(state, terminal, payment.tender_method, data.amount_minor)


PAYMENT_REQUESTED = register(EventType("payment.requested", PaymentRequested, _decide_requested,
                                       _evolve_requested, origin="server"))
PAYMENT_CAPTURED = register(EventType("payment.captured", PaymentCaptured, _decide_captured,
                                      _evolve_captured, origin="server"))
PAYMENT_FAILED = register(EventType("payment.failed", PaymentFailed, _decide_failed, _evolve_failed,
                                    origin="server"))
PAYMENT_APPLIED = register(EventType("payment.applied", PaymentApplied, _decide_applied, _evolve_applied,
                                     origin="server"))
#: Other features' reactions to a refund, called as reaction(refund, payment, state, meta) after it
#: is applied (the members feature reverses the points the refunded order earned).
REFUND_REACTIONS: list[Callable[[RefundIssued, Payment, StoreState, EntryMeta],
                                list[tuple[str, dict[str, Any]]]]] = []


def _react_refund(data: RefundIssued, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    payment = payments_of(state).payments[data.payment_id]
    return [event for reaction in REFUND_REACTIONS for event in reaction(data, payment, state, meta)]


REFUND_ISSUED = register(EventType("refund.issued", RefundIssued, _decide_refund, _evolve_refund,
                                   origin="server", react=_react_refund))

sales.SALE_CHECKS.append(check_sale)
sales.SALE_REACTIONS.append(react_sale)
sales.SALE_EVOLVERS.append(evolve_sale)
