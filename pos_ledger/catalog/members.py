"""Members, stored value (principal and bonus kept apart), points and tiers.

Decisions, written down once:

* **Stored value** is a liability per member, split in two accounts:
  `liability:stored_value:{member}:principal` (what the customer paid) and
  `liability:stored_value:{member}:bonus` (what a recharge rule gave,
  booked against `expense:promotion:recharge_bonus`). Each recharge is a *lot*
  that remembers its own unspent principal and bonus.
* **Spending order**: principal first, then bonus; within each, oldest recharge
  first. The allocation is derived from the state by `allocate` (deterministic,
  so replay gives the same split) and is what the postings debit.
* **Refunding an order paid from stored value** (`stored_value.refunded`) puts
  the money back into the lots the spend took it from, principal first, and
  never more than the spend covered (a shortfall stays a receivable).
* **Refunding a recharge** returns only that lot's unspent principal (credited to
  the tender it came in by) and voids that lot's unspent bonus (back to the
  expense). Once per recharge.
* **Never below zero**: online (`offline = false`, server-decided) a spend or a
  points redemption larger than the balance is refused (409, nothing written).
  A terminal's fact (`offline = true`, or any terminal-originated event) is
  accepted: the balance is used up, and the shortfall becomes a
  `conflict.detected` whose compensating postings move it from the liability
  to `asset:receivable:stored_value:{member}` (or `...:points:{member}`).
* **Points** are not money: they live in the pseudo-currency `PTS` (never mixed
  into a real currency; postings balance per currency). Earned:
  `memo:points:issued` debit / `liability:points:{member}` credit. Redeemed:
  the reverse against `memo:points:redeemed`, and the money value of the
  discount is reclassified in the store currency from the sale's
  `contra:discount:manual` to `contra:discount:points`.
* **Points per order**: earned once per `order_ref` (a retried checkout or sale
  confirmation cannot earn twice). A refund of part of an order reverses
  `floor(earned * refunded_total / base) - already_reversed` points, so partial
  refunds add up to exactly the earned points; the points the order *spent*
  come back once, with the refund that includes the reward line (or the one
  that completes the order's refund).
* **Tiers** move up only, by lifetime points (`member.tier_changed` follows the
  `points.earned` that crossed a threshold).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal
from uuid import uuid4

import msgspec

from pos_ledger.catalog import payments, sales, shifts
from pos_ledger.catalog.sales import DISCOUNT_ACCOUNT, TENDER_ACCOUNTS, cash_account
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

MEMBERS_MAX: Final = 1_000_000
RECHARGE_RULES_MAX: Final = 50
TIERS_MAX: Final = 20
#: Recharges, spends, orders remembered per member (each is an idempotency key).
MEMBER_RECORDS_MAX: Final = 100_000
POINTS_CURRENCY: Final = "PTS"
BASE_TIER: Final = "standard"
POINTS_MAX: Final = 10**15

RefKey = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:/-]+$")]
Points = Annotated[int, msgspec.Meta(ge=0, le=POINTS_MAX)]
BasisPoints = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
RechargeMethod = Literal["cash", "wechat", "alipay", "unionpay", "card"]

STORED_VALUE_CLEARING: Final = "clearing:stored_value"
REVENUE_ACCOUNT: Final = "revenue:sales"
RECHARGE_BONUS_EXPENSE: Final = "expense:promotion:recharge_bonus"
POINTS_DISCOUNT_ACCOUNT: Final = "contra:discount:points"
POINTS_ISSUED_ACCOUNT: Final = "memo:points:issued"
POINTS_REDEEMED_ACCOUNT: Final = "memo:points:redeemed"


def principal_account(member_id: str) -> str:
    return f"liability:stored_value:{member_id}:principal"


def bonus_account(member_id: str) -> str:
    return f"liability:stored_value:{member_id}:bonus"


def points_account(member_id: str) -> str:
    return f"liability:points:{member_id}"


def stored_value_receivable(member_id: str) -> str:
    return f"asset:receivable:stored_value:{member_id}"


def points_receivable(member_id: str) -> str:
    return f"asset:receivable:points:{member_id}"


def tender_account(method: str, terminal_id: str) -> str:
    return cash_account(terminal_id) if method == "cash" else TENDER_ACCOUNTS[method]


# ---- schemas ----


class RechargeRule(msgspec.Struct, frozen=True):
    """'Pay 100, get 20': paid >= paid_minor_min gives bonus_minor + bonus_basis_points of paid."""

    name: ShortText
    paid_minor_min: Amount
    bonus_minor: Amount = 0
    bonus_basis_points: BasisPoints = 0


class TierRule(msgspec.Struct, frozen=True):
    tier: Identifier
    points_lifetime_min: Points


class MemberProgramConfigured(msgspec.Struct, frozen=True):
    recharge_rules: Annotated[list[RechargeRule], msgspec.Meta(max_length=RECHARGE_RULES_MAX)] = []
    tiers: Annotated[list[TierRule], msgspec.Meta(max_length=TIERS_MAX)] = []
    #: One point per this many minor units of an order (100 = one point per yuan).
    earn_minor_per_point: Annotated[int, msgspec.Meta(ge=1, le=10**9)] = 100
    #: Money value of one point when redeemed for a discount.
    point_value_minor: Annotated[int, msgspec.Meta(ge=0, le=10**6)] = 1


class MemberRegistered(msgspec.Struct, frozen=True):
    member_id: Identifier
    #: 32 hex characters: the token id of the member's card QR.
    card_id: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
    #: The old form (and a terminal's offline registration): personal data in the event itself.
    #: The server writes neither: they go to the erasable table (`pos_ledger.personal`).
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    phone: Annotated[str, msgspec.Meta(max_length=32)] = ""
    source: Literal["cashier", "qr_join", "import"] = "cashier"
    #: Keyed hash of the phone (`pos_ledger.personal.phone_hash`), "" for none: finds a member by phone.
    phone_hash: Annotated[str, msgspec.Meta(pattern=r"^([0-9a-f]{64})?$")] = ""


class MemberTierChanged(msgspec.Struct, frozen=True):
    member_id: Identifier
    tier: Identifier
    previous_tier: Identifier


class StoredValueRecharged(msgspec.Struct, frozen=True):
    member_id: Identifier
    recharge_id: RefKey
    currency: CurrencyCode
    paid_minor: Annotated[int, msgspec.Meta(ge=1, le=10**15)]
    bonus_minor: Amount = 0
    #: The recharge rule that gave the bonus ("" = none applied), printed on the receipt.
    rule_name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    method: RechargeMethod = "cash"
    #: The till that took the money (its drawer, for cash). Default: the terminal that
    #: posted the event; a server-decided recharge names the cashier's till here.
    till_id: Identifier | None = None


class StoredValueSpent(msgspec.Struct, frozen=True):
    member_id: Identifier
    spend_id: RefKey
    currency: CurrencyCode
    amount_minor: Annotated[int, msgspec.Meta(ge=1, le=10**15)]
    order_ref: RefKey
    #: A fact that already happened at a terminal: recorded even if it overdraws.
    offline: bool = False
    #: True when a `sale.completed` with a member_balance tender already credited revenue
    #: (it debited `clearing:stored_value`, which this spend settles).
    settles_sale: bool = False


class StoredValueRefunded(msgspec.Struct, frozen=True):
    """Part of a stored-value spend given back to the member's balance (an order refund)."""

    member_id: Identifier
    spend_id: RefKey
    refund_id: RefKey
    currency: CurrencyCode
    amount_minor: Annotated[int, msgspec.Meta(ge=1, le=10**15)]


