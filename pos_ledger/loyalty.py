"""Loyalty commands: members, stored value, points, campaigns, coupons, conflicts.

Each command loads the store's state, shapes the event data (ids, the bonus
rule, the discount) and asks the ledger to append it; the event type's `decide`
checks the rule again under the store's lock, so a command that lost a race is
refused with a 409 problem and nothing is written. Retrying a command with the
same idempotency key (`recharge_id`, `spend_id`, `redemption_id`, `refund_id`,
`order_ref` for points) answers what was recorded, never applies it twice.

Signed tokens (QR codes, `_core.token_sign`), verifiable offline with the
server's public key. A token carries a 16-byte id and at most 32 payload bytes,
so ids that can be 64 characters long travel as tags (the first bytes of a
SHA-256): the payload always starts with the store's 8-byte tag, so a token of
one store is refused by another.
kind 1 = coupon: id = the coupon id, payload = store tag, expiry = the coupon's.
kind 2 = member card: id = the card id (`member.registered`), payload = store
tag; short-lived (`CARD_TOKEN_TTL_S`) so a screenshot goes stale.
kind 3 = store QR: payload `join` + store tag opens a card (random id);
payload `claim` + store tag claims a coupon of the campaign whose tag is the id.
For coupons the server checks only the signature of a token; whether the coupon
is still valid is decided from the log (expired, void, redeemed), the truth.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from pos_ledger import _core
from pos_ledger.catalog.conflicts import Conflict, conflicts_of
from pos_ledger.catalog.coupons import (
    BasketLine,
    Campaign,
    Coupon,
    Redemption,
    coupons_of,
    issue_problem,
    new_coupon_id,
    saving,
    validity_problem,
)
from pos_ledger.catalog.members import (
    Lot,
    Member,
    Spend,
    best_recharge_rule,
    members_of,
)
from pos_ledger.errors import AlreadyExists, EventRefused, InvalidInput, NotFound, PosLedgerError
from pos_ledger.ledger import Ledger
from pos_ledger.state import StoreState

TOKEN_KIND_COUPON: Final = 1
TOKEN_KIND_MEMBER_CARD: Final = 2
TOKEN_KIND_STORE: Final = 3
CARD_TOKEN_TTL_S: Final = 300
STORE_TOKEN_TTL_S_DEFAULT: Final = 365 * 86_400
STORE_TOKEN_TTL_S_MAX: Final = 10 * 366 * 86_400
BASKET_LINES_MAX: Final = 500
#: Tokens carry expiry as unsigned 32-bit unix seconds (year 2106).
TOKEN_EXPIRES_AT_MAX: Final = 2**32 - 1


class MemberNotFound(NotFound):
    slug = "member-not-found"


class CampaignNotFound(NotFound):
    slug = "campaign-not-found"


class CouponNotFound(NotFound):
    slug = "coupon-not-found"


class ConflictNotFound(NotFound):
    slug = "conflict-not-found"


class TokenInvalid(PosLedgerError):
    """A QR token that does not verify, is expired, or belongs to another store or purpose."""

    slug = "token-invalid"
    status = 400


class IdempotencyKeyReused(AlreadyExists):
    slug = "idempotency-key-reused"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Applicable:
    coupon: Coupon
    campaign: Campaign
    saving_minor: int


class Loyalty:
    """The loyalty commands and reads of one ledger (all stores)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # ---- reads ----

    def state(self, store_id: str) -> StoreState:
        return self.ledger.store(store_id)

    def member(self, store_id: str, member_id: str) -> Member:
        member = members_of(self.state(store_id)).members.get(member_id)
        if member is None:
            raise MemberNotFound(f"no member {member_id!r} in store {store_id!r}")
        return member

    def campaign(self, store_id: str, campaign_id: str) -> Campaign:
        campaign = coupons_of(self.state(store_id)).campaigns.get(campaign_id)
        if campaign is None:
            raise CampaignNotFound(f"no campaign {campaign_id!r} in store {store_id!r}")
        return campaign

    def coupon(self, store_id: str, coupon_id: str) -> Coupon:
        coupon = coupons_of(self.state(store_id)).coupons.get(coupon_id)
        if coupon is None:
            raise CouponNotFound(f"no coupon {coupon_id!r} in store {store_id!r}")
        return coupon

    def conflicts(self, store_id: str, include_resolved: bool = False) -> list[Conflict]:
        found = conflicts_of(self.state(store_id)).values()
        return [c for c in found if include_resolved or not c.resolved]

    # ---- members and the member program ----

    def configure_program(self, store_id: str, program: dict[str, Any]) -> None:
        self.ledger.append_server_events(store_id, [("member_program.configured", program)])

    def register_member(self, store_id: str, *, member_id: str | None, name: str, phone: str,
                        join_token: str | None = None, now: datetime | None = None) -> Member:
        source = "cashier"
        if join_token is not None:
            _, payload = self._verify_store_token(store_id, join_token, now or utc_now())
            if payload != b"join" + store_tag(store_id):
                raise TokenInvalid("this QR is not the store's membership QR")
            source = "qr_join"
        member_id = member_id or f"m{secrets.token_hex(8)}"
        if member_id in members_of(self.state(store_id)).members:
            raise AlreadyExists(f"member {member_id!r} is already registered")
        data = {"member_id": member_id, "card_id": secrets.token_hex(16), "name": name,
                "phone": phone, "source": source}
        self.ledger.append_server_events(store_id, [("member.registered", data)])
        return self.member(store_id, member_id)

    # ---- stored value ----

    def recharge(self, store_id: str, member_id: str, *, recharge_id: str, paid_minor: int,
                 currency: str, method: str, till_id: str | None = None) -> tuple[Lot, bool]:
        """Record a paid recharge with the best bonus rule; (lot, created). Cash goes into
        `till_id`'s drawer (that till's open shift shows it)."""
        member = self.member(store_id, member_id)
        earlier = member.lots.get(recharge_id)
        if earlier is None:
            rule_name, bonus = best_recharge_rule(members_of(self.state(store_id)).program, paid_minor)
            data = {"member_id": member_id, "recharge_id": recharge_id, "currency": currency,
                    "paid_minor": paid_minor, "bonus_minor": bonus, "rule_name": rule_name,
                    "method": method, "till_id": till_id}
            try:
                self.ledger.append_server_events(store_id, [("stored_value.recharged", data)])
                return self.member(store_id, member_id).lots[recharge_id], True
            except EventRefused as refused:
                if refused.reason != "duplicate_recharge":
                    raise
            earlier = self.member(store_id, member_id).lots[recharge_id]
        if (earlier.paid_minor, earlier.method) != (paid_minor, method):
            raise IdempotencyKeyReused(f"recharge_id {recharge_id!r} was used for another recharge")
        return earlier, False

    def refund_recharge(self, store_id: str, member_id: str, recharge_id: str) -> tuple[Lot, int, int]:
        """(lot, principal returned, bonus voided): only the unspent principal goes back."""
        lot = self.member(store_id, member_id).lots.get(recharge_id)
        if lot is None:
            raise NotFound(f"no recharge {recharge_id!r} for member {member_id!r}")
        principal, bonus = lot.principal_minor, lot.bonus_left_minor
        data = {"member_id": member_id, "recharge_id": recharge_id,
                "currency": self.state(store_id).currency,
                "principal_returned_minor": principal, "bonus_voided_minor": bonus}
        self.ledger.append_server_events(store_id, [("stored_value.recharge_refunded", data)])
        return lot, principal, bonus

    def spend(self, store_id: str, member_id: str, *, spend_id: str, amount_minor: int,
              currency: str, order_ref: str) -> tuple[Spend, bool]:
        """Pay from stored value online: 409 (nothing written) if the balance is short."""
        member = self.member(store_id, member_id)
        earlier = member.spends.get(spend_id)
        if earlier is None:
            data = {"member_id": member_id, "spend_id": spend_id, "currency": currency,
                    "amount_minor": amount_minor, "order_ref": order_ref}
            try:
                self.ledger.append_server_events(store_id, [("stored_value.spent", data)])
                return self.member(store_id, member_id).spends[spend_id], True
            except EventRefused as refused:
                if refused.reason != "duplicate_spend":
                    raise
            earlier = self.member(store_id, member_id).spends[spend_id]
        if (earlier.amount_minor, earlier.order_ref) != (amount_minor, order_ref):
            raise IdempotencyKeyReused(f"spend_id {spend_id!r} was used for another spend")
        return earlier, False

    # ---- points ----

    def confirm_checkout(self, store_id: str, member_id: str, *, order_ref: str,
                         amount_minor: int) -> tuple[int, bool]:
        """Earn points for an order, once however often the confirmation is retried."""
        member = self.member(store_id, member_id)
        order = member.orders.get(order_ref)
        if order is None or not order.earned_recorded:
            program = members_of(self.state(store_id)).program
            points = amount_minor // program.earn_minor_per_point
            data = {"member_id": member_id, "order_ref": order_ref, "base_minor": amount_minor,
                    "points": points}
            try:
                self.ledger.append_server_events(store_id, [("points.earned", data)])
                return points, True
            except EventRefused as refused:
                if refused.reason != "points_already_earned":
                    raise
        return self.member(store_id, member_id).orders[order_ref].earned, False

    def redeem_points(self, store_id: str, member_id: str, *, redemption_id: str, order_ref: str,
                      points: int) -> tuple[int, bool]:
        """(discount_minor, created): points for money off an order; 409 if too few points."""
        state = self.state(store_id)
        member = self.member(store_id, member_id)
        discount = points * members_of(state).program.point_value_minor
        earlier = member.redemptions.get(redemption_id)
        if earlier is not None:
            recorded_points, recorded_discount, recorded_order = earlier
            if (recorded_points, recorded_order) != (points, order_ref):
                raise IdempotencyKeyReused(f"redemption_id {redemption_id!r} was used for another redemption")
            return recorded_discount, False
        data = {"member_id": member_id, "redemption_id": redemption_id, "order_ref": order_ref,
                "currency": state.currency, "points": points, "discount_minor": discount}
        self.ledger.append_server_events(store_id, [("points.redeemed", data)])
        return discount, True

    def refund_order(self, store_id: str, member_id: str, *, order_ref: str, refund_id: str,
                     refund_minor: int, includes_reward_line: bool) -> dict[str, int]:
        """A refund of (part of) a member's order: points back out and in, stored value back.

        Reverses the points the order earned (in proportion), returns the points it
        spent (with the reward line) and gives back what the order paid from stored
        value, up to `refund_minor`; each exactly once per `refund_id`.
        """
        member = self.member(store_id, member_id)
        state = self.state(store_id)
        order = member.orders.get(order_ref)
        if order is not None and refund_id in order.refund_ids:
            return self._refund_summary(store_id, member_id, order_ref, refund_id, created=False)
        events: list[tuple[str, dict[str, Any]]] = []
        if order is not None:
            events.append(("points.reversed", {
                "member_id": member_id, "order_ref": order_ref, "refund_id": refund_id,
                "refund_minor": refund_minor, "includes_reward_line": includes_reward_line}))
        left = refund_minor
        seen = False
        for spend in list(member.spends.values()):
            if spend.order_ref != order_ref or left == 0:
                continue
            key = f"{refund_id}:{spend.spend_id}"[:100]
            if key in member.spend_refunds:  # this refund already gave this spend back: a retry
                seen = True
                continue
            give = min(left, spend.amount_minor - spend.shortfall_minor - spend.returned_minor)
            if give > 0:
                events.append(("stored_value.refunded", {
                    "member_id": member_id, "spend_id": spend.spend_id, "refund_id": key,
                    "currency": state.currency, "amount_minor": give}))
                left -= give
        if not events and seen:
            return self._refund_summary(store_id, member_id, order_ref, refund_id, created=False)
        if not events:
            raise NotFound(f"member {member_id!r} has nothing recorded on order {order_ref!r}")
        self.ledger.append_server_events(store_id, events)
        return self._refund_summary(store_id, member_id, order_ref, refund_id, created=True)

    def _refund_summary(self, store_id: str, member_id: str, order_ref: str, refund_id: str,
                        created: bool) -> dict[str, int]:
        member = self.member(store_id, member_id)
        order = member.orders.get(order_ref)
        returned = sum(s.returned_minor for s in list(member.spends.values()) if s.order_ref == order_ref)
        return {
            "created": int(created),
            "points_earned_reversed_total": order.earned_reversed if order else 0,
            "points_spent_returned_total": order.spent_returned if order else 0,
            "stored_value_returned_total_minor": returned,
            "points": member.points,
        }

    # ---- campaigns and coupons ----

    def create_campaign(self, store_id: str, spec: dict[str, Any]) -> Campaign:
        if spec["campaign_id"] in coupons_of(self.state(store_id)).campaigns:
            raise AlreadyExists(f"campaign {spec['campaign_id']!r} exists")
        self.ledger.append_server_events(store_id, [("campaign.created", spec)])
        return self.campaign(store_id, spec["campaign_id"])

    def pause_campaign(self, store_id: str, campaign_id: str, reason: str = "") -> Campaign:
        """Stop issuing the campaign's coupons (those out stay redeemable); pausing twice is a no-op."""
        if not self.campaign(store_id, campaign_id).paused:
            self.ledger.append_server_events(
                store_id, [("campaign.paused", {"campaign_id": campaign_id, "reason": reason})])
        return self.campaign(store_id, campaign_id)

    def resume_campaign(self, store_id: str, campaign_id: str) -> Campaign:
        if self.campaign(store_id, campaign_id).paused:
            self.ledger.append_server_events(store_id, [("campaign.resumed", {"campaign_id": campaign_id})])
        return self.campaign(store_id, campaign_id)

    def issue_coupon(self, store_id: str, campaign_id: str, *, member_id: str | None,
                     source: str = "manual", cause: str = "", now: datetime | None = None) -> Coupon:
        self.campaign(store_id, campaign_id)
        if member_id is not None:
            self.member(store_id, member_id)
        coupon_id = new_coupon_id()
        data: dict[str, Any] = {"coupon_id": coupon_id, "campaign_id": campaign_id,
                                "issued_at": (now or utc_now()).isoformat(), "source": source,
                                "member_id": member_id, "cause": cause}
        self.ledger.append_server_events(store_id, [("coupon.issued", data)])
        return self.coupon(store_id, coupon_id)

    def claim_coupon(self, store_id: str, claim_token: str, member_id: str,
                     now: datetime | None = None) -> Coupon:
        """The customer scanned a campaign's claim QR: issue them one coupon (limits apply)."""
        now = now or utc_now()
        token_id, payload = self._verify_store_token(store_id, claim_token, now)
        if payload != b"claim" + store_tag(store_id):
            raise TokenInvalid("this QR is not a coupon claim QR of this store")
        campaigns = coupons_of(self.state(store_id)).campaigns
        found = [c for c in list(campaigns) if campaign_tag(c) == token_id]
        if not found:
            raise CampaignNotFound("the claim QR names no campaign of this store")
        return self.issue_coupon(store_id, found[0], member_id=member_id, source="qr_claim",
                                 cause="qr_claim", now=now)

    def void_coupon(self, store_id: str, coupon_id: str, reason: str) -> Coupon:
        self.coupon(store_id, coupon_id)
        self.ledger.append_server_events(store_id, [("coupon.voided", {"coupon_id": coupon_id,
                                                                        "reason": reason})])
        return self.coupon(store_id, coupon_id)

    def coupon_id_of(self, store_id: str, code: str) -> str:
        """A coupon's id from its code: the 32-hex id itself, or its signed QR token."""
        if len(code) == 32 and all(ch in "0123456789abcdef" for ch in code):
            return code
        # Signature only (time 0): expiry, void and redemption are decided from the log.
        kind, _, token_id, payload = self._verify(store_id, code, 0)
        if kind != TOKEN_KIND_COUPON or payload != store_tag(store_id):
            raise TokenInvalid("this QR is not a coupon of this store")
        return bytes(token_id).hex()

    def redeem_coupon(self, store_id: str, code: str, *, redemption_id: str, order_ref: str,
                      lines: list[BasketLine] | None, subtotal_minor: int | None,
                      member_id: str | None = None, now: datetime | None = None
                      ) -> tuple[Coupon, Redemption, bool]:
        """Write a coupon off online: 409 if it was redeemed, voided, expired or does not apply."""
        now = now or utc_now()
        state = self.state(store_id)
        coupon = self.coupon(store_id, self.coupon_id_of(store_id, code))
        for redemption in coupon.redemptions:
            if redemption.redemption_id == redemption_id:
                return coupon, redemption, False
        spec = coupons_of(state).campaigns[coupon.campaign_id].spec
        problem = validity_problem(coupon, spec, now)
        if problem:
            raise EventRefused(problem, f"coupon cannot be redeemed: {problem.replace('_', ' ')}")
        if coupon.member_id is not None and member_id is not None and member_id != coupon.member_id:
            raise EventRefused("coupon_not_members", "the coupon belongs to another member")
        basket = lines if lines is not None else [BasketLine("", 1, subtotal_minor or 0)]
        discount = saving(spec, basket)
        if discount <= 0:
            raise EventRefused("coupon_not_applicable", "the basket does not meet the coupon's terms")
        data = {"coupon_id": coupon.coupon_id, "redemption_id": redemption_id, "order_ref": order_ref,
                "currency": state.currency, "discount_minor": discount, "redeemed_at": now.isoformat(),
                "member_id": member_id or coupon.member_id}
        self.ledger.append_server_events(store_id, [("coupon.redeemed", data)])
        coupon = self.coupon(store_id, coupon.coupon_id)
        return coupon, coupon.redemptions[-1], True

    def best_coupons(self, store_id: str, member_id: str, lines: list[BasketLine],
                     now: datetime | None = None) -> list[Applicable]:
        """The member's coupons that apply to the basket now, best first.

        Best = largest saving; ties go to the earliest expiry (use it before it is
        lost), then the coupon id, so the answer is deterministic.
        """
        if len(lines) > BASKET_LINES_MAX:
            raise InvalidInput(f"at most {BASKET_LINES_MAX} basket lines")
        now = now or utc_now()
        self.member(store_id, member_id)
        feature = coupons_of(self.state(store_id))
        found = []
        for coupon_id in feature.by_member.get(member_id, []):
            coupon = feature.coupons[coupon_id]
            campaign = feature.campaigns[coupon.campaign_id]
            if validity_problem(coupon, campaign.spec, now):
                continue
            amount = saving(campaign.spec, lines)
            if amount > 0:
                found.append(Applicable(coupon, campaign, amount))
        found.sort(key=lambda a: (-a.saving_minor, a.coupon.expires_at, a.coupon.coupon_id))
        return found

    def can_issue(self, store_id: str, campaign_id: str, member_id: str | None, now: datetime) -> str:
        reason, _ = issue_problem(coupons_of(self.state(store_id)), campaign_id, member_id, now, "manual")
        return reason

    # ---- conflicts ----

    def resolve_conflict(self, store_id: str, conflict_id: str, note: str,
                         postings: list[tuple[str, str, int]]) -> Conflict:
        if conflict_id not in conflicts_of(self.state(store_id)):
            raise ConflictNotFound(f"no conflict {conflict_id!r}")
        data = {"conflict_id": conflict_id, "note": note, "postings": [list(p) for p in postings]}
        self.ledger.append_server_events(store_id, [("conflict.resolved", data)])
        return conflicts_of(self.state(store_id))[conflict_id]

    # ---- signed tokens ----

    def coupon_token(self, store_id: str, coupon: Coupon) -> str:
        expires_at = min(int(coupon.expires_at.timestamp()), TOKEN_EXPIRES_AT_MAX)
        return str(_core.token_sign(self.ledger.server_seed, TOKEN_KIND_COUPON, expires_at,
                                    bytes.fromhex(coupon.coupon_id), store_tag(store_id)))

    def card_token(self, store_id: str, member: Member, now: datetime | None = None) -> tuple[str, int]:
        expires_at = int((now or utc_now()).timestamp()) + CARD_TOKEN_TTL_S
        token = _core.token_sign(self.ledger.server_seed, TOKEN_KIND_MEMBER_CARD, expires_at,
                                 bytes.fromhex(member.card_id), store_tag(store_id))
        return str(token), expires_at

    def member_of_card(self, store_id: str, token: str, now: datetime | None = None) -> Member:
        """What a terminal does offline with the server key: verify a member card QR."""
        kind, _, token_id, payload = self._verify(store_id, token, int((now or utc_now()).timestamp()))
        if kind != TOKEN_KIND_MEMBER_CARD or payload != store_tag(store_id):
            raise TokenInvalid("this QR is not a member card of this store")
        member_id = members_of(self.state(store_id)).cards.get(token_id.hex())
        if member_id is None:
            raise MemberNotFound("no member holds this card")
        return self.member(store_id, member_id)

    def store_token(self, store_id: str, token_id: bytes, purpose: bytes, expires_at: int) -> str:
        """A store QR: purpose `join` (membership) or `claim` (a coupon of campaign `token_id`)."""
        self.state(store_id)
        token = _core.token_sign(self.ledger.server_seed, TOKEN_KIND_STORE, expires_at, token_id,
                                 purpose + store_tag(store_id))
        return str(token)

    def join_token(self, store_id: str, valid_s: int = STORE_TOKEN_TTL_S_DEFAULT,
                   now: datetime | None = None) -> tuple[str, int]:
        expires_at = int((now or utc_now()).timestamp()) + min(valid_s, STORE_TOKEN_TTL_S_MAX)
        return self.store_token(store_id, secrets.token_bytes(16), b"join", expires_at), expires_at

    def claim_token(self, store_id: str, campaign_id: str) -> tuple[str, int]:
        spec = self.campaign(store_id, campaign_id).spec
        if spec.issue_rule != "qr_claim":
            raise InvalidInput(f"campaign {campaign_id!r} is issued by {spec.issue_rule}, not qr_claim")
        expires_at = min(int(spec.valid_until.timestamp()), TOKEN_EXPIRES_AT_MAX)
        if expires_at <= int(utc_now().timestamp()):
            raise EventRefused("campaign_not_active", f"campaign {campaign_id!r} ended at {spec.valid_until}")
        token = self.store_token(store_id, campaign_tag(campaign_id), b"claim", expires_at)
        return token, expires_at

    def _verify_store_token(self, store_id: str, token: str, now: datetime) -> tuple[bytes, bytes]:
        kind, _, token_id, payload = self._verify(store_id, token, int(now.timestamp()))
        if kind != TOKEN_KIND_STORE:
            raise TokenInvalid("this QR is not a store QR")
        return token_id, payload

    def _verify(self, store_id: str, token: str, now_s: int) -> tuple[int, int, bytes, bytes]:
        public_key = self.state(store_id).server_public_key
        try:
            kind, expires_at, token_id, payload = _core.token_verify(public_key, token, now_s)
        except ValueError as error:  # _core.TokenError subclasses ValueError
            raise TokenInvalid(f"the QR token does not verify: {error}") from None
        return int(kind), int(expires_at), bytes(token_id), bytes(payload)


def store_tag(store_id: str) -> bytes:
    """8 bytes naming the store inside a token's 32-byte payload."""
    return hashlib.sha256(b"pos-ledger/store/" + store_id.encode()).digest()[:8]


def campaign_tag(campaign_id: str) -> bytes:
    """16 bytes naming a campaign as a claim QR's token id."""
    return hashlib.sha256(b"pos-ledger/campaign/" + campaign_id.encode()).digest()[:16]


def basket(lines: list[dict[str, Any]]) -> list[BasketLine]:
    return [msgspec.convert(line, BasketLine) for line in lines]
