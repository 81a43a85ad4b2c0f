"""The auditor's reads: signed checkpoints of a store's chain (witnesses to keep outside the server)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.auth import AUDIT_READ, Principal, allow
from api.deps import LedgerDep
from api.routes.stores import StoreId
from pos_ledger.anchors import sign_checkpoint
from pos_ledger.catalog.checkpoints import checkpoints_of
from pos_ledger.ledger import READ_EVENTS_MAX

router = APIRouter(prefix="/v1/stores", tags=["audit"])

_PROBLEM = {"content": {"application/problem+json": {}}}
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no credential, or a bad one", **_PROBLEM},
    403: {"description": "another store's credential, or one without audit:read", **_PROBLEM},
    404: {"description": "no such store (store-not-found)", **_PROBLEM},
    422: {"description": "invalid query (invalid-input)", **_PROBLEM},
}


class CheckpointOut(BaseModel):
    """The same document `pos-ledger checkpoint` writes; `--witness` reads it."""

    store_id: str
    position: int
    chain_head: str
    at: str
    #: Base64 Ed25519 signature by the server key over the checkpoint's signed text (README "Audit").
    signature: str


class RecordedCheckpointOut(CheckpointOut):
    #: Position of the `checkpoint.recorded` event in the log, why it was recorded, and the shift (Z).
    event_position: int
    reason: str
    shift_id: str | None


@router.get("/{store_id}/checkpoint", response_model=CheckpointOut, responses=PROBLEMS)
def fresh_checkpoint(store_id: StoreId, ledger: LedgerDep,
                     _: Annotated[Principal, allow(AUDIT_READ)]) -> CheckpointOut:
    """A checkpoint of the chain as it stands, signed now (nothing is written to the log)."""
    head, length = ledger.chain(store_id)
    return CheckpointOut(**sign_checkpoint(ledger.server_seed, store_id, length, head).as_dict())


@router.get("/{store_id}/checkpoints", response_model=list[RecordedCheckpointOut], responses=PROBLEMS)
def recorded_checkpoints(
    store_id: StoreId, ledger: LedgerDep, _: Annotated[Principal, allow(AUDIT_READ)],
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="Only checkpoint events after this position.")] = 0,
    limit: Annotated[int, Query(ge=1, le=READ_EVENTS_MAX)] = 100,
) -> list[RecordedCheckpointOut]:
    """The `checkpoint.recorded` events of the log (one per shift close), oldest first, each signed
    as a witness file."""
    found = [c for c in list(checkpoints_of(ledger.store(store_id))) if c.event_position > after][:limit]
    return [RecordedCheckpointOut(
        **sign_checkpoint(ledger.server_seed, store_id, c.position, c.chain_head, c.at).as_dict(),
        event_position=c.event_position, reason=c.reason, shift_id=c.shift_id) for c in found]
