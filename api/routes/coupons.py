"""Campaigns, coupons (issue, claim by QR, write off by scan) and the best coupon at checkout."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from api.auth import COUPONS_READ, COUPONS_WRITE, MANAGE, Principal, allow
from api.limits import body_limit, problems
from api.routes.members import IdPattern, RefPattern, TokenOut, _public_key, loyalty
from api.routes.stores import StoreId
from pos_ledger import _core
from pos_ledger.catalog.coupons import BasketLine, Campaign, Coupon, coupons_of
from pos_ledger.loyalty import BASKET_LINES_MAX, Applicable, Loyalty, store_tag

router = APIRouter(prefix="/v1/stores", tags=["coupons"])

CampaignId = Annotated[str, Path(pattern=IdPattern)]
#: A coupon's 32-hex id or its signed QR token (what a scanner reads).
CouponCode = Annotated[str, Path(min_length=1, max_length=1000)]
SVG = "image/svg+xml"


class CampaignIn(BaseModel):
    campaign_id: str = Field(pattern=IdPattern)
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["cash_off", "percent_off", "gift_item"]
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    quota_total: int = Field(ge=1, le=10_000_000)
    issue_rule: Literal["manual", "qr_claim", "after_payment"] = "manual"
    threshold_minor: int = Field(default=0, ge=0, le=10**15)
    off_minor: int = Field(default=0, ge=0, le=10**15)
    percent_basis_points: int = Field(default=0, ge=0, le=10_000)
    cap_minor: int | None = Field(default=None, ge=0, le=10**15)
    gift_sku: str | None = Field(default=None, pattern=IdPattern)
    per_member_limit: int | None = Field(default=None, ge=1, le=10_000_000)
    coupon_valid_seconds: int | None = Field(default=None, ge=60, le=10 * 366 * 86_400)
    after_payment_min_minor: int = Field(default=0, ge=0, le=10**15)


class CampaignOut(CampaignIn):
    issued: int
    redeemed: int
    #: A paused campaign issues no coupons (its coupons already out stay redeemable).
    paused: bool = False


class PauseIn(BaseModel):
    reason: str = Field(default="", max_length=200)


class IssueIn(BaseModel):
    member_id: str | None = Field(default=None, pattern=IdPattern)


class ClaimIn(BaseModel):
    claim_token: str = Field(min_length=1, max_length=1000)
    member_id: str = Field(pattern=IdPattern)


class RedemptionOut(BaseModel):
    redemption_id: str
    order_ref: str
    discount_minor: int
    redeemed_at: datetime
    terminal_id: str
    conflict: str


class CouponOut(BaseModel):
    coupon_id: str
    campaign_id: str
    member_id: str | None
    issued_at: datetime
    expires_at: datetime
    source: str
    status: Literal["active", "redeemed", "voided", "expired"]
    #: The signed token its QR encodes; terminals verify it offline with the server key.
    token: str
    redemptions: list[RedemptionOut]


class LineIn(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(ge=1, le=1_000_000)
    unit_price_minor: int = Field(ge=0, le=10**15)


class RedeemIn(BaseModel):
    order_ref: str = Field(pattern=RefPattern)
    #: Idempotency key; defaults to order_ref + coupon id (one write-off per order and coupon).
    redemption_id: str | None = Field(default=None, pattern=RefPattern)
    lines: list[LineIn] | None = Field(default=None, max_length=BASKET_LINES_MAX)
    subtotal_minor: int | None = Field(default=None, ge=0, le=10**15)
    member_id: str | None = Field(default=None, pattern=IdPattern)


class RedeemOut(BaseModel):
    coupon_id: str
    campaign_id: str
    redemption_id: str
    order_ref: str
    discount_minor: int
    currency: str
    created: bool


class VoidIn(BaseModel):
    reason: str = Field(default="", max_length=200)


class BestCouponIn(BaseModel):
    member_id: str = Field(pattern=IdPattern)
    lines: list[LineIn] = Field(min_length=1, max_length=BASKET_LINES_MAX)


class ApplicableOut(BaseModel):
    coupon_id: str
    campaign_id: str
    name: str
    kind: str
    saving_minor: int
    expires_at: datetime
    token: str


class BestCouponOut(BaseModel):
    applicable: list[ApplicableOut]
    best: ApplicableOut | None


def campaign_out(campaign: Campaign) -> CampaignOut:
    import msgspec

    return CampaignOut(**msgspec.structs.asdict(campaign.spec), issued=campaign.issued,
                       redeemed=campaign.redeemed, paused=campaign.paused)


def coupon_out(service: Loyalty, store_id: str, coupon: Coupon) -> CouponOut:
    from pos_ledger.loyalty import utc_now

    status: Literal["active", "redeemed", "voided", "expired"] = "active"
    if coupon.redeemed:
        status = "redeemed"
    elif coupon.voided:
        status = "voided"
    elif utc_now() >= coupon.expires_at:
        status = "expired"
    return CouponOut(
        coupon_id=coupon.coupon_id, campaign_id=coupon.campaign_id, member_id=coupon.member_id,
        issued_at=coupon.issued_at, expires_at=coupon.expires_at, source=coupon.source, status=status,
        token=service.coupon_token(store_id, coupon),
        redemptions=[RedemptionOut(redemption_id=r.redemption_id, order_ref=r.order_ref,
                                   discount_minor=r.discount_minor, redeemed_at=r.redeemed_at,
                                   terminal_id=r.terminal_id, conflict=r.broke)
                     for r in coupon.redemptions],
    )


def _lines(lines: list[LineIn]) -> list[BasketLine]:
    return [BasketLine(line.sku, line.qty, line.unit_price_minor) for line in lines]


@router.post("/{store_id}/campaigns", status_code=201, response_model=CampaignOut)
def create_campaign(store_id: StoreId, payload: CampaignIn, request: Request, _: Annotated[Principal, allow(MANAGE)]) -> CampaignOut:
    spec = payload.model_dump(mode="json")
    return campaign_out(loyalty(request).create_campaign(store_id, spec))


@router.get("/{store_id}/campaigns", response_model=list[CampaignOut])
def list_campaigns(store_id: StoreId, request: Request, _: Annotated[Principal, allow(COUPONS_READ)]) -> list[CampaignOut]:
    feature = coupons_of(loyalty(request).state(store_id))
    return [campaign_out(c) for c in list(feature.campaigns.values())]


@router.get("/{store_id}/campaigns/{campaign_id}", response_model=CampaignOut)
def get_campaign(store_id: StoreId, campaign_id: CampaignId, request: Request, _: Annotated[Principal, allow(COUPONS_READ)]) -> CampaignOut:
    return campaign_out(loyalty(request).campaign(store_id, campaign_id))


_PAUSE_PROBLEMS = problems({401: "No credential", 403: "Needs store:manage for this store",
                            404: "No such store or campaign", 413: "Body over 1 KiB", 422: "Bad input"})


@router.post("/{store_id}/campaigns/{campaign_id}/pause", response_model=CampaignOut,
             dependencies=[body_limit(1024)], responses=_PAUSE_PROBLEMS)
def pause_campaign(store_id: StoreId, campaign_id: CampaignId, payload: PauseIn, request: Request,
                   _: Annotated[Principal, allow(MANAGE)]) -> CampaignOut:
    """Stop issuing (manual, QR claim, after payment) until resumed; a `campaign.paused` event."""
    return campaign_out(loyalty(request).pause_campaign(store_id, campaign_id, payload.reason))


@router.post("/{store_id}/campaigns/{campaign_id}/resume", response_model=CampaignOut,
             dependencies=[body_limit(1024)], responses=_PAUSE_PROBLEMS)
def resume_campaign(store_id: StoreId, campaign_id: CampaignId, request: Request,
                    _: Annotated[Principal, allow(MANAGE)]) -> CampaignOut:
    """Issue again; a `campaign.resumed` event."""
    return campaign_out(loyalty(request).resume_campaign(store_id, campaign_id))


@router.post("/{store_id}/campaigns/{campaign_id}/issue", status_code=201, response_model=CouponOut)
def issue_coupon(store_id: StoreId, campaign_id: CampaignId, payload: IssueIn, request: Request,
                 _: Annotated[Principal, allow(COUPONS_WRITE)]) -> CouponOut:
    service = loyalty(request)
    coupon = service.issue_coupon(store_id, campaign_id, member_id=payload.member_id)
    return coupon_out(service, store_id, coupon)


@router.get("/{store_id}/campaigns/{campaign_id}/claim-qr", response_model=TokenOut)
def claim_qr(store_id: StoreId, campaign_id: CampaignId, request: Request, _: Annotated[Principal, allow(COUPONS_READ)]) -> TokenOut:
    service = loyalty(request)
    token, expires_at = service.claim_token(store_id, campaign_id)
    return TokenOut(token=token, expires_at=expires_at, server_public_key=_public_key(service, store_id),
                    store_tag=store_tag(store_id).hex())


@router.get("/{store_id}/campaigns/{campaign_id}/claim-qr.svg", response_class=Response)
def claim_qr_svg(store_id: StoreId, campaign_id: CampaignId, request: Request, _: Annotated[Principal, allow(COUPONS_READ)]) -> Response:
    token, _expires = loyalty(request).claim_token(store_id, campaign_id)
    return Response(_core.qr_svg(token), media_type=SVG)


@router.post("/{store_id}/coupons/claim", status_code=201, response_model=CouponOut)
def claim_coupon(store_id: StoreId, payload: ClaimIn, request: Request, _: Annotated[Principal, allow(COUPONS_WRITE)]) -> CouponOut:
    service = loyalty(request)
    coupon = service.claim_coupon(store_id, payload.claim_token, payload.member_id)
    return coupon_out(service, store_id, coupon)


@router.get("/{store_id}/members/{member_id}/coupons", response_model=list[CouponOut])
def member_coupons(store_id: StoreId, member_id: Annotated[str, Path(pattern=IdPattern)], request: Request,
                   _: Annotated[Principal, allow(COUPONS_READ)]) -> list[CouponOut]:
    service = loyalty(request)
    service.member(store_id, member_id)
    feature = coupons_of(service.state(store_id))
    return [coupon_out(service, store_id, feature.coupons[c]) for c in feature.by_member.get(member_id, [])]


@router.get("/{store_id}/coupons/{code}", response_model=CouponOut)
def get_coupon(store_id: StoreId, code: CouponCode, request: Request, _: Annotated[Principal, allow(COUPONS_READ)]) -> CouponOut:
    service = loyalty(request)
    return coupon_out(service, store_id, service.coupon(store_id, service.coupon_id_of(store_id, code)))


@router.get("/{store_id}/coupons/{code}/qr.svg", response_class=Response)
def coupon_qr_svg(store_id: StoreId, code: CouponCode, request: Request, _: Annotated[Principal, allow(COUPONS_READ)]) -> Response:
    service = loyalty(request)
    coupon = service.coupon(store_id, service.coupon_id_of(store_id, code))
    return Response(_core.qr_svg(service.coupon_token(store_id, coupon)), media_type=SVG)


@router.post("/{store_id}/coupons/{code}/redeem", status_code=201, response_model=RedeemOut)
def redeem_coupon(store_id: StoreId, code: CouponCode, payload: RedeemIn, request: Request,
                  response: Response, _: Annotated[Principal, allow(COUPONS_WRITE)]) -> RedeemOut:
    service = loyalty(request)
    coupon_id = service.coupon_id_of(store_id, code)
    redemption_id = payload.redemption_id or f"{payload.order_ref}:{coupon_id}"[:100]
    lines = _lines(payload.lines) if payload.lines is not None else None
    coupon, redemption, created = service.redeem_coupon(
        store_id, coupon_id, redemption_id=redemption_id, order_ref=payload.order_ref, lines=lines,
        subtotal_minor=payload.subtotal_minor, member_id=payload.member_id)
    if not created:
        response.status_code = 200
    return RedeemOut(coupon_id=coupon.coupon_id, campaign_id=coupon.campaign_id,
                     redemption_id=redemption.redemption_id, order_ref=redemption.order_ref,
                     discount_minor=redemption.discount_minor, currency=service.state(store_id).currency,
                     created=created)


@router.post("/{store_id}/coupons/{code}/void", response_model=CouponOut)
def void_coupon(store_id: StoreId, code: CouponCode, payload: VoidIn, request: Request,
                _: Annotated[Principal, allow(MANAGE)]) -> CouponOut:
    service = loyalty(request)
    coupon = service.void_coupon(store_id, service.coupon_id_of(store_id, code), payload.reason)
    return coupon_out(service, store_id, coupon)


def applicable_out(service: Loyalty, store_id: str, found: Applicable) -> ApplicableOut:
    spec = found.campaign.spec
    return ApplicableOut(coupon_id=found.coupon.coupon_id, campaign_id=spec.campaign_id, name=spec.name,
                         kind=spec.kind, saving_minor=found.saving_minor, expires_at=found.coupon.expires_at,
                         token=service.coupon_token(store_id, found.coupon))


@router.post("/{store_id}/checkout/best-coupon", response_model=BestCouponOut)
def best_coupon(store_id: StoreId, payload: BestCouponIn, request: Request, _: Annotated[Principal, allow(COUPONS_READ)]) -> BestCouponOut:
    service = loyalty(request)
    found = [applicable_out(service, store_id, a)
             for a in service.best_coupons(store_id, payload.member_id, _lines(payload.lines))]
    return BestCouponOut(applicable=found, best=found[0] if found else None)
