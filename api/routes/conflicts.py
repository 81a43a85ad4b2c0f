"""The back-office alert list: conflicts raised by offline facts, and their resolution."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, StrictInt

from api.auth import MANAGE, REPORTS_READ, Principal, allow
from api.routes.members import IdPattern, loyalty
from api.routes.stores import StoreId
from pos_ledger.catalog.conflicts import Conflict
from pos_ledger.errors import InvalidInput
from pos_ledger.values import IDENTIFIER_LENGTH_MAX

router = APIRouter(prefix="/v1/stores", tags=["conflicts"])


class PostingOut(BaseModel):
    account: str
    currency: str
    amount_minor: int


class ConflictOut(BaseModel):
    conflict_id: str
    kind: str
    detail: str
    fact_position: int
    fact_terminal_id: str
    member_id: str | None
    coupon_id: str | None
    amount_minor: int
    currency: str
    compensating_postings: list[PostingOut]
    detected_position: int
    detected_at: str
    resolved: bool
    resolution_note: str


class PostingIn(BaseModel):
    account: str = Field(min_length=1, max_length=200)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    amount_minor: StrictInt = Field(ge=-(10**15), le=10**15)


class ResolveIn(BaseModel):
    note: str = Field(default="", max_length=500)
    #: Optional balanced postings (a write-off of the receivable, money recovered).
    postings: list[PostingIn] = Field(default_factory=list, max_length=20)


def conflict_out(conflict: Conflict) -> ConflictOut:
    return ConflictOut(
        conflict_id=conflict.conflict_id, kind=conflict.kind, detail=conflict.detail,
        fact_position=conflict.fact_position, fact_terminal_id=conflict.fact_terminal_id,
        member_id=conflict.member_id, coupon_id=conflict.coupon_id, amount_minor=conflict.amount_minor,
        currency=conflict.currency,
        compensating_postings=[PostingOut(account=a, currency=c, amount_minor=n)
                               for a, c, n in conflict.compensating_postings],
        detected_position=conflict.detected_position, detected_at=conflict.detected_at,
        resolved=conflict.resolved, resolution_note=conflict.resolution_note,
    )


@router.get("/{store_id}/conflicts", response_model=list[ConflictOut])
def list_conflicts(store_id: StoreId, request: Request, _: Annotated[Principal, allow(REPORTS_READ)],
                   include_resolved: Annotated[bool, Query()] = False) -> list[ConflictOut]:
    return [conflict_out(c) for c in loyalty(request).conflicts(store_id, include_resolved)]


@router.post("/{store_id}/conflicts/{conflict_id}/resolve", response_model=ConflictOut)
def resolve_conflict(store_id: StoreId, conflict_id: Annotated[str, Path(pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)],
                     payload: ResolveIn, request: Request, _: Annotated[Principal, allow(MANAGE)]) -> ConflictOut:
    postings = [(p.account, p.currency, p.amount_minor) for p in payload.postings]
    if any(sum(n for _, c, n in postings if c == cur) for cur in {c for _, c, _ in postings}):
        raise InvalidInput("postings must balance per currency (debits > 0 equal credits < 0)")
    return conflict_out(loyalty(request).resolve_conflict(store_id, conflict_id, payload.note, postings))