class StoredValueRechargeRefunded(msgspec.Struct, frozen=True):
    """Refund of one recharge: its unspent principal goes back, its unspent bonus is voided.

    The amounts are stated (for the receipt and the auditor) and must equal the lot's
    unspent amounts when decided, so a refund never races a spend unnoticed.
    """

    member_id: Identifier
    recharge_id: RefKey
    currency: CurrencyCode
    principal_returned_minor: Amount
    bonus_voided_minor: Amount


class PointsEarned(msgspec.Struct, frozen=True):
    member_id: Identifier
    order_ref: RefKey
    base_minor: Amount
    points: Points


class PointsRedeemed(msgspec.Struct, frozen=True):
    member_id: Identifier
    redemption_id: RefKey
    order_ref: RefKey
    currency: CurrencyCode
    points: Annotated[int, msgspec.Meta(ge=1, le=POINTS_MAX)]
    discount_minor: Amount
    offline: bool = False


class PointsReversed(msgspec.Struct, frozen=True):
    """A refund of (part of) an order: reverse what it earned, return what it spent."""

    member_id: Identifier
    order_ref: RefKey
    refund_id: RefKey
    refund_minor: Amount
    includes_reward_line: bool = False


# ---- state ----


@dataclass(slots=True)
class Lot:
    recharge_id: str
    paid_minor: int
    bonus_minor: int
    rule_name: str
    method: str
    terminal_id: str
    principal_minor: int
    bonus_left_minor: int
    refunded: bool = False


