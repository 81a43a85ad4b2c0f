"""Campaigns and coupons: issue (manual, QR claim, after a payment), write off once, ever.

Decisions, written down once:

* **Kinds**: `cash_off` ("100 minus 20": `threshold_minor` 10000, `off_minor` 2000,
  never more than the basket), `percent_off` (`percent_basis_points`, rounded
  half-even by `money.percent_of`, at most `cap_minor` when set), `gift_item`
  (one unit of `gift_sku` free, when it is in the basket). The threshold
  applies to the basket subtotal for every kind.
* **Time is data**: a coupon's expiry is `min(campaign.valid_until, issued_at +
  coupon_valid_seconds)`, derived from the events; every rule compares it with
  the time carried by the event being decided (`issued_at`, `redeemed_at`), so
  nothing depends on a background job running.
* **Quota and per-member limit** count issued coupons (voided ones included:
  a voided coupon does not give its place back, so a quota is a hard cap).
* **Redeemed at most once, ever.** Online (`offline = false`, server-decided)
  a second redemption, a void or an expired coupon is refused (409, nothing
  written). A terminal's fact (offline) is accepted, and the rule it broke
  becomes a `conflict.detected` whose compensating postings move the extra
  discount from the campaign's account to `expense:loss:coupon_conflict`, so
  the campaign is never charged twice and nothing is lost silently. A retried
  redemption (same `redemption_id`) is a duplicate, not a second redemption.
* **Postings**: the sale already booked its discount in `contra:discount:manual`;
  `coupon.redeemed` reclassifies it to `contra:discount:coupon:{campaign}`.
  Issuing a coupon posts nothing (it is a promise, not money).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal
from uuid import uuid4

import msgspec

from pos_ledger import money
from pos_ledger.catalog import sales
from pos_ledger.catalog.members import conflict_event, members_of
from pos_ledger.catalog.sales import DISCOUNT_ACCOUNT
from pos_ledger.events import (
    SERVER_TERMINAL_ID,
    Amount,
    CurrencyCode,
    EntryMeta,
    EventRejected,
    EventType,
    Identifier,
    Posting,
    ShortText,
    register,
    require_currency,
)
from pos_ledger.state import StoreState

CAMPAIGNS_MAX: Final = 10_000
COUPONS_MAX: Final = 10_000_000
#: The last instant a signed token can express (unsigned 32-bit unix seconds).
VALID_UNTIL_MAX_S: Final = 2**32 - 1
QUOTA_MAX: Final = 10_000_000
CONFLICT_LOSS_ACCOUNT: Final = "expense:loss:coupon_conflict"
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
CouponId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
RefKey = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/-]+$")]
CampaignKind = Literal["cash_off", "percent_off", "gift_item"]
IssueRule = Literal["manual", "qr_claim", "after_payment"]
IssueSource = Literal["manual", "qr_claim", "after_payment"]


def coupon_discount_account(campaign_id: str) -> str:
    return f"contra:discount:coupon:{campaign_id}"


def new_coupon_id() -> str:
    return uuid4().hex


class CampaignCreated(msgspec.Struct, frozen=True):
    campaign_id: Identifier
    name: ShortText
    kind: CampaignKind
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    quota_total: Annotated[int, msgspec.Meta(ge=1, le=QUOTA_MAX)]
    issue_rule: IssueRule = "manual"
    threshold_minor: Amount = 0
    off_minor: Amount = 0
    percent_basis_points: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0
    cap_minor: Amount | None = None
    gift_sku: Identifier | None = None
    per_member_limit: Annotated[int, msgspec.Meta(ge=1, le=QUOTA_MAX)] | None = None
    #: A coupon's own lifetime from its issue; None = until the campaign ends.
    coupon_valid_seconds: Annotated[int, msgspec.Meta(ge=60, le=10 * 366 * 86_400)] | None = None
    #: For issue_rule after_payment: a sale of at least this total issues one coupon.
    after_payment_min_minor: Amount = 0


class CouponIssued(msgspec.Struct, frozen=True):
    coupon_id: CouponId
    campaign_id: Identifier
    issued_at: AwareDatetime
    source: IssueSource = "manual"
    member_id: Identifier | None = None
    #: What caused it (an order id for after_payment, a claim for qr_claim), for audit.
    cause: Annotated[str, msgspec.Meta(max_length=100)] = ""


class CouponRedeemed(msgspec.Struct, frozen=True):
    coupon_id: CouponId
    redemption_id: RefKey
    order_ref: RefKey
    currency: CurrencyCode
    discount_minor: Amount
    redeemed_at: AwareDatetime
    member_id: Identifier | None = None
    #: A fact that already happened at a terminal: recorded even if it breaks a rule.
    offline: bool = False


class CouponVoided(msgspec.Struct, frozen=True):
    coupon_id: CouponId
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class CampaignPaused(msgspec.Struct, frozen=True):
    """No coupon of the campaign is issued until it resumes; coupons already out stay redeemable."""

    campaign_id: Identifier
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


class CampaignResumed(msgspec.Struct, frozen=True):
    campaign_id: Identifier


@dataclass(slots=True)
class Campaign:
    spec: CampaignCreated
    issued: int = 0
    redeemed: int = 0
    paused: bool = False
    issued_per_member: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Redemption:
    redemption_id: str
    order_ref: str
    discount_minor: int
    redeemed_at: datetime
    terminal_id: str
    position: int
    #: "" for the one valid redemption, else the conflict kind it raised.
    broke: str = ""


@dataclass(slots=True)
class Coupon:
    coupon_id: str
    campaign_id: str
    member_id: str | None
    issued_at: datetime
    expires_at: datetime
    source: str
    voided: bool = False
    redemptions: list[Redemption] = field(default_factory=list)

    @property
    def redeemed(self) -> bool:
        return any(not r.broke for r in self.redemptions)


@dataclass(slots=True)
class CouponsFeature:
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    coupons: dict[str, Coupon] = field(default_factory=dict)
    by_member: dict[str, list[str]] = field(default_factory=dict)
    redemption_ids: set[str] = field(default_factory=set)


def coupons_of(state: StoreState) -> CouponsFeature:
    return state.feature("coupons", CouponsFeature)


def expiry(spec: CampaignCreated, issued_at: datetime) -> datetime:
    if spec.coupon_valid_seconds is None:
        return spec.valid_until
    return min(spec.valid_until, issued_at + timedelta(seconds=spec.coupon_valid_seconds))


class BasketLine(msgspec.Struct, frozen=True):
    sku: str
    qty: int
    unit_price_minor: int


def saving(spec: CampaignCreated, lines: list[BasketLine]) -> int:
    """What the coupon takes off this basket; 0 = not applicable."""
    subtotal = sum(line.qty * line.unit_price_minor for line in lines)
    if subtotal <= 0 or subtotal < spec.threshold_minor:
        return 0
    if spec.kind == "cash_off":
        return min(spec.off_minor, subtotal)
    if spec.kind == "percent_off":
        off = money.percent_of(subtotal, spec.percent_basis_points)
        return off if spec.cap_minor is None else min(off, spec.cap_minor)
    prices = [line.unit_price_minor for line in lines if line.sku == spec.gift_sku and line.qty > 0]
    return max(prices, default=0)


def validity_problem(coupon: Coupon, spec: CampaignCreated, at: datetime) -> str:
    """Why the coupon cannot be redeemed at `at` ("" = it can)."""
    if coupon.voided:
        return "coupon_voided"
    if coupon.redeemed:
        return "coupon_already_redeemed"
    if at < spec.valid_from:
        return "coupon_not_yet_valid"
    if at >= coupon.expires_at:
        return "coupon_expired"
    return ""


# ---- campaign.created ----


def _decide_campaign(data: CampaignCreated, state: StoreState, terminal_id: str) -> list[Posting]:
    feature = coupons_of(state)
    if data.campaign_id in feature.campaigns:
        raise EventRejected("campaign_exists", f"campaign {data.campaign_id!r} exists")
    if len(feature.campaigns) >= CAMPAIGNS_MAX:
        raise EventRejected("campaigns_full", f"at most {CAMPAIGNS_MAX} campaigns per store")
    if data.valid_from.tzinfo is None or data.valid_until.tzinfo is None:
        raise EventRejected("invalid_data", "validity times need a UTC offset")
    if data.valid_until <= data.valid_from:
        raise EventRejected("invalid_data", "valid_until must be after valid_from")
    if data.valid_from.timestamp() < 0 or data.valid_until.timestamp() > VALID_UNTIL_MAX_S:
        # Coupon QR tokens carry their expiry as unsigned 32-bit unix seconds.
        raise EventRejected("invalid_data", "a campaign runs between 1970 and 2106 (UTC)")
    if data.kind == "cash_off" and data.off_minor <= 0:
        raise EventRejected("invalid_data", "a cash_off campaign needs off_minor > 0")
    if data.kind == "percent_off" and data.percent_basis_points <= 0:
        raise EventRejected("invalid_data", "a percent_off campaign needs percent_basis_points > 0")
    if data.kind == "gift_item" and not data.gift_sku:
        raise EventRejected("invalid_data", "a gift_item campaign needs gift_sku")
    return []


def _evolve_campaign(data: CampaignCreated, state: StoreState, meta: EntryMeta) -> None:
    coupons_of(state).campaigns[data.campaign_id] = Campaign(data)


# ---- coupon.issued ----


def issue_problem(feature: CouponsFeature, campaign_id: str, member_id: str | None,
                  at: datetime, source: str) -> tuple[str, str]:
    """(reason, detail) why a coupon cannot be issued now; ("", "") when it can."""
    campaign = feature.campaigns.get(campaign_id)
    if campaign is None:
        return "campaign_unknown", f"no campaign {campaign_id!r}"
    spec = campaign.spec
    if source != "manual" and source != spec.issue_rule:
        return "issue_rule_mismatch", f"campaign {campaign_id!r} issues by {spec.issue_rule}, not {source}"
    if campaign.paused:
        return "campaign_paused", f"campaign {campaign_id!r} is paused"
    if not spec.valid_from <= at < spec.valid_until:
        return "campaign_not_active", f"campaign {campaign_id!r} runs {spec.valid_from} to {spec.valid_until}"
    if campaign.issued >= spec.quota_total:
        return "quota_exhausted", f"campaign {campaign_id!r} issued all {spec.quota_total} coupons"
    if member_id is not None and spec.per_member_limit is not None:
        if campaign.issued_per_member.get(member_id, 0) >= spec.per_member_limit:
            return "member_limit_reached", f"at most {spec.per_member_limit} per member"
    if member_id is None and spec.per_member_limit is not None and source == "qr_claim":
        return "member_required", "a claim with a per-member limit needs a member"
    if len(feature.coupons) >= COUPONS_MAX:
        return "coupons_full", f"at most {COUPONS_MAX} coupons per store"
    return "", ""


def _decide_issued(data: CouponIssued, state: StoreState, terminal_id: str) -> list[Posting]:
    feature = coupons_of(state)
    if data.coupon_id in feature.coupons:
        raise EventRejected("coupon_exists", "that coupon id is taken")
    if data.member_id is not None and data.member_id not in members_of(state).members:
        raise EventRejected("member_unknown", f"no member {data.member_id!r}")
    reason, detail = issue_problem(feature, data.campaign_id, data.member_id, data.issued_at, data.source)
    if reason:
        raise EventRejected(reason, detail)
    return []


def _evolve_issued(data: CouponIssued, state: StoreState, meta: EntryMeta) -> None:
    feature = coupons_of(state)
    campaign = feature.campaigns[data.campaign_id]
    campaign.issued += 1
    if data.member_id is not None:
        campaign.issued_per_member[data.member_id] = campaign.issued_per_member.get(data.member_id, 0) + 1
        feature.by_member.setdefault(data.member_id, []).append(data.coupon_id)
    feature.coupons[data.coupon_id] = Coupon(
        data.coupon_id, data.campaign_id, data.member_id, data.issued_at,
        expiry(campaign.spec, data.issued_at), data.source,
    )


# ---- coupon.redeemed ----


def _decide_redeemed(data: CouponRedeemed, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    feature = coupons_of(state)
    coupon = feature.coupons.get(data.coupon_id)
    if coupon is None:
        raise EventRejected("coupon_unknown", "no such coupon in this store")
    if data.redemption_id in feature.redemption_ids:
        raise EventRejected("duplicate_redemption", f"redemption {data.redemption_id!r} is recorded")
    if data.redeemed_at.tzinfo is None:
        raise EventRejected("invalid_data", "redeemed_at needs a UTC offset")
    fact = data.offline or terminal_id != SERVER_TERMINAL_ID
    problem = validity_problem(coupon, feature.campaigns[coupon.campaign_id].spec, data.redeemed_at)
    if problem and not fact:
        raise EventRejected(problem, f"coupon cannot be redeemed: {problem.replace('_', ' ')}")
    if not data.discount_minor:
        return []
    return [(coupon_discount_account(coupon.campaign_id), data.currency, data.discount_minor),
            (DISCOUNT_ACCOUNT, data.currency, -data.discount_minor)]


def _evolve_redeemed(data: CouponRedeemed, state: StoreState, meta: EntryMeta) -> None:
    feature = coupons_of(state)
    coupon = feature.coupons[data.coupon_id]
    campaign = feature.campaigns[coupon.campaign_id]
    broke = validity_problem(coupon, campaign.spec, data.redeemed_at)
    coupon.redemptions.append(Redemption(data.redemption_id, data.order_ref, data.discount_minor,
                                         data.redeemed_at, meta.terminal_id, meta.position, broke))
    feature.redemption_ids.add(data.redemption_id)
    if not broke:
        campaign.redeemed += 1


_CONFLICT_KINDS: Final = {
    "coupon_already_redeemed": "coupon_double_redemption",
    "coupon_voided": "coupon_redeemed_when_void",
    "coupon_expired": "coupon_redeemed_expired",
    "coupon_not_yet_valid": "coupon_redeemed_early",
}


def _react_redeemed(data: CouponRedeemed, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    coupon = coupons_of(state).coupons[data.coupon_id]
    last = coupon.redemptions[-1]
    if not last.broke:
        return []
    d, c = data.discount_minor, data.currency
    compensating: list[Posting] = (
        [(CONFLICT_LOSS_ACCOUNT, c, d), (coupon_discount_account(coupon.campaign_id), c, -d)] if d else []
    )
    return [conflict_event(
        _CONFLICT_KINDS[last.broke], meta,
        f"redemption {data.redemption_id} of coupon {data.coupon_id} at {meta.terminal_id}: {last.broke}",
        compensating, coupon_id=data.coupon_id, member_id=data.member_id or coupon.member_id,
        amount_minor=d, currency=c,
    )]


# ---- coupon.voided ----


def _decide_voided(data: CouponVoided, state: StoreState, terminal_id: str) -> list[Posting]:
    coupon = coupons_of(state).coupons.get(data.coupon_id)
    if coupon is None:
        raise EventRejected("coupon_unknown", "no such coupon in this store")
    if coupon.voided:
        raise EventRejected("coupon_voided", "the coupon is already void")
    if coupon.redeemed:
        raise EventRejected("coupon_already_redeemed", "a redeemed coupon cannot be voided")
    return []


def _evolve_voided(data: CouponVoided, state: StoreState, meta: EntryMeta) -> None:
    coupons_of(state).coupons[data.coupon_id].voided = True


# ---- campaign.paused / campaign.resumed ----


def _decide_paused(data: CampaignPaused, state: StoreState, terminal_id: str) -> list[Posting]:
    campaign = coupons_of(state).campaigns.get(data.campaign_id)
    if campaign is None:
        raise EventRejected("campaign_unknown", f"no campaign {data.campaign_id!r}")
    if campaign.paused:
        raise EventRejected("campaign_paused", f"campaign {data.campaign_id!r} is already paused")
    return []


def _evolve_paused(data: CampaignPaused, state: StoreState, meta: EntryMeta) -> None:
    coupons_of(state).campaigns[data.campaign_id].paused = True


def _decide_resumed(data: CampaignResumed, state: StoreState, terminal_id: str) -> list[Posting]:
    campaign = coupons_of(state).campaigns.get(data.campaign_id)
    if campaign is None:
        raise EventRejected("campaign_unknown", f"no campaign {data.campaign_id!r}")
    if not campaign.paused:
        raise EventRejected("campaign_not_paused", f"campaign {data.campaign_id!r} is not paused")
    return []


def _evolve_resumed(data: CampaignResumed, state: StoreState, meta: EntryMeta) -> None:
    coupons_of(state).campaigns[data.campaign_id].paused = False


# ---- after a payment ----


def react_sale(sale: Any, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    """Coupons issued right after a payment of at least X, to the sale's member."""
    if sale.member_id is None or sale.member_id not in members_of(state).members:
        return []
    feature = coupons_of(state)
    follow: list[tuple[str, dict[str, Any]]] = []
    for campaign in feature.campaigns.values():
        spec = campaign.spec
        if spec.issue_rule != "after_payment" or sale.total_minor < spec.after_payment_min_minor:
            continue
        reason, _ = issue_problem(feature, spec.campaign_id, sale.member_id, meta.at, "after_payment")
        if reason:
            continue
        follow.append(("coupon.issued", {
            "coupon_id": new_coupon_id(), "campaign_id": spec.campaign_id,
            "issued_at": meta.at.isoformat(), "source": "after_payment",
            "member_id": sale.member_id, "cause": f"order:{sale.order_id}",
        }))
    return follow


CAMPAIGN_CREATED = register(
    EventType("campaign.created", CampaignCreated, _decide_campaign, _evolve_campaign, origin="server")
)
COUPON_ISSUED = register(
    EventType("coupon.issued", CouponIssued, _decide_issued, _evolve_issued, origin="server")
)
COUPON_REDEEMED = register(
    EventType("coupon.redeemed", CouponRedeemed, _decide_redeemed, _evolve_redeemed, origin="any",
              react=_react_redeemed)
)
COUPON_VOIDED = register(
    EventType("coupon.voided", CouponVoided, _decide_voided, _evolve_voided, origin="server")
)
CAMPAIGN_PAUSED = register(
    EventType("campaign.paused", CampaignPaused, _decide_paused, _evolve_paused, origin="server")
)
CAMPAIGN_RESUMED = register(
    EventType("campaign.resumed", CampaignResumed, _decide_resumed, _evolve_resumed, origin="server")
)

sales.SALE_REACTIONS.append(react_sale)
