"""Third-party vouchers written off at the counter: `voucher.redeemed`, `voucher.reversed`.

A group-buy voucher is sold by a platform (a delivery or review app): the customer
paid the platform `paid_minor` for goods worth `face_value_minor`. When the voucher
is redeemed in the store, the store hands over the goods and the platform owes the
store what the customer paid for them. The books, per redemption:

    debit  asset:receivable:voucher:{provider}   paid_minor             (the platform owes us)
    debit  contra:discount:voucher:{provider}    face - paid            (the platform's discount,
                                                                          borne by the store)
    credit revenue:sales                         face_value_minor       (the goods sold, at gross)

This is the shape of `sale.completed` (tenders + discount = gross revenue), with
the platform's receivable as the tender; the till therefore records no separate
sale for what the voucher covers. The platform's commission, if any, is booked
when it settles (cash in against the receivable), not here. A reversal posts the
exact opposite once. A code is redeemed at most once ever per provider, even after
a reversal (the platform's code is spent); a redemption is idempotent on its
`request_id` (the same request again gets the same answer and writes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Final

import msgspec

from pos_ledger.events import (
    Amount,
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

REVENUE_ACCOUNT: Final = "revenue:sales"
VOUCHERS_MAX: Final = 10_000_000
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/-]+$")]
VoucherCode = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
Note = Annotated[str, msgspec.Meta(max_length=200)]


def receivable_account(provider: str) -> str:
    return f"asset:receivable:voucher:{provider}"


def discount_account(provider: str) -> str:
    return f"contra:discount:voucher:{provider}"


class VoucherRedeemed(msgspec.Struct, frozen=True):
    provider: Identifier
    code: VoucherCode
    order_ref: Reference
    currency: CurrencyCode
    face_value_minor: Amount
    paid_minor: Amount
    request_id: Reference
    #: The app that wrote it off, when an app did.
    app_id: Identifier | None = None


class VoucherReversed(msgspec.Struct, frozen=True):
    provider: Identifier
    code: VoucherCode
    reason: Note = ""


@dataclass(slots=True)
class Voucher:
    provider: str
    code: str
    order_ref: str
    currency: str
    face_value_minor: int
    paid_minor: int
    request_id: str
    app_id: str | None
    redeemed_position: int
    redeemed_at: str
    reversed_position: int | None = None
    reversed_at: str | None = None
    reversal_reason: str = ""


@dataclass(slots=True)
class VouchersFeature:
    by_code: dict[tuple[str, str], Voucher] = field(default_factory=dict)
    by_request: dict[str, tuple[str, str]] = field(default_factory=dict)


def vouchers_of(state: StoreState) -> VouchersFeature:
    return state.feature("vouchers", VouchersFeature)


def redemption_postings(provider: str, currency_code: str, face_value_minor: int,
                        paid_minor: int) -> list[Posting]:
    postings: list[Posting] = []
    if paid_minor:
        postings.append((receivable_account(provider), currency_code, paid_minor))
    if face_value_minor - paid_minor:
        postings.append((discount_account(provider), currency_code, face_value_minor - paid_minor))
    if face_value_minor:
        postings.append((REVENUE_ACCOUNT, currency_code, -face_value_minor))
    return postings


def _decide_redeemed(data: VoucherRedeemed, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    if data.paid_minor > data.face_value_minor:
        raise EventRejected("invalid_data", "paid_minor cannot exceed face_value_minor")
    feature = vouchers_of(state)
    if data.request_id in feature.by_request:
        raise EventRejected("duplicate_request", f"request_id {data.request_id!r} was already used")
    if (data.provider, data.code) in feature.by_code:
        raise EventRejected("voucher_already_redeemed",
                            f"voucher {data.code!r} of {data.provider!r} was already redeemed")
    if len(feature.by_code) >= VOUCHERS_MAX:
        raise EventRejected("vouchers_full", f"a store keeps at most {VOUCHERS_MAX} vouchers")
    return redemption_postings(data.provider, data.currency, data.face_value_minor, data.paid_minor)


def _evolve_redeemed(data: VoucherRedeemed, state: StoreState, meta: EntryMeta) -> None:
    feature = vouchers_of(state)
    key = (data.provider, data.code)
    feature.by_code[key] = Voucher(data.provider, data.code, data.order_ref, data.currency,
                                   data.face_value_minor, data.paid_minor, data.request_id, data.app_id,
                                   meta.position, meta.at.isoformat())
    feature.by_request[data.request_id] = key


def _decide_reversed(data: VoucherReversed, state: StoreState, terminal_id: str) -> list[Posting]:
    voucher = vouchers_of(state).by_code.get((data.provider, data.code))
    if voucher is None:
        raise EventRejected("voucher_unknown", f"voucher {data.code!r} of {data.provider!r} was never redeemed")
    if voucher.reversed_position is not None:
        raise EventRejected("voucher_already_reversed", f"voucher {data.code!r} was already reversed")
    return [(account, currency_code, -amount) for account, currency_code, amount in
            redemption_postings(voucher.provider, voucher.currency, voucher.face_value_minor,
                                voucher.paid_minor)]


def _evolve_reversed(data: VoucherReversed, state: StoreState, meta: EntryMeta) -> None:
    voucher = vouchers_of(state).by_code[(data.provider, data.code)]
    voucher.reversed_position = meta.position
    voucher.reversed_at = meta.at.isoformat()
    voucher.reversal_reason = data.reason


VOUCHER_REDEEMED = register(
    EventType("voucher.redeemed", VoucherRedeemed, _decide_redeemed, _evolve_redeemed, origin="server")
)
VOUCHER_REVERSED = register(
    EventType("voucher.reversed", VoucherReversed, _decide_reversed, _evolve_reversed, origin="server")
)
