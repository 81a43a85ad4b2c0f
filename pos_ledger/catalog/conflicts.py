"""Conflicts: an offline fact broke a rule; the log records it, never hides it.

A terminal that was offline already did the sale: the same coupon redeemed at
two tills, a balance spent twice. When it syncs, the fact is accepted as it
happened and the rule it broke becomes a `conflict.detected` event, appended by
the server in the same transaction right after the fact (`react`). The conflict
carries its own *compensating postings* (for example a receivable from the
member for the part of a spend that the balance did not cover), so the books
stay balanced and every stored-value or points liability stays >= 0. Open
conflicts are the back-office alert list; `conflict.resolved` closes one, with
optional postings of its own (a write-off, a recovered amount).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import msgspec

from pos_ledger.events import (
    CurrencyCode,
    EntryMeta,
    EventRejected,
    EventType,
    Identifier,
    Posting,
    register,
)
from pos_ledger.state import StoreState

POSTINGS_MAX: Final = 20
CONFLICTS_MAX: Final = 1_000_000
Account = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
SignedAmount = Annotated[int, msgspec.Meta(ge=-(10**15), le=10**15)]
Note = Annotated[str, msgspec.Meta(max_length=500)]


class PostingIn(msgspec.Struct, frozen=True, array_like=True):
    account: Account
    currency: CurrencyCode
    amount_minor: SignedAmount


class ConflictDetected(msgspec.Struct, frozen=True):
    conflict_id: Identifier
    #: Stable kind: coupon_double_redemption, coupon_redeemed_when_void,
    #: coupon_redeemed_expired, stored_value_overdrawn, points_overdrawn.
    kind: Identifier
    #: Position and terminal of the fact that broke the rule.
    fact_position: int
    fact_terminal_id: Identifier
    detail: Note = ""
    member_id: Identifier | None = None
    coupon_id: Identifier | None = None
    amount_minor: int = 0
    currency: str = ""
    compensating_postings: Annotated[list[PostingIn], msgspec.Meta(max_length=POSTINGS_MAX)] = []


class ConflictResolved(msgspec.Struct, frozen=True):
    conflict_id: Identifier
    note: Note = ""
    postings: Annotated[list[PostingIn], msgspec.Meta(max_length=POSTINGS_MAX)] = []


@dataclass(slots=True)
class Conflict:
    conflict_id: str
    kind: str
    fact_position: int
    fact_terminal_id: str
    detail: str
    member_id: str | None
    coupon_id: str | None
    amount_minor: int
    currency: str
    compensating_postings: list[Posting]
    detected_position: int
    detected_at: str
    resolved: bool = False
    resolution_note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def conflicts_of(state: StoreState) -> dict[str, Conflict]:
    return state.feature("conflicts", dict[str, Conflict])


def _postings(items: list[PostingIn]) -> list[Posting]:
    return [(p.account, p.currency, p.amount_minor) for p in items]


def _decide_detected(data: ConflictDetected, state: StoreState, terminal_id: str) -> list[Posting]:
    conflicts = conflicts_of(state)
    if data.conflict_id in conflicts:
        raise EventRejected("conflict_exists", f"conflict {data.conflict_id!r} is already recorded")
    if len(conflicts) >= CONFLICTS_MAX:
        raise EventRejected("conflicts_full", f"at most {CONFLICTS_MAX} conflicts per store")
    return _postings(data.compensating_postings)


def _evolve_detected(data: ConflictDetected, state: StoreState, meta: EntryMeta) -> None:
    conflicts_of(state)[data.conflict_id] = Conflict(
        data.conflict_id, data.kind, data.fact_position, data.fact_terminal_id, data.detail,
        data.member_id, data.coupon_id, data.amount_minor, data.currency,
        _postings(data.compensating_postings), meta.position, meta.at.isoformat(),
    )


def _decide_resolved(data: ConflictResolved, state: StoreState, terminal_id: str) -> list[Posting]:
    conflict = conflicts_of(state).get(data.conflict_id)
    if conflict is None:
        raise EventRejected("conflict_unknown", f"no conflict {data.conflict_id!r}")
    if conflict.resolved:
        raise EventRejected("conflict_already_resolved", f"conflict {data.conflict_id!r} is resolved")
    return _postings(data.postings)


def _evolve_resolved(data: ConflictResolved, state: StoreState, meta: EntryMeta) -> None:
    conflict = conflicts_of(state)[data.conflict_id]
    conflict.resolved = True
    conflict.resolution_note = data.note


CONFLICT_DETECTED = register(
    EventType("conflict.detected", ConflictDetected, _decide_detected, _evolve_detected, origin="server")
)
CONFLICT_RESOLVED = register(
    EventType("conflict.resolved", ConflictResolved, _decide_resolved, _evolve_resolved, origin="server")
)
