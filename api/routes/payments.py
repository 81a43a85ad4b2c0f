"""Payments (merchant- and customer-presented, cash, card), their QR images, refunds, provider notifications."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field, StrictInt

from api.auth import PAYMENTS_READ, PAYMENTS_WRITE, Principal, allow
from api.deps import LedgerDep
from api.routes.stores import StoreId
from pos_ledger import _core, money
from pos_ledger.catalog.payments import Payment, Refund, payments_of
from pos_ledger.errors import InvalidInput
from pos_ledger.payments.drawer import Shifts
from pos_ledger.payments.service import Payments
from pos_ledger.values import IDENTIFIER_LENGTH_MAX, IDENTIFIER_PATTERN

router = APIRouter(prefix="/v1/stores", tags=["payments"])

IdPattern = IDENTIFIER_PATTERN
PaymentId = Annotated[str, Path(pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)]
SVG = "image/svg+xml"
PNG = "image/png"


def payments(request: Request) -> Payments:
    service: Payments = request.app.state.payments
    return service


def shifts(request: Request) -> Shifts:
    service: Shifts = request.app.state.shifts
    return service


class PaymentIn(BaseModel):
    amount_minor: StrictInt = Field(ge=1, le=money.AMOUNT_MINOR_MAX)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    order_ref: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/-]+$")
    #: The customer's payment code the cashier scanned (customer-presented).
    auth_code: str | None = Field(default=None, min_length=1, max_length=64)
    #: qr (default without auth_code), code (default with auth_code), cash, card.
    method: Literal["qr", "code", "cash", "card"] | None = None
    #: For a QR only: ask for one channel's own QR (wechat: the provider's code URL).
    channel: Literal["wechat", "alipay", "unionpay"] | None = None
    #: The till (drawer) with the back-office token; a signing terminal is its own till.
    terminal_id: str | None = Field(default=None, pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)
    #: Cash handed over; change = tendered - amount.
    tendered_minor: StrictInt | None = Field(default=None, ge=0, le=money.AMOUNT_MINOR_MAX)


class PaymentOut(BaseModel):
    payment_id: str
    status: str
    provider: str
    qr_payload: str | None
    method: str
    channel: str | None
    order_ref: str
    amount_minor: int
    currency: str
    terminal_id: str | None
    transaction_id: str
    failure_reason: str | None
    failure_detail: str | None
    tendered_minor: int | None
    change_minor: int | None
    refunded_minor: int
    refundable_minor: int
    refund_ids: list[str]
    applied_order_id: str | None
    requested_at: str
    captured_at: str | None
    qr_svg_url: str | None
    qr_png_url: str | None


class OrderPaymentsOut(BaseModel):
    order_ref: str
    captured_minor: int
    refunded_minor: int
    payments: list[PaymentOut]


class RefundIn(BaseModel):
    #: Reuse the same id when retrying: the same refund comes back, nothing is refunded twice.
    refund_id: str | None = Field(default=None, pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)
    amount_minor: StrictInt = Field(ge=1, le=money.AMOUNT_MINOR_MAX)
    reason: str = Field(default="", max_length=200)
    terminal_id: str | None = Field(default=None, pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)


class RefundOut(BaseModel):
    refund_id: str
    payment_id: str
    amount_minor: int
    status: str
    provider_refund_id: str
    reason: str
    at: str
    position: int
    payment_refunded_minor: int
    payment_refundable_minor: int


def payment_out(store_id: str, payment: Payment) -> PaymentOut:
    base = f"/v1/stores/{store_id}/payments/{payment.payment_id}"
    is_cash = payment.method == "cash" and payment.status == "captured"
    return PaymentOut(
        payment_id=payment.payment_id, status=payment.status, provider=payment.provider,
        qr_payload=payment.qr_payload, method=payment.method, channel=payment.channel,
        order_ref=payment.order_ref, amount_minor=payment.amount_minor, currency=payment.currency,
        terminal_id=payment.terminal_id, transaction_id=payment.provider_transaction_id,
        failure_reason=payment.failure_reason or None, failure_detail=payment.failure_detail or None,
        tendered_minor=payment.tendered_minor if is_cash else None,
        change_minor=payment.tendered_minor - payment.amount_minor if is_cash else None,
        refunded_minor=payment.refunded_minor,
        refundable_minor=payment.amount_minor - payment.refunded_minor if payment.status == "captured" else 0,
        refund_ids=list(payment.refund_ids), applied_order_id=payment.applied_order_id,
        requested_at=payment.requested_at.isoformat(),
        captured_at=payment.captured_at.isoformat() if payment.captured_at else None,
        qr_svg_url=f"{base}/qr.svg" if payment.qr_payload else None,
        qr_png_url=f"{base}/qr.png" if payment.qr_payload else None,
    )


def refund_out(refund: Refund, payment: Payment) -> RefundOut:
    return RefundOut(refund_id=refund.refund_id, payment_id=refund.payment_id, amount_minor=refund.amount_minor,
                     status="succeeded", provider_refund_id=refund.provider_refund_id, reason=refund.reason,
                     at=refund.at.isoformat(), position=refund.position,
                     payment_refunded_minor=payment.refunded_minor,
                     payment_refundable_minor=payment.amount_minor - payment.refunded_minor)


@router.post("/{store_id}/payments", status_code=201, response_model=PaymentOut)
def create_payment(store_id: StoreId, payload: PaymentIn, request: Request, ledger: LedgerDep,
                   cashier: Annotated[Principal, allow(PAYMENTS_WRITE)]) -> PaymentOut:
    money.currency(payload.currency)
    state = ledger.store(store_id)
    if payload.currency != state.currency:
        raise InvalidInput(f"store {store_id!r} takes {state.currency}, not {payload.currency}")
    if payload.auth_code is not None and payload.method not in (None, "code"):
        raise InvalidInput("auth_code is only for a customer-presented (code) payment")
    payment = payments(request).create(
        store_id, amount_minor=payload.amount_minor, currency=payload.currency, order_ref=payload.order_ref,
        auth_code=payload.auth_code, method=payload.method, channel=payload.channel,
        terminal_id=cashier.till(payload.terminal_id), tendered_minor=payload.tendered_minor)
    return payment_out(store_id, payment)


@router.get("/{store_id}/payments", response_model=OrderPaymentsOut)
def order_payments(store_id: StoreId, request: Request, cashier: Annotated[Principal, allow(PAYMENTS_READ)],
                   order_ref: Annotated[str, Query(min_length=1, max_length=100)]) -> OrderPaymentsOut:
    found = payments(request).for_order(store_id, order_ref)
    captured = [p for p in found if p.status == "captured"]
    return OrderPaymentsOut(order_ref=order_ref, captured_minor=sum(p.amount_minor for p in captured),
                            refunded_minor=sum(p.refunded_minor for p in captured),
                            payments=[payment_out(store_id, p) for p in found])


@router.get("/{store_id}/payments/{payment_id}", response_model=PaymentOut)
def get_payment(store_id: StoreId, payment_id: PaymentId, request: Request, cashier: Annotated[Principal, allow(PAYMENTS_READ)]) -> PaymentOut:
    return payment_out(store_id, payments(request).refresh(store_id, payment_id))


def _qr_text(request: Request, store_id: str, payment_id: str) -> str:
    payment = payments(request).payment(store_id, payment_id)
    if not payment.qr_payload:
        raise InvalidInput(f"payment {payment_id!r} has no QR (it is {payment.method})")
    return payment.qr_payload


@router.get("/{store_id}/payments/{payment_id}/qr.svg")
def payment_qr_svg(store_id: StoreId, payment_id: PaymentId, request: Request) -> Response:
    # No credential: the QR is what the customer-facing screen shows; the id is unguessable.
    return Response(_core.qr_svg(_qr_text(request, store_id, payment_id)), media_type=SVG,
                    headers={"cache-control": "no-store"})


@router.get("/{store_id}/payments/{payment_id}/qr.png")
def payment_qr_png(store_id: StoreId, payment_id: PaymentId, request: Request) -> Response:
    return Response(_core.qr_png(_qr_text(request, store_id, payment_id)), media_type=PNG,
                    headers={"cache-control": "no-store"})


class VoidIn(BaseModel):
    terminal_id: str | None = Field(default=None, pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)


@router.post("/{store_id}/payments/{payment_id}/void", response_model=PaymentOut)
def void_payment(store_id: StoreId, payment_id: PaymentId, request: Request, cashier: Annotated[Principal, allow(PAYMENTS_WRITE)],
                 payload: VoidIn | None = None) -> PaymentOut:
    """Unpaid: closed at the provider and failed as `voided`. Captured: refunded in full."""
    terminal_id = cashier.till(payload.terminal_id if payload else None)
    return payment_out(store_id, payments(request).void(store_id, payment_id, terminal_id))


@router.post("/{store_id}/payments/{payment_id}/refunds", status_code=201, response_model=RefundOut)
def refund_payment(store_id: StoreId, payment_id: PaymentId, payload: RefundIn, request: Request,
                   cashier: Annotated[Principal, allow(PAYMENTS_WRITE)]) -> RefundOut:
    service = payments(request)
    refund = service.refund(store_id, payment_id, refund_id=payload.refund_id or "rfd" + uuid.uuid4().hex[:20],
                            amount_minor=payload.amount_minor, reason=payload.reason,
                            terminal_id=cashier.till(payload.terminal_id))
    return refund_out(refund, service.payment(store_id, payment_id))


@router.get("/{store_id}/payments/{payment_id}/refunds", response_model=list[RefundOut])
def list_refunds(store_id: StoreId, payment_id: PaymentId, request: Request, ledger: LedgerDep,
                 cashier: Annotated[Principal, allow(PAYMENTS_READ)]) -> list[RefundOut]:
    service = payments(request)
    payment = service.payment(store_id, payment_id)
    book = payments_of(ledger.store(store_id))
    return [refund_out(book.refunds[r], payment) for r in payment.refund_ids]


@router.post("/{store_id}/psp/notifications")
async def provider_notification(store_id: StoreId, request: Request) -> dict[str, str]:
    """Where the provider calls back (signed); 2xx tells it to stop retrying."""
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    outcome = await run_in_threadpool(payments(request).notification, store_id, dict(request.headers), body)
    return {"code": "SUCCESS", "message": outcome}
