"""The auditor's reads: signed checkpoints of a store's chain (witnesses to keep outside the server)."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask

from api.auth import AUDIT_READ, Principal, allow
from api.deps import LedgerDep
from api.routes.stores import StoreId
from pos_ledger.anchors import sign_checkpoint
from pos_ledger.catalog.checkpoints import checkpoints_of
from pos_ledger.errors import InvalidInput
from pos_ledger.export import write_export
from pos_ledger.ledger import READ_EVENTS_MAX

router = APIRouter(prefix="/v1/stores", tags=["audit"])

#: Events one download may hold (the CLI `pos-ledger export` has no limit).
EXPORT_DOWNLOAD_EVENTS_MAX: Final = 1_000_000

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


@router.get("/{store_id}/export", response_class=FileResponse, responses={
    **PROBLEMS, 200: {"description": "the export directory as a zip (README: Audit, export format)",
                      "content": {"application/zip": {}}}})
def download_export(
    store_id: StoreId, ledger: LedgerDep, _: Annotated[Principal, allow(AUDIT_READ)],
    from_position: Annotated[int, Query(alias="from", ge=1, le=2**63 - 1)] = 1,
    to_position: Annotated[int | None, Query(alias="to", ge=1, le=2**63 - 1)] = None,
) -> FileResponse:
    """The same export as `pos-ledger export`, zipped: positions `from`..`to` (default 1..head),
    at most 1,000,000 events per download."""
    _, length = ledger.chain(store_id)
    last = length if to_position is None else to_position
    if last - from_position + 1 > EXPORT_DOWNLOAD_EVENTS_MAX:
        raise InvalidInput(f"at most {EXPORT_DOWNLOAD_EVENTS_MAX} events per download: narrow from/to, "
                           "or run `pos-ledger export`")
    work = Path(tempfile.mkdtemp(prefix="pos-ledger-export-"))
    try:
        write_export(ledger, store_id, work / "export", from_position, to_position)
        archive = work / f"{store_id}-{from_position}-{last}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for file in sorted((work / "export").iterdir()):
                zipped.write(file, file.name)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return FileResponse(archive, media_type="application/zip", filename=archive.name,
                        background=BackgroundTask(shutil.rmtree, work, ignore_errors=True))
