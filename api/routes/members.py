"""Members, the member program, stored value and points (back office / cashier, admin token for now)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field, StrictInt

from api.auth import MANAGE, MEMBERS_READ, MEMBERS_WRITE, OWN, PERSONAL_DATA_READ, Principal, allow
from api.deps import LedgerDep
from api.routes.stores import StoreId
from pos_ledger import _core
from pos_ledger.catalog.members import Member, members_of
from pos_ledger.loyalty import STORE_TOKEN_TTL_S_MAX, Loyalty, store_tag
from pos_ledger.personal import mask_phone
from pos_ledger.values import IDENTIFIER_LENGTH_MAX, IDENTIFIER_PATTERN

router = APIRouter(prefix="/v1/stores", tags=["members"])

IdPattern = IDENTIFIER_PATTERN
RefPattern = r"^[A-Za-z0-9_.:/-]{1,100}$"
MemberId = Annotated[str, Path(pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)]
RefPath = Annotated[str, Path(pattern=RefPattern)]
AmountMinor = Annotated[StrictInt, Field(ge=1, le=10**15)]
SVG = "image/svg+xml"


def loyalty(request: Request) -> Loyalty:
    """One Loyalty per app, next to its ledger and the personal-data table in the same database."""
    found: Loyalty | None = getattr(request.app.state, "loyalty", None)
    if found is None:
        from pos_ledger.personal_store import SqlPersonalData

        ledger = request.app.state.ledger
        found = request.app.state.loyalty = Loyalty(ledger, SqlPersonalData(ledger.database))
    return found


class RechargeRuleIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    paid_minor_min: StrictInt = Field(ge=0, le=10**15)
    bonus_minor: StrictInt = Field(default=0, ge=0, le=10**15)
    bonus_basis_points: StrictInt = Field(default=0, ge=0, le=100_000)


class TierRuleIn(BaseModel):
    tier: str = Field(pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)
    points_lifetime_min: StrictInt = Field(ge=0, le=10**15)


class ProgramIn(BaseModel):
    recharge_rules: list[RechargeRuleIn] = Field(default_factory=list, max_length=50)
    tiers: list[TierRuleIn] = Field(default_factory=list, max_length=20)
    earn_minor_per_point: StrictInt = Field(default=100, ge=1, le=10**9)
    point_value_minor: StrictInt = Field(default=1, ge=0, le=10**6)


class MemberIn(BaseModel):
    member_id: str | None = Field(default=None, pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)
    name: str = Field(default="", max_length=200)
    phone: str = Field(default="", max_length=32)
    #: Kept with name and phone in the erasable personal-data table, never in the log.
    birthday: date | None = None
    #: The store's membership QR the customer scanned (opens the card themselves).
    join_token: str | None = Field(default=None, max_length=1000)


class MemberOut(BaseModel):
    member_id: str
    #: Hex token id of the member's card QR, for terminals that verify cards offline.
    card_id: str
    name: str
    #: Masked (138****5678) unless the caller may read personal data (`personal_data:read`).
    phone: str
    birthday: str
    source: str
    registered_at: str
    tier: str
    currency: str
    balance_minor: int
    principal_minor: int
    bonus_minor: int
    points: int
    points_lifetime: int


class RechargeIn(BaseModel):
    amount_minor: AmountMinor
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    #: Idempotency key: a retried recharge with the same id is answered, not repeated.
    recharge_id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=RefPattern)
    method: Literal["cash", "wechat", "alipay", "unionpay", "card"] = "cash"
    #: The till that took the money: a cash recharge goes into its drawer and shift.
    terminal_id: str | None = Field(default=None, pattern=IDENTIFIER_PATTERN, max_length=IDENTIFIER_LENGTH_MAX)


class RechargeOut(BaseModel):
    recharge_id: str
    paid_minor: int
    bonus_minor: int
    #: The bonus rule applied, named on the receipt ("" = none).
    rule_name: str
    created: bool
    member: MemberOut


class RechargeRefundOut(BaseModel):
    recharge_id: str
    principal_returned_minor: int
    bonus_voided_minor: int
    member: MemberOut


class SpendIn(BaseModel):
    amount_minor: AmountMinor
    order_ref: str = Field(pattern=RefPattern)
    #: Idempotency key; defaults to the order reference (one stored-value payment per order).
    spend_id: str | None = Field(default=None, pattern=RefPattern)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")


class SpendOut(BaseModel):
    spend_id: str
    order_ref: str
    amount_minor: int
    principal_minor: int
    bonus_minor: int
    created: bool
    member: MemberOut


class CheckoutConfirmIn(BaseModel):
    order_ref: str = Field(pattern=RefPattern)
    amount_minor: StrictInt = Field(ge=0, le=10**15)


class PointsOut(BaseModel):
    order_ref: str
    points_earned: int
    created: bool
    member: MemberOut


class PointsRedeemIn(BaseModel):
    points: StrictInt = Field(ge=1, le=10**15)
    order_ref: str = Field(pattern=RefPattern)
    redemption_id: str | None = Field(default=None, pattern=RefPattern)


class PointsRedeemOut(BaseModel):
    redemption_id: str
    points: int
    discount_minor: int
    created: bool
    member: MemberOut


class OrderRefundIn(BaseModel):
    refund_id: str = Field(pattern=RefPattern)
    amount_minor: StrictInt = Field(ge=0, le=10**15)
    #: True when the refund takes back the line paid with points (the reward line).
    includes_reward_line: bool = False


class OrderRefundOut(BaseModel):
    order_ref: str
    refund_id: str
    created: bool
    points_earned_reversed_total: int
    points_spent_returned_total: int
    stored_value_returned_total_minor: int
    member: MemberOut


class TokenOut(BaseModel):
    token: str
    expires_at: int
    #: The server public key (base64) a terminal verifies the token with, offline.
    server_public_key: str
    #: Hex of the 8-byte store tag every token of this store carries first in its payload.
    store_tag: str


class CardVerifyIn(BaseModel):
    token: str = Field(min_length=1, max_length=1000)


def member_out(loyalty_: Loyalty, store_id: str, member: Member, viewer: Principal | None = None) -> MemberOut:
    personal = loyalty_.personal_data(store_id, member)
    show = viewer is not None and viewer.may(PERSONAL_DATA_READ)
    phone = personal.phone if show else mask_phone(personal.phone)
    return MemberOut(
        member_id=member.member_id, card_id=member.card_id, name=personal.name, phone=phone,
        birthday=personal.birthday, source=member.source,
        registered_at=member.registered_at, tier=member.tier,
        currency=loyalty_.state(store_id).currency, balance_minor=member.balance_minor,
        principal_minor=member.principal_minor, bonus_minor=member.bonus_minor,
        points=member.points, points_lifetime=member.points_lifetime,
    )


def _public_key(loyalty_: Loyalty, store_id: str) -> str:
    import base64

    return base64.b64encode(loyalty_.state(store_id).server_public_key).decode()


@router.put("/{store_id}/member-program", response_model=ProgramIn)
def configure_program(store_id: StoreId, payload: ProgramIn, request: Request, _: Annotated[Principal, allow(MANAGE)]) -> ProgramIn:
    loyalty(request).configure_program(store_id, payload.model_dump())
    return payload


@router.get("/{store_id}/member-program", response_model=ProgramIn)
def get_program(store_id: StoreId, ledger: LedgerDep, _: Annotated[Principal, allow(MEMBERS_READ)]) -> ProgramIn:
    import msgspec

    return ProgramIn.model_validate(msgspec.to_builtins(members_of(ledger.store(store_id)).program))


@router.post("/{store_id}/members", status_code=201, response_model=MemberOut)
def register_member(store_id: StoreId, payload: MemberIn, request: Request, viewer: Annotated[Principal, allow(MEMBERS_WRITE)]) -> MemberOut:
    service = loyalty(request)
    member = service.register_member(store_id, member_id=payload.member_id, name=payload.name,
                                     phone=payload.phone, join_token=payload.join_token,
                                     birthday=payload.birthday.isoformat() if payload.birthday else "")
    return member_out(service, store_id, member, viewer)


@router.get("/{store_id}/members/{member_id}", response_model=MemberOut)
def get_member(store_id: StoreId, member_id: MemberId, request: Request, viewer: Annotated[Principal, allow(MEMBERS_READ)]) -> MemberOut:
    service = loyalty(request)
    return member_out(service, store_id, service.member(store_id, member_id), viewer)


@router.get("/{store_id}/members/{member_id}/card", response_model=TokenOut)
def member_card(store_id: StoreId, member_id: MemberId, request: Request, _: Annotated[Principal, allow(MEMBERS_READ)]) -> TokenOut:
    service = loyalty(request)
    token, expires_at = service.card_token(store_id, service.member(store_id, member_id))
    return TokenOut(token=token, expires_at=expires_at, server_public_key=_public_key(service, store_id),
                    store_tag=store_tag(store_id).hex())


@router.get("/{store_id}/members/{member_id}/card.svg", response_class=Response)
def member_card_svg(store_id: StoreId, member_id: MemberId, request: Request, _: Annotated[Principal, allow(MEMBERS_READ)]) -> Response:
    service = loyalty(request)
    token, _expires = service.card_token(store_id, service.member(store_id, member_id))
    return Response(_core.qr_svg(token), media_type=SVG, headers={"cache-control": "no-store"})


@router.post("/{store_id}/members/card/verify", response_model=MemberOut)
def verify_card(store_id: StoreId, payload: CardVerifyIn, request: Request, viewer: Annotated[Principal, allow(MEMBERS_READ)]) -> MemberOut:
    service = loyalty(request)
    return member_out(service, store_id, service.member_of_card(store_id, payload.token), viewer)


@router.get("/{store_id}/join-qr", response_model=TokenOut)
def join_qr(store_id: StoreId, request: Request, _: Annotated[Principal, allow(MEMBERS_READ)],
            valid_s: Annotated[int, Query(ge=60, le=STORE_TOKEN_TTL_S_MAX)] = 365 * 86_400) -> TokenOut:
    service = loyalty(request)
    token, expires_at = service.join_token(store_id, valid_s)
    return TokenOut(token=token, expires_at=expires_at, server_public_key=_public_key(service, store_id),
                    store_tag=store_tag(store_id).hex())


@router.get("/{store_id}/join-qr.svg", response_class=Response)
def join_qr_svg(store_id: StoreId, request: Request, _: Annotated[Principal, allow(MEMBERS_READ)]) -> Response:
    token, _expires = loyalty(request).join_token(store_id)
    return Response(_core.qr_svg(token), media_type=SVG)


@router.post("/{store_id}/members/{member_id}/recharge", status_code=201, response_model=RechargeOut)
def recharge(store_id: StoreId, member_id: MemberId, payload: RechargeIn, request: Request,
             response: Response, viewer: Annotated[Principal, allow(MEMBERS_WRITE)]) -> RechargeOut:
    service = loyalty(request)
    lot, created = service.recharge(store_id, member_id, recharge_id=payload.recharge_id,
                                    paid_minor=payload.amount_minor, currency=payload.currency,
                                    method=payload.method, till_id=viewer.till(payload.terminal_id))
    if not created:
        response.status_code = 200
    return RechargeOut(recharge_id=lot.recharge_id, paid_minor=lot.paid_minor, bonus_minor=lot.bonus_minor,
                       rule_name=lot.rule_name, created=created,
                       member=member_out(service, store_id, service.member(store_id, member_id), viewer))


@router.post("/{store_id}/members/{member_id}/recharges/{recharge_id}/refund",
             response_model=RechargeRefundOut)
def refund_recharge(store_id: StoreId, member_id: MemberId, recharge_id: RefPath, request: Request,
                    viewer: Annotated[Principal, allow(MEMBERS_WRITE)]) -> RechargeRefundOut:
    service = loyalty(request)
    _lot, principal, bonus = service.refund_recharge(store_id, member_id, recharge_id)
    return RechargeRefundOut(recharge_id=recharge_id, principal_returned_minor=principal,
                             bonus_voided_minor=bonus,
                             member=member_out(service, store_id, service.member(store_id, member_id), viewer))


@router.post("/{store_id}/members/{member_id}/spend", status_code=201, response_model=SpendOut)
def spend(store_id: StoreId, member_id: MemberId, payload: SpendIn, request: Request, response: Response,
          viewer: Annotated[Principal, allow(MEMBERS_WRITE)]) -> SpendOut:
    service = loyalty(request)
    currency = payload.currency or service.state(store_id).currency
    record, created = service.spend(store_id, member_id, spend_id=payload.spend_id or payload.order_ref,
                                    amount_minor=payload.amount_minor, currency=currency,
                                    order_ref=payload.order_ref)
    if not created:
        response.status_code = 200
    return SpendOut(spend_id=record.spend_id, order_ref=record.order_ref, amount_minor=record.amount_minor,
                    principal_minor=sum(p for _, p, _ in record.allocation),
                    bonus_minor=sum(b for _, _, b in record.allocation), created=created,
                    member=member_out(service, store_id, service.member(store_id, member_id), viewer))


@router.post("/{store_id}/members/{member_id}/checkout/confirm", response_model=PointsOut)
def confirm_checkout(store_id: StoreId, member_id: MemberId, payload: CheckoutConfirmIn, request: Request,
                     viewer: Annotated[Principal, allow(MEMBERS_WRITE)]) -> PointsOut:
    service = loyalty(request)
    points, created = service.confirm_checkout(store_id, member_id, order_ref=payload.order_ref,
                                               amount_minor=payload.amount_minor)
    return PointsOut(order_ref=payload.order_ref, points_earned=points, created=created,
                     member=member_out(service, store_id, service.member(store_id, member_id), viewer))


@router.post("/{store_id}/members/{member_id}/points/redeem", status_code=201,
             response_model=PointsRedeemOut)
def redeem_points(store_id: StoreId, member_id: MemberId, payload: PointsRedeemIn, request: Request,
                  response: Response, viewer: Annotated[Principal, allow(MEMBERS_WRITE)]) -> PointsRedeemOut:
    service = loyalty(request)
    redemption_id = payload.redemption_id or f"points:{payload.order_ref}"
    discount, created = service.redeem_points(store_id, member_id, redemption_id=redemption_id,
                                              order_ref=payload.order_ref, points=payload.points)
    if not created:
        response.status_code = 200
    return PointsRedeemOut(redemption_id=redemption_id, points=payload.points, discount_minor=discount,
                           created=created,
                           member=member_out(service, store_id, service.member(store_id, member_id), viewer))


@router.post("/{store_id}/members/{member_id}/orders/{order_ref}/refund", response_model=OrderRefundOut)
def refund_order(store_id: StoreId, member_id: MemberId, order_ref: RefPath, payload: OrderRefundIn,
                 request: Request, viewer: Annotated[Principal, allow(MEMBERS_WRITE)]) -> OrderRefundOut:
    service = loyalty(request)
    summary = service.refund_order(store_id, member_id, order_ref=order_ref, refund_id=payload.refund_id,
                                   refund_minor=payload.amount_minor,
                                   includes_reward_line=payload.includes_reward_line)
    return OrderRefundOut(
        order_ref=order_ref, refund_id=payload.refund_id, created=bool(summary["created"]),
        points_earned_reversed_total=summary["points_earned_reversed_total"],
        points_spent_returned_total=summary["points_spent_returned_total"],
        stored_value_returned_total_minor=summary["stored_value_returned_total_minor"],
        member=member_out(service, store_id, service.member(store_id, member_id), viewer),
    )


_PROBLEM = {"content": {"application/problem+json": {}}}


@router.get("/{store_id}/members", response_model=list[MemberOut],
            responses={401: {"description": "no credential", **_PROBLEM},
                       403: {"description": "lacks members:read", **_PROBLEM},
                       404: {"description": "no such store", **_PROBLEM},
                       422: {"description": "no phone given", **_PROBLEM}})
def find_members(store_id: StoreId, request: Request, viewer: Annotated[Principal, allow(MEMBERS_READ)],
                 phone: Annotated[str, Query(min_length=1, max_length=32)]) -> list[MemberOut]:
    """Members registered with this phone, found by its keyed hash in the log."""
    service = loyalty(request)
    return [member_out(service, store_id, m, viewer) for m in service.members_by_phone(store_id, phone)]


@router.delete("/{store_id}/members/{member_id}/personal-data", status_code=204, response_class=Response,
               responses={401: {"description": "no credential", **_PROBLEM},
                          403: {"description": "not the store's owner", **_PROBLEM},
                          404: {"description": "no such store or member", **_PROBLEM},
                          422: {"description": "a malformed member id", **_PROBLEM}})
def erase_personal_data(store_id: StoreId, member_id: MemberId, request: Request,
                        _: Annotated[Principal, allow(OWN)]) -> Response:
    """Erase the member's name, phone and birthday; the log (ids, keyed hash, money) stays whole."""
    loyalty(request).erase_personal_data(store_id, member_id)
    return Response(status_code=204)