@dataclass(slots=True)
class Spend:
    spend_id: str
    order_ref: str
    amount_minor: int
    #: (recharge_id, principal taken, bonus taken)
    allocation: list[tuple[str, int, int]]
    shortfall_minor: int
    returned_minor: int = 0


@dataclass(slots=True)
class OrderPoints:
    order_ref: str
    base_minor: int = 0
    earned: int = 0
    spent: int = 0
    refunded_minor: int = 0
    earned_reversed: int = 0
    spent_returned: int = 0
    earned_recorded: bool = False
    refund_ids: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Member:
    member_id: str
    card_id: str
    name: str
    phone: str
    source: str
    registered_at: str
    tier: str = BASE_TIER
    phone_hash: str = ""
    points: int = 0
    points_lifetime: int = 0
    lots: dict[str, Lot] = field(default_factory=dict)
    spends: dict[str, Spend] = field(default_factory=dict)
    orders: dict[str, OrderPoints] = field(default_factory=dict)
    #: redemption_id -> (points, discount_minor, order_ref) as recorded (a retry is answered from it).
    redemptions: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    spend_refunds: set[str] = field(default_factory=set)
    #: Points the last points debit could not take (read by its conflict reaction).
    points_shortfall: int = 0

    # `list(...)` copies the values in one step under the GIL: an HTTP read summing them
    # while a write to the store adds a lot cannot fail with "dict changed size".
    @property
    def principal_minor(self) -> int:
        return sum(lot.principal_minor for lot in list(self.lots.values()))

    @property
    def bonus_minor(self) -> int:
        return sum(lot.bonus_left_minor for lot in list(self.lots.values()))

    @property
    def balance_minor(self) -> int:
        return self.principal_minor + self.bonus_minor


@dataclass(slots=True)
class MembersFeature:
    members: dict[str, Member] = field(default_factory=dict)
    program: MemberProgramConfigured = field(default_factory=MemberProgramConfigured)
    cards: dict[str, str] = field(default_factory=dict)
    #: order_ref -> the member who earned points on it (to find the order a payment refund touches).
    order_members: dict[str, str] = field(default_factory=dict)
    #: phone_hash -> member ids registered with that phone.
    by_phone_hash: dict[str, list[str]] = field(default_factory=dict)


def members_of(state: StoreState) -> MembersFeature:
    return state.feature("members", MembersFeature)


def member_of(state: StoreState, member_id: str) -> Member:
    member = members_of(state).members.get(member_id)
    if member is None:
        raise EventRejected("member_unknown", f"no member {member_id!r}")
    return member


# ---- rules (pure) ----


def best_recharge_rule(program: MemberProgramConfigured, paid_minor: int) -> tuple[str, int]:
    """(rule name, bonus) of the applicable rule with the largest bonus; ("", 0) if none."""
    best = ("", 0)
    best_key = (0, -1)
    for rule in program.recharge_rules:
        if paid_minor < rule.paid_minor_min:
            continue
        bonus = rule.bonus_minor + (rule.bonus_basis_points * paid_minor) // 10_000
        key = (bonus, rule.paid_minor_min)
        if key > best_key:
            best, best_key = (rule.name, bonus), key
    return best


def allocate(member: Member, amount_minor: int) -> tuple[list[tuple[str, int, int]], int]:
    """Principal first, then bonus, oldest lot first: ([(recharge_id, principal, bonus)], shortfall)."""
    left = amount_minor
    taken: dict[str, list[int]] = {}
    for part in (0, 1):
        for lot in member.lots.values():
            if left == 0:
                break
            available = lot.principal_minor if part == 0 else lot.bonus_left_minor
            take = min(available, left)
            if take:
                taken.setdefault(lot.recharge_id, [0, 0])[part] += take
                left -= take
    return [(rid, p, b) for rid, (p, b) in taken.items()], left


def points_for(program: MemberProgramConfigured, base_minor: int) -> int:
    return base_minor // program.earn_minor_per_point


def tier_for(program: MemberProgramConfigured, points_lifetime: int) -> tuple[int, str]:
    """(rank, tier) reached by lifetime points; rank 0 is the base tier."""
    reached = (0, BASE_TIER)
    ordered = sorted(program.tiers, key=lambda t: t.points_lifetime_min)
    for rank, rule in enumerate(ordered, start=1):
        if points_lifetime >= rule.points_lifetime_min:
            reached = (rank, rule.tier)
    return reached


def tier_rank(program: MemberProgramConfigured, tier: str) -> int:
    ordered = sorted(program.tiers, key=lambda t: t.points_lifetime_min)
    for rank, rule in enumerate(ordered, start=1):
        if rule.tier == tier:
            return rank
    return 0


