"""Third-party vouchers written off at the counter (through an app, a till or the back office)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from api.auth import COUPONS_READ, COUPONS_WRITE, Principal, allow
from api.bodylimit import AUTH_PROBLEMS, body_limit, problems
from api.routes.stores import IdentifierPattern, StoreId
from pos_ledger.catalog.vouchers import Voucher
from pos_ledger.vouchers import Redemption, Vouchers

router = APIRouter(prefix="/v1/stores", tags=["vouchers"], dependencies=[body_limit()])

RefPattern = r"^[A-Za-z0-9_.:/-]{1,100}$"
CodePattern = r"^[A-Za-z0-9_.:-]{1,128}$"
Provider = Annotated[str, Path(pattern=IdentifierPattern)]
Code = Annotated[str, Path(pattern=CodePattern)]


class RedeemIn(BaseModel):
    model_config = {"extra": "forbid", "strict": True}
    provider: str = Field(pattern=IdentifierPattern)
    code: str = Field(pattern=CodePattern)
    order_ref: str = Field(pattern=RefPattern)
    face_value_minor: int = Field(ge=0, le=10**15)
    paid_minor: int = Field(ge=0, le=10**15)
    #: Idempotency key: the same request again gets the same answer and writes nothing.
    request_id: str = Field(pattern=RefPattern)


class ReverseIn(BaseModel):
    model_config = {"extra": "forbid"}
    reason: str = Field(default="", max_length=200)


class VoucherOut(BaseModel):
    provider: str
    code: str
    order_ref: str
    currency: str
    face_value_minor: int
    paid_minor: int
    #: What the platform owes the store (the paid amount) and the platform's discount the store bears.
    receivable_minor: int
    discount_minor: int
    request_id: str
    app_id: str | None
    status: str
    redeemed_position: int
    reversed_position: int | None


def voucher_out(voucher: Voucher) -> VoucherOut:
    return VoucherOut(provider=voucher.provider, code=voucher.code, order_ref=voucher.order_ref,
                      currency=voucher.currency, face_value_minor=voucher.face_value_minor,
                      paid_minor=voucher.paid_minor, receivable_minor=voucher.paid_minor,
                      discount_minor=voucher.face_value_minor - voucher.paid_minor, request_id=voucher.request_id,
                      app_id=voucher.app_id, status="reversed" if voucher.reversed_position else "redeemed",
                      redeemed_position=voucher.redeemed_position, reversed_position=voucher.reversed_position)


def vouchers(request: Request) -> Vouchers:
    return Vouchers(request.app.state.ledger)


@router.post("/{store_id}/vouchers/redeem", status_code=201, response_model=VoucherOut,
             responses=problems(*AUTH_PROBLEMS, 404, 409, 413, 422, 503))
def redeem_voucher(store_id: StoreId, principal: Annotated[Principal, allow(COUPONS_WRITE)],
                   _: Annotated[None, body_limit()], payload: RedeemIn, request: Request,
                   response: Response) -> VoucherOut:
    """Write off a platform's voucher once ever (409 `voucher-already-redeemed` on a second code use);
    the same `request_id` again answers the first redemption (with `Idempotent-Replayed: true`)."""
    if payload.paid_minor > payload.face_value_minor:
        from pos_ledger.errors import InvalidInput

        raise InvalidInput("paid_minor cannot exceed face_value_minor")
    redemption = Redemption(payload.provider, payload.code, payload.order_ref, payload.face_value_minor,
                            payload.paid_minor, payload.request_id)
    voucher, created = vouchers(request).redeem(store_id, redemption,
                                                principal.subject if principal.kind == "app" else None)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    out = voucher_out(voucher)
    # The first answer again: a retried write-off is told what was recorded then.
    return out.model_copy(update={"status": "redeemed", "reversed_position": None}) if not created else out


@router.get("/{store_id}/vouchers/{provider}/{code}", response_model=VoucherOut,
            responses=problems(*AUTH_PROBLEMS, 404))
def get_voucher(store_id: StoreId, provider: Provider, code: Code,
                _: Annotated[Principal, allow(COUPONS_READ)], request: Request) -> VoucherOut:
    return voucher_out(vouchers(request).voucher(store_id, provider, code))


@router.post("/{store_id}/vouchers/{provider}/{code}/reverse", response_model=VoucherOut,
             responses=problems(*AUTH_PROBLEMS, 404, 409, 413, 422, 503))
def reverse_voucher(store_id: StoreId, provider: Provider, code: Code,
                    _: Annotated[Principal, allow(COUPONS_WRITE)], __: Annotated[None, body_limit()],
                    payload: ReverseIn, request: Request) -> VoucherOut:
    """Undo a write-off once (`voucher.reversed`, the opposite postings); a second is 409. The code
    stays spent: it cannot be redeemed again."""
    return voucher_out(vouchers(request).reverse(store_id, provider, code, payload.reason))
