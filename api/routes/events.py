"""Terminal ingest (the hot path, msgspec only) and reading the log back."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Final

import msgspec
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from api.auth import EVENTS_READ, Principal, allow
from api.deps import LedgerDep
from api.limits import BodyTooLarge
from api.routes.stores import StoreId, TerminalId
from pos_ledger.errors import BatchTooLarge, InvalidInput
from pos_ledger.ledger import BATCH_BYTES_MAX, BATCH_EVENTS_MAX, READ_EVENTS_MAX, SignedEvent
from pos_ledger.values import JSON_DEPTH_MAX

router = APIRouter(prefix="/v1/stores", tags=["events"])


# Unknown members are refused, not skipped: the schema then bounds how deep a batch can nest
# (skipping a member recursed, and 1,000 nested arrays in one was a RecursionError).
class _Item(msgspec.Struct, forbid_unknown_fields=True):
    body: str
    sig: str


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    events: list[_Item]


class _Result(msgspec.Struct):
    id: str | None
    status: str
    reason: str | None
    position: int | None


class _Answer(msgspec.Struct):
    results: list[_Result]
    chain_head: str


_BATCH_DECODER: Final = msgspec.json.Decoder(_Batch)
_ENCODER: Final = msgspec.json.Encoder()


async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > BATCH_BYTES_MAX:
        raise BodyTooLarge(f"a request body may hold at most {BATCH_BYTES_MAX} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BATCH_BYTES_MAX:
            raise BodyTooLarge(f"a request body may hold at most {BATCH_BYTES_MAX} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _signed(item: _Item) -> SignedEvent:
    try:
        body = item.body.encode()
    except UnicodeEncodeError:
        body = b""  # lone surrogates: cannot be the UTF-8 bytes that were signed
    try:
        sig = base64.b64decode(item.sig, validate=True)
    except (binascii.Error, ValueError):
        sig = b""
    return SignedEvent(body, sig)


@router.post("/{store_id}/terminals/{terminal_id}/events")
async def ingest(store_id: StoreId, terminal_id: TerminalId, request: Request) -> Response:
    raw = await _read_limited(request)
    try:
        batch = _BATCH_DECODER.decode(raw)
    except msgspec.DecodeError as error:
        raise InvalidInput(f"the request must be {{\"events\": [{{\"body\", \"sig\"}}]}}: {error}") from None
    except RecursionError:
        raise InvalidInput(f"JSON may nest at most {JSON_DEPTH_MAX} levels") from None
    if len(batch.events) > BATCH_EVENTS_MAX:
        raise BatchTooLarge(f"at most {BATCH_EVENTS_MAX} events per request, got {len(batch.events)}")
    events = [_signed(item) for item in batch.events]
    # Group commit: requests for the store wait on the event loop and are written together.
    results, head = await request.app.state.ingest_queue.ingest(store_id, terminal_id, events)
    answer = _Answer([_Result(r.id, r.status, r.reason, r.position) for r in results], head.hex())
    return Response(_ENCODER.encode(answer), media_type="application/json")


class StoredEventOut(BaseModel):
    position: int
    terminal_id: str
    body: str
    sig: str
    hash: str


@router.get("/{store_id}/events", response_model=list[StoredEventOut])
def read_events(
    store_id: StoreId, _: Annotated[Principal, allow(EVENTS_READ)],
    ledger: LedgerDep,
    response: Response,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=READ_EVENTS_MAX)] = 100,
) -> list[StoredEventOut]:
    """The stored events with position > `after`, in order; `X-Next-After` says where to resume."""
    ledger.store(store_id)
    entries = ledger.read_entries(store_id, after, limit)
    response.headers["X-Next-After"] = str(entries[-1].position if entries else after)
    return [
        StoredEventOut(position=e.position, terminal_id=e.terminal_id, body=e.body,
                       sig=base64.b64encode(e.sig).decode(), hash=e.hash.hex())
        for e in entries
    ]