def reversal(order: OrderPoints, data: PointsReversed) -> tuple[int, int]:
    """(earned points to reverse, spent points to return) for this refund of the order."""
    refunded = min(order.base_minor, order.refunded_minor + data.refund_minor) if order.base_minor else 0
    due = order.earned * refunded // order.base_minor if order.base_minor else 0
    earned_reversed = max(0, due - order.earned_reversed)
    completes = order.base_minor > 0 and refunded >= order.base_minor
    spent_returned = order.spent - order.spent_returned if (data.includes_reward_line or completes) else 0
    return earned_reversed, spent_returned


def _is_fact(offline: bool, terminal_id: str) -> bool:
    return offline or terminal_id != SERVER_TERMINAL_ID


def new_conflict_id() -> str:
    return uuid4().hex


def conflict_event(kind: str, meta: EntryMeta, detail: str, compensating: list[Posting],
                   **refs: Any) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {
        "conflict_id": new_conflict_id(),
        "kind": kind,
        "fact_position": meta.position,
        "fact_terminal_id": meta.terminal_id,
        "detail": detail,
        "compensating_postings": [list(p) for p in compensating],
    }
    data.update({k: v for k, v in refs.items() if v is not None})
    return ("conflict.detected", data)


# ---- member program and registration ----


def _decide_configured(data: MemberProgramConfigured, state: StoreState, terminal_id: str) -> list[Posting]:
    names = [r.name for r in data.recharge_rules]
    tiers = [t.tier for t in data.tiers]
    if len(set(names)) != len(names) or len(set(tiers)) != len(tiers) or BASE_TIER in tiers:
        raise EventRejected("invalid_data", f"rule and tier names must be unique and not {BASE_TIER!r}")
    return []


def _evolve_configured(data: MemberProgramConfigured, state: StoreState, meta: EntryMeta) -> None:
    members_of(state).program = data


def _decide_registered(data: MemberRegistered, state: StoreState, terminal_id: str) -> list[Posting]:
    feature = members_of(state)
    if data.member_id in feature.members:
        raise EventRejected("member_exists", f"member {data.member_id!r} is registered")
    if data.card_id in feature.cards:
        raise EventRejected("card_exists", "that card id is taken")
    if len(feature.members) >= MEMBERS_MAX:
        raise EventRejected("members_full", f"at most {MEMBERS_MAX} members per store")
    return []


def _evolve_registered(data: MemberRegistered, state: StoreState, meta: EntryMeta) -> None:
    feature = members_of(state)
    feature.members[data.member_id] = Member(
        data.member_id, data.card_id, data.name, data.phone, data.source, meta.at.isoformat(),
        phone_hash=data.phone_hash,
    )
    feature.cards[data.card_id] = data.member_id
    if data.phone_hash:
        feature.by_phone_hash.setdefault(data.phone_hash, []).append(data.member_id)


def _decide_tier(data: MemberTierChanged, state: StoreState, terminal_id: str) -> list[Posting]:
    member = member_of(state, data.member_id)
    program = members_of(state).program
    if data.tier != BASE_TIER and tier_rank(program, data.tier) == 0:
        raise EventRejected("tier_unknown", f"no tier {data.tier!r}")
    if member.tier != data.previous_tier:
        raise EventRejected("tier_stale", f"member is {member.tier!r}, not {data.previous_tier!r}")
    return []


def _evolve_tier(data: MemberTierChanged, state: StoreState, meta: EntryMeta) -> None:
    members_of(state).members[data.member_id].tier = data.tier


# ---- stored value ----


def _check_records(member: Member, records: dict[str, Any] | set[str]) -> None:
    if len(records) >= MEMBER_RECORDS_MAX:
        raise EventRejected("member_records_full", f"at most {MEMBER_RECORDS_MAX} per member")


def _decide_recharged(data: StoredValueRecharged, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    member = member_of(state, data.member_id)
    if data.recharge_id in member.lots:
        raise EventRejected("duplicate_recharge", f"recharge {data.recharge_id!r} is recorded")
    _check_records(member, member.lots)
    program = members_of(state).program
    rules = {r.name: r for r in program.recharge_rules}
    if data.rule_name:
        rule = rules.get(data.rule_name)
        expected = (
            rule.bonus_minor + (rule.bonus_basis_points * data.paid_minor) // 10_000
            if rule is not None and data.paid_minor >= rule.paid_minor_min else None
        )
        if expected != data.bonus_minor:
            raise EventRejected("bonus_mismatch", f"rule {data.rule_name!r} does not give {data.bonus_minor}")
    elif data.bonus_minor:
        raise EventRejected("bonus_mismatch", "a bonus needs the rule that gives it")
    if terminal_id != SERVER_TERMINAL_ID and data.till_id not in (None, terminal_id):
        raise EventRejected("invalid_data", "a terminal records recharges into its own till only")
    if data.till_id is not None and data.till_id not in state.terminals:
        raise EventRejected("terminal_unknown", f"no till {data.till_id!r} in this store")
    m, c = data.member_id, data.currency
    postings: list[Posting] = [
        (tender_account(data.method, data.till_id or terminal_id), c, data.paid_minor),
        (principal_account(m), c, -data.paid_minor),
    ]
    if data.bonus_minor:
        postings += [(RECHARGE_BONUS_EXPENSE, c, data.bonus_minor), (bonus_account(m), c, -data.bonus_minor)]
    return postings


def _evolve_recharged(data: StoredValueRecharged, state: StoreState, meta: EntryMeta) -> None:
    member = members_of(state).members[data.member_id]
    member.lots[data.recharge_id] = Lot(
        data.recharge_id, data.paid_minor, data.bonus_minor, data.rule_name, data.method,
        data.till_id or meta.terminal_id, data.paid_minor, data.bonus_minor,
    )
    shifts.record_recharge(state, data.till_id or meta.terminal_id, data.method, data.paid_minor)


def _spend_postings(data: StoredValueSpent, allocation: list[tuple[str, int, int]],
                    shortfall: int) -> list[Posting]:
    m, c = data.member_id, data.currency
    principal = sum(p for _, p, _ in allocation) + shortfall
    bonus = sum(b for _, _, b in allocation)
    postings: list[Posting] = []
    if principal:
        postings.append((principal_account(m), c, principal))
    if bonus:
        postings.append((bonus_account(m), c, bonus))
    credit = STORED_VALUE_CLEARING if data.settles_sale else REVENUE_ACCOUNT
    postings.append((credit, c, -data.amount_minor))
    return postings


def _decide_spent(data: StoredValueSpent, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    member = member_of(state, data.member_id)
    if data.spend_id in member.spends:
        raise EventRejected("duplicate_spend", f"spend {data.spend_id!r} is recorded")
    if data.settles_sale and terminal_id != SERVER_TERMINAL_ID:
        # Only the server's reaction to a sale's member_balance tender clears that sale.
        raise EventRejected("invalid_data", "settles_sale is set by the server for a sale's member_balance tender")
    _check_records(member, member.spends)
    allocation, shortfall = allocate(member, data.amount_minor)
    if shortfall and not _is_fact(data.offline, terminal_id):
        raise EventRejected(
            "insufficient_stored_value",
            f"balance {member.balance_minor} is less than {data.amount_minor}",
        )
    # A fact's shortfall is debited to principal here and moved to a receivable by the
    # conflict that follows in the same transaction, so the liability never ends below zero.
    return _spend_postings(data, allocation, shortfall)


def _evolve_spent(data: StoredValueSpent, state: StoreState, meta: EntryMeta) -> None:
    member = members_of(state).members[data.member_id]
    allocation, shortfall = allocate(member, data.amount_minor)
    for recharge_id, principal, bonus in allocation:
        lot = member.lots[recharge_id]
        lot.principal_minor -= principal
        lot.bonus_left_minor -= bonus
    member.spends[data.spend_id] = Spend(data.spend_id, data.order_ref, data.amount_minor,
                                         allocation, shortfall)


def _react_spent(data: StoredValueSpent, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    spend = members_of(state).members[data.member_id].spends[data.spend_id]
    if not spend.shortfall_minor:
        return []
    m, c, s = data.member_id, data.currency, spend.shortfall_minor
    return [conflict_event(
        "stored_value_overdrawn", meta,
        f"spend {data.spend_id} of {data.amount_minor} exceeded the balance by {s}",
        [(stored_value_receivable(m), c, s), (principal_account(m), c, -s)],
        member_id=m, amount_minor=s, currency=c,
    )]


def _spend_return(spend: Spend, amount_minor: int) -> list[tuple[str, int, int]]:
    """Where a refund of part of a spend goes back: the lots it came from, principal first."""
    already = spend.returned_minor
    left = amount_minor
    back: list[tuple[str, int, int]] = []
    for part in (0, 1):
        for recharge_id, principal, bonus in spend.allocation:
            taken = principal if part == 0 else bonus
            skip = min(already, taken)
            already -= skip
            give = min(taken - skip, left)
            if give:
                back.append((recharge_id, give, 0) if part == 0 else (recharge_id, 0, give))
                left -= give
    return back


def _decide_sv_refunded(data: StoredValueRefunded, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    member = member_of(state, data.member_id)
    spend = member.spends.get(data.spend_id)
    if spend is None:
        raise EventRejected("spend_unknown", f"no spend {data.spend_id!r}")
    if data.refund_id in member.spend_refunds:
        raise EventRejected("duplicate_refund", f"refund {data.refund_id!r} is recorded")
    covered = spend.amount_minor - spend.shortfall_minor
    if spend.returned_minor + data.amount_minor > covered:
        raise EventRejected("refund_exceeds_spend",
                            f"{covered - spend.returned_minor} of spend {data.spend_id!r} is refundable")
    back = _spend_return(spend, data.amount_minor)
    m, c = data.member_id, data.currency
    principal = sum(p for _, p, _ in back)
    bonus = sum(b for _, _, b in back)
    postings: list[Posting] = [(REVENUE_ACCOUNT, c, data.amount_minor)]
    if principal:
        postings.append((principal_account(m), c, -principal))
    if bonus:
        postings.append((bonus_account(m), c, -bonus))
    return postings


def _evolve_sv_refunded(data: StoredValueRefunded, state: StoreState, meta: EntryMeta) -> None:
    member = members_of(state).members[data.member_id]
    spend = member.spends[data.spend_id]
    for recharge_id, principal, bonus in _spend_return(spend, data.amount_minor):
        lot = member.lots[recharge_id]
        lot.principal_minor += principal
        lot.bonus_left_minor += bonus
    spend.returned_minor += data.amount_minor
    member.spend_refunds.add(data.refund_id)


def _decide_recharge_refunded(data: StoredValueRechargeRefunded, state: StoreState,
                              terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    member = member_of(state, data.member_id)
    lot = member.lots.get(data.recharge_id)
    if lot is None:
        raise EventRejected("recharge_unknown", f"no recharge {data.recharge_id!r}")
    if lot.refunded:
        raise EventRejected("recharge_already_refunded", f"recharge {data.recharge_id!r} was refunded")
    if (lot.principal_minor, lot.bonus_left_minor) != (data.principal_returned_minor, data.bonus_voided_minor):
        raise EventRejected("recharge_changed", f"recharge {data.recharge_id!r} has "
                            f"{lot.principal_minor} principal and {lot.bonus_left_minor} bonus unspent")
    if lot.method == "cash" and lot.principal_minor > shifts.drawer_minor(state, lot.terminal_id):
        raise EventRejected("insufficient_cash", f"the principal goes back in cash from till {lot.terminal_id!r}, "
                            f"whose drawer holds {shifts.drawer_minor(state, lot.terminal_id)}")
    m, c = data.member_id, data.currency
    postings: list[Posting] = []
    if lot.principal_minor:
        postings += [(principal_account(m), c, lot.principal_minor),
                     (tender_account(lot.method, lot.terminal_id), c, -lot.principal_minor)]
    if lot.bonus_left_minor:
        postings += [(bonus_account(m), c, lot.bonus_left_minor),
                     (RECHARGE_BONUS_EXPENSE, c, -lot.bonus_left_minor)]
    return postings


def _evolve_recharge_refunded(data: StoredValueRechargeRefunded, state: StoreState, meta: EntryMeta) -> None:
    lot = members_of(state).members[data.member_id].lots[data.recharge_id]
    shifts.record_recharge(state, lot.terminal_id, lot.method, -lot.principal_minor)
    lot.principal_minor = 0
    lot.bonus_left_minor = 0
    lot.refunded = True


# ---- points ----


def _order(member: Member, order_ref: str) -> OrderPoints:
    order = member.orders.get(order_ref)
    if order is None:
        order = member.orders[order_ref] = OrderPoints(order_ref)
    return order


def _decide_earned(data: PointsEarned, state: StoreState, terminal_id: str) -> list[Posting]:
    member = member_of(state, data.member_id)
    order = member.orders.get(data.order_ref)
    if order is not None and order.earned_recorded:
        raise EventRejected("points_already_earned", f"order {data.order_ref!r} already earned points")
    _check_records(member, member.orders)
    if not data.points:
        return []
    return [(POINTS_ISSUED_ACCOUNT, POINTS_CURRENCY, data.points),
            (points_account(data.member_id), POINTS_CURRENCY, -data.points)]


def _evolve_earned(data: PointsEarned, state: StoreState, meta: EntryMeta) -> None:
    member = members_of(state).members[data.member_id]
    order = _order(member, data.order_ref)
    order.earned_recorded = True
    members_of(state).order_members[data.order_ref] = data.member_id
    order.base_minor = data.base_minor
    order.earned = data.points
    member.points += data.points
    member.points_lifetime += data.points


def _react_earned(data: PointsEarned, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    feature = members_of(state)
    member = feature.members[data.member_id]
    rank, tier = tier_for(feature.program, member.points_lifetime)
    if rank > tier_rank(feature.program, member.tier):
        return [("member.tier_changed",
                 {"member_id": member.member_id, "tier": tier, "previous_tier": member.tier})]
    return []


def _decide_points_redeemed(data: PointsRedeemed, state: StoreState, terminal_id: str) -> list[Posting]:
    require_currency(data.currency, state)
    member = member_of(state, data.member_id)
    if data.redemption_id in member.redemptions:
        raise EventRejected("duplicate_redemption", f"redemption {data.redemption_id!r} is recorded")
    _check_records(member, member.redemptions)
    if data.points > member.points and not _is_fact(data.offline, terminal_id):
        raise EventRejected("insufficient_points", f"{member.points} points, not {data.points}")
    postings: list[Posting] = [(points_account(data.member_id), POINTS_CURRENCY, data.points),
                               (POINTS_REDEEMED_ACCOUNT, POINTS_CURRENCY, -data.points)]
    if data.discount_minor:
        postings += [(POINTS_DISCOUNT_ACCOUNT, data.currency, data.discount_minor),
                     (DISCOUNT_ACCOUNT, data.currency, -data.discount_minor)]
    return postings


def _evolve_points_redeemed(data: PointsRedeemed, state: StoreState, meta: EntryMeta) -> None:
    member = members_of(state).members[data.member_id]
    taken = min(data.points, member.points)
    member.points -= taken
    member.points_shortfall = data.points - taken
    member.redemptions[data.redemption_id] = (data.points, data.discount_minor, data.order_ref)
    _order(member, data.order_ref).spent += taken


def _points_conflict(state: StoreState, member_id: str, meta: EntryMeta,
                     what: str) -> list[tuple[str, dict[str, Any]]]:
    """The conflict for the points debit `evolve` could not cover (`points_shortfall`)."""
    shortfall = members_of(state).members[member_id].points_shortfall
    if shortfall <= 0:
        return []
    return [conflict_event(
        "points_overdrawn", meta, f"{what} exceeded the points balance by {shortfall}",
        [(points_receivable(member_id), POINTS_CURRENCY, shortfall),
         (points_account(member_id), POINTS_CURRENCY, -shortfall)],
        member_id=member_id, amount_minor=shortfall, currency=POINTS_CURRENCY,
    )]


def _react_points_redeemed(data: PointsRedeemed, state: StoreState,
                           meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    return _points_conflict(state, data.member_id, meta, f"redemption {data.redemption_id}")


def _decide_reversed(data: PointsReversed, state: StoreState, terminal_id: str) -> list[Posting]:
    member = member_of(state, data.member_id)
    order = member.orders.get(data.order_ref)
    if order is None:
        raise EventRejected("order_unknown", f"member has no points on order {data.order_ref!r}")
    if data.refund_id in order.refund_ids:
        raise EventRejected("duplicate_refund", f"refund {data.refund_id!r} is recorded")
    if order.base_minor and order.refunded_minor + data.refund_minor > order.base_minor:
        raise EventRejected("refund_exceeds_order",
                            f"{order.base_minor - order.refunded_minor} of the order is refundable")
    earned_reversed, spent_returned = reversal(order, data)
    m = data.member_id
    postings: list[Posting] = []
    if earned_reversed:
        postings += [(points_account(m), POINTS_CURRENCY, earned_reversed),
                     (POINTS_ISSUED_ACCOUNT, POINTS_CURRENCY, -earned_reversed)]
    if spent_returned:
        postings += [(POINTS_REDEEMED_ACCOUNT, POINTS_CURRENCY, spent_returned),
                     (points_account(m), POINTS_CURRENCY, -spent_returned)]
    return postings


def _evolve_reversed(data: PointsReversed, state: StoreState, meta: EntryMeta) -> None:
    member = members_of(state).members[data.member_id]
    order = member.orders[data.order_ref]
    earned_reversed, spent_returned = reversal(order, data)
    order.refunded_minor += data.refund_minor
    order.earned_reversed += earned_reversed
    order.spent_returned += spent_returned
    order.refund_ids.add(data.refund_id)
    member.points_lifetime -= earned_reversed
    after = member.points + spent_returned - earned_reversed
    # Points already spent elsewhere cannot be taken back: the shortfall becomes a conflict.
    member.points = max(0, after)
    member.points_shortfall = max(0, -after)


def _react_reversed(data: PointsReversed, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    return _points_conflict(state, data.member_id, meta, f"refund {data.refund_id}")


# ---- sales by members (hooks called from `sale.completed`) ----


def check_sale(sale: Any, state: StoreState) -> None:
    """A member_balance tender needs a registered member on the sale."""
    if any(t.method == "member_balance" for t in sale.tenders):
        if sale.member_id is None:
            raise EventRejected("member_required", "a member_balance tender needs the sale's member_id")
        member_of(state, sale.member_id)


def react_sale(sale: Any, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    """Settle member_balance tenders from stored value (a fact) and earn points, once per order."""
    if sale.member_id is None or sale.member_id not in members_of(state).members:
        return []
    member = members_of(state).members[sale.member_id]
    order_ref = str(sale.order_id)
    follow: list[tuple[str, dict[str, Any]]] = []
    for index, tender in enumerate(sale.tenders):
        spend_id = f"sale:{order_ref}:{index}"
        if tender.method == "member_balance" and tender.amount_minor and spend_id not in member.spends:
            follow.append(("stored_value.spent", {
                "member_id": member.member_id, "spend_id": spend_id, "currency": sale.currency,
                "amount_minor": tender.amount_minor, "order_ref": order_ref,
                "offline": True, "settles_sale": True,
            }))
    order = member.orders.get(order_ref)
    if order is None or not order.earned_recorded:
        program = members_of(state).program
        follow.append(("points.earned", {
            "member_id": member.member_id, "order_ref": order_ref, "base_minor": sale.total_minor,
            "points": points_for(program, sale.total_minor),
        }))
    return follow


def _register(name: str, schema: type[msgspec.Struct], decide: Any, evolve: Any,
              origin: Literal["terminal", "server", "any"], react: Any = None) -> EventType:
    if react is None:
        return register(EventType(name, schema, decide, evolve, origin=origin))
    return register(EventType(name, schema, decide, evolve, origin=origin, react=react))


MEMBER_PROGRAM_CONFIGURED = _register("member_program.configured", MemberProgramConfigured,
                                      _decide_configured, _evolve_configured, "server")
MEMBER_REGISTERED = _register("member.registered", MemberRegistered, _decide_registered,
                              _evolve_registered, "any")
MEMBER_TIER_CHANGED = _register("member.tier_changed", MemberTierChanged, _decide_tier, _evolve_tier,
                                "server")
STORED_VALUE_RECHARGED = _register("stored_value.recharged", StoredValueRecharged, _decide_recharged,
                                   _evolve_recharged, "any")
STORED_VALUE_SPENT = _register("stored_value.spent", StoredValueSpent, _decide_spent, _evolve_spent,
                               "any", _react_spent)
STORED_VALUE_REFUNDED = _register("stored_value.refunded", StoredValueRefunded, _decide_sv_refunded,
                                  _evolve_sv_refunded, "server")
STORED_VALUE_RECHARGE_REFUNDED = _register(
    "stored_value.recharge_refunded", StoredValueRechargeRefunded, _decide_recharge_refunded,
    _evolve_recharge_refunded, "server")
POINTS_EARNED = _register("points.earned", PointsEarned, _decide_earned, _evolve_earned, "server",
                          _react_earned)
POINTS_REDEEMED = _register("points.redeemed", PointsRedeemed, _decide_points_redeemed,
                            _evolve_points_redeemed, "any", _react_points_redeemed)
POINTS_REVERSED = _register("points.reversed", PointsReversed, _decide_reversed, _evolve_reversed,
                            "server", _react_reversed)


def iter_members(state: StoreState) -> Iterator[Member]:
    yield from members_of(state).members.values()


def react_payment_refund(refund: Any, payment: Any, state: StoreState,
                         meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    """A refund at the till of a member's order reverses the points that order earned, in proportion.

    The reversal carries the payment refund's id, so the same refund sent again to the
    members' order-refund endpoint is recognised and not reversed twice.
    """
    order_ref = payment.applied_order_id
    member_id = members_of(state).order_members.get(order_ref or "")
    if order_ref is None or member_id is None:
        return []
    order = members_of(state).members[member_id].orders[order_ref]
    refundable = order.base_minor - order.refunded_minor
    amount = min(refund.amount_minor, refundable)
    if amount <= 0 or refund.refund_id in order.refund_ids:
        return []
    return [("points.reversed", {"member_id": member_id, "order_ref": order_ref,
                                 "refund_id": refund.refund_id, "refund_minor": amount})]


sales.SALE_CHECKS.append(check_sale)
sales.SALE_REACTIONS.append(react_sale)
payments.REFUND_REACTIONS.append(react_payment_refund)
