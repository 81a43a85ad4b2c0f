"""Online orders (push, transitions, reads, live stream), the log as a live stream, printers' states."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo

import msgspec
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.auth import EVENTS_READ, MANAGE, ORDERS_READ, ORDERS_WRITE, STORE_READ, Principal, allow
from api.deps import LedgerDep
from api.routes.stores import StoreId
from api.streams import Wakeups, follow, sse_message
from pos_ledger import money
from pos_ledger.catalog.orders import CHANNELS, ORDER_EVENT_TYPES, order_view, orders_of
from pos_ledger.catalog.printers import printers_of
from pos_ledger.errors import InvalidInput, NotFound, PosLedgerError
from pos_ledger.ledger import Ledger, StoredEntry
from pos_ledger.orders.service import ORDERS_LISTED_MAX, Orders

router = APIRouter(prefix="/v1/stores", tags=["orders"])

#: Bytes of a pushed order (200 lines with notes fit many times over) and of a transition.
ORDER_BODY_BYTES_MAX: Final = 256 * 1024
TRANSITION_BODY_BYTES_MAX: Final = 4 * 1024
IdPattern = r"^[A-Za-z0-9_.:-]{1,64}$"
OrderId = Annotated[str, Path(pattern=IdPattern)]
_DECODER: Final = msgspec.json.Decoder()


class BodyTooLarge(PosLedgerError):
    slug = "body-too-large"
    status = 413


class BodyLimit:
    """A route dependency: the request body may hold at most `bytes_max` bytes (413 otherwise)."""

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max

    async def __call__(self, request: Request) -> None:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.bytes_max:
            raise BodyTooLarge(f"this request body may hold at most {self.bytes_max} bytes")
        if len(await request.body()) > self.bytes_max:
            raise BodyTooLarge(f"this request body may hold at most {self.bytes_max} bytes")


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    reason: str | None = None


_PROBLEM_TEXT: Final = {
    401: "No valid credential", 403: "The credential may not do this here", 404: "No such store or order",
    409: "A rule refused it (reason: invalid_transition, channel_order_conflict, payment_not_captured, ...)",
    413: "Body too large", 422: "Invalid input (unknown sku, totals that do not add up, unknown payment, ...)",
    503: "Too many open streams, or the store is contended; retry",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ProblemOut, "description": _PROBLEM_TEXT[status],
                     "content": {"application/problem+json": {}}} for status in statuses}


def orders_service(request: Request) -> Orders:
    service: Orders = request.app.state.orders
    return service


def wakeups_of(request: Request) -> Wakeups:
    wakeups: Wakeups = request.app.state.wakeups
    return wakeups


OrdersDep = Annotated[Orders, Depends(orders_service)]


class OrderLineIn(BaseModel):
    sku: str = Field(pattern=IdPattern)
    qty: int = Field(ge=1, le=1_000_000, strict=True)
    unit_price_minor: int = Field(ge=0, le=money.AMOUNT_MINOR_MAX, strict=True)
    note: str | None = Field(default=None, max_length=500)


class FulfillmentIn(BaseModel):
    type: Literal["dine_in", "pickup", "delivery"]
    table: str | None = Field(default=None, min_length=1, max_length=50)
    pickup_at: datetime | None = None
    address: str | None = Field(default=None, min_length=1, max_length=500)

    @model_validator(mode="after")
    def _delivery_has_address(self) -> FulfillmentIn:
        if self.type == "delivery" and not self.address:
            raise ValueError("a delivery needs its address")
        return self


class OrderIn(BaseModel):
    channel: Literal["mini_program", "official_account", "meituan", "eleme", "douyin", "phone"]
    channel_order_id: str = Field(min_length=1, max_length=100, pattern=r"^[\x21-\x7e]+$")
    lines: list[OrderLineIn] = Field(min_length=1, max_length=200)
    fulfillment: FulfillmentIn
    member_id: str | None = Field(default=None, pattern=IdPattern)
    total_minor: int = Field(ge=0, le=money.AMOUNT_MINOR_MAX, strict=True)
    payment_id: str | None = Field(default=None, pattern=IdPattern)


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


class OrderLineOut(BaseModel):
    sku: str
    name: str
    category: str
    qty: int
    unit_price_minor: int
    note: str | None


class StepOut(BaseModel):
    status: str
    position: int
    at: str
    reason: str | None


class OrderOut(BaseModel):
    order_id: str
    status: str
    reason: str | None
    channel: str
    channel_order_id: str
    currency: str
    lines: list[OrderLineOut]
    fulfillment: dict[str, Any]
    member_id: str | None
    total_minor: int
    payment_id: str | None
    placed_at: str
    accept_by: str
    updated_at: str
    placed_position: int
    cancelled_by: str | None
    refund_id: str | None
    history: list[StepOut]


class OrdersOut(BaseModel):
    orders: list[OrderOut]


class PrinterOut(BaseModel):
    terminal_id: str
    printer: str
    state: str
    station: str
    job_position: int
    copy_number: int = Field(alias="copy")
    detail: str | None
    at: str
    reported_position: int


class PrintersOut(BaseModel):
    printers: list[PrinterOut]


@router.post("/{store_id}/orders", status_code=201, response_model=OrderOut,
             dependencies=[Depends(BodyLimit(ORDER_BODY_BYTES_MAX))],
             responses={200: {"model": OrderOut, "description": "The same push again: the order it placed"},
                        **problems(401, 403, 404, 409, 413, 422)})
def place_order(store_id: StoreId, payload: OrderIn, response: Response, orders: OrdersDep,
                _: Annotated[Principal, allow(ORDERS_WRITE)]) -> dict[str, Any]:
    """An online order from a channel; pushed again with the same body it answers the same order (200)."""
    order, created = orders.place(store_id, payload.model_dump(mode="json", exclude_none=True))
    if not created:
        response.status_code = 200
    return order


@router.get("/{store_id}/orders", response_model=OrdersOut, responses=problems(401, 403, 404, 422))
def list_orders(
    store_id: StoreId, orders: OrdersDep, ledger: LedgerDep, _: Annotated[Principal, allow(ORDERS_READ)],
    status: Annotated[Literal["placed", "accepted", "rejected", "preparing", "ready", "completed", "cancelled"]
                      | None, Query()] = None,
    placed_from: Annotated[datetime | None, Query(alias="from", description="placed at or after (RFC 3339; without an offset: store time)")] = None,
    placed_to: Annotated[datetime | None, Query(alias="to", description="placed before (RFC 3339; without an offset: store time)")] = None,
    limit: Annotated[int, Query(ge=1, le=ORDERS_LISTED_MAX)] = ORDERS_LISTED_MAX,
) -> dict[str, Any]:
    zone = ZoneInfo(ledger.store(store_id).timezone)
    # A bound without an offset (or a bare date) is the store's local time.
    placed_from, placed_to = (bound.replace(tzinfo=zone) if bound is not None and bound.tzinfo is None else bound
                              for bound in (placed_from, placed_to))
    return {"orders": orders.list(store_id, status=status, placed_from=placed_from, placed_to=placed_to,
                                  limit=limit)}


def _last_event_id(header: str | None, ledger: Ledger, store_id: str) -> int:
    position = ledger.chain(store_id)[1]  # 404 for a store that does not exist
    if header is None or header == "":
        return position
    if not header.isdigit() or len(header) > 18:
        raise InvalidInput("Last-Event-ID must be a log position (a non-negative integer)")
    return int(header)


_SSE_RESPONSES: Final = {200: {"description": "text/event-stream; each message's id is the log position",
                               "content": {"text/event-stream": {}}}, **problems(401, 403, 404, 422, 503)}


def _stream(request: Request, ledger: Ledger, store_id: str, after: int, render: Any) -> StreamingResponse:
    wakeups = wakeups_of(request)
    wakeups.check_room()
    body: AsyncIterator[bytes] = follow(ledger, wakeups, store_id, after, render,
                                        request.app.state.sse_heartbeat_s)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{store_id}/orders/stream", response_class=StreamingResponse, responses=_SSE_RESPONSES)
def stream_orders(store_id: StoreId, request: Request, ledger: LedgerDep,
                  _: Annotated[Principal, allow(ORDERS_READ)],
                  last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    """Server-Sent Events of the store's order events: `data` = {"position", "type", "order"}.

    Without `Last-Event-ID` the stream starts at the current end of the log; with it, right
    after that position (no gap, no duplicate). A comment line is sent every 15 s."""
    after = _last_event_id(last_event_id, ledger, store_id)

    def render(entries: list[StoredEntry]) -> list[bytes]:
        book = orders_of(ledger.store(store_id))
        messages = []
        for entry in entries:
            found = _order_event(entry)
            if found is None:
                continue
            event_type, order_id = found
            order = book.orders.get(order_id)
            if order is not None:
                messages.append(sse_message(entry.position, {"position": entry.position, "type": event_type,
                                                             "order": order_view(order, as_of=entry.position)}))
        return messages

    return _stream(request, ledger, store_id, after, render)


def _order_event(entry: StoredEntry) -> tuple[str, str] | None:
    if entry.terminal_id != "server" or '"type":"order.' not in entry.body:
        return None
    body = _DECODER.decode(entry.body)
    if body.get("type") not in ORDER_EVENT_TYPES:
        return None
    return str(body["type"]), str(body["data"]["order_id"])


@router.get("/{store_id}/events/stream", response_class=StreamingResponse, tags=["events"],
            responses=_SSE_RESPONSES)
def stream_events(store_id: StoreId, request: Request, ledger: LedgerDep,
                  _: Annotated[Principal, allow(EVENTS_READ)],
                  last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    """Server-Sent Events of every entry of the store's log, as `GET /events` reads them:
    `data` = {"position", "terminal_id", "type", "body", "sig", "hash"}; same resume rules."""
    after = _last_event_id(last_event_id, ledger, store_id)

    def render(entries: list[StoredEntry]) -> list[bytes]:
        return [sse_message(e.position, {
            "position": e.position, "terminal_id": e.terminal_id, "type": _DECODER.decode(e.body).get("type"),
            "body": e.body, "sig": base64.b64encode(e.sig).decode(), "hash": e.hash.hex()}) for e in entries]

    return _stream(request, ledger, store_id, after, render)


@router.get("/{store_id}/orders/{order_id}", response_model=OrderOut, responses=problems(401, 403, 404))
def get_order(store_id: StoreId, order_id: OrderId, orders: OrdersDep,
              _: Annotated[Principal, allow(ORDERS_READ)]) -> dict[str, Any]:
    return orders.view(store_id, order_id)


def _by(principal: Principal) -> str:
    return "channel" if principal.kind == "app" else "store"


def _transition_route(verb: str, summary: str) -> None:
    @router.post(f"/{{store_id}}/orders/{{order_id}}/{verb}", response_model=OrderOut, summary=summary,
                 name=f"{verb}_order", dependencies=[Depends(BodyLimit(TRANSITION_BODY_BYTES_MAX))],
                 responses=problems(401, 403, 404, 409, 413, 422))
    def transition(store_id: StoreId, order_id: OrderId, orders: OrdersDep,
                   principal: Annotated[Principal, allow(ORDERS_WRITE)],
                   payload: Annotated[TransitionIn | None, Body()] = None) -> dict[str, Any]:
        reason = payload.reason if payload is not None else ""
        return orders.transition(store_id, order_id, verb, reason, by=_by(principal))


for _verb, _summary in (("accept", "Accept a placed order"), ("reject", "Reject a placed order (reason)"),
                        ("start", "Start preparing an accepted order"), ("ready", "Mark an order ready"),
                        ("complete", "Complete a ready order (a paid one becomes a sale)"),
                        ("cancel", "Cancel an order before completion (a paid one is refunded)")):
    _transition_route(_verb, _summary)


@router.get("/{store_id}/printers", response_model=PrintersOut, tags=["printers"],
            responses=problems(401, 403, 404))
def list_printers(store_id: StoreId, ledger: LedgerDep, _: Annotated[Principal, allow(STORE_READ)]) -> dict[str, Any]:
    """Each printer's last reported state (`print.completed` / `print.failed` of the bridges)."""
    book = printers_of(ledger.store(store_id)).printers
    return {"printers": [
        {"terminal_id": p.terminal_id, "printer": p.printer, "state": p.state, "station": p.station,
         "job_position": p.job_position, "copy": p.copy, "detail": p.detail or None, "at": p.at.isoformat(),
         "reported_position": p.reported_position}
        for p in sorted(list(book.values()), key=lambda p: (p.terminal_id, p.printer))]}


class ReprintIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    position: int = Field(ge=1, le=2**62, strict=True)
    station: str | None = Field(default=None, pattern=r"^(receipt|kitchen(:\S{1,100})?|report:[xz]:\S{1,100})$")


class ReprintOut(BaseModel):
    terminal_id: str
    position: int
    station: str | None
    requested_position: int


@router.post("/{store_id}/printers/{terminal_id}/reprints", status_code=202, response_model=ReprintOut,
             tags=["printers"], dependencies=[Depends(BodyLimit(TRANSITION_BODY_BYTES_MAX))],
             responses=problems(401, 403, 404, 409, 413, 422))
def request_reprint(store_id: StoreId, terminal_id: Annotated[str, Path(pattern=IdPattern)], payload: ReprintIn,
                    ledger: LedgerDep, _: Annotated[Principal, allow(MANAGE)]) -> dict[str, Any]:
    """The back office's reprint button: the bridge of `terminal_id` prints the job(s) of `position`
    again, marked "REPRINT n" (202: the bridge acts when it reads the request from the log)."""
    ledger.store(store_id)
    [result] = ledger.append_server_events(store_id, [("print.reprint_requested", {
        "terminal_id": terminal_id, "position": payload.position, "station": payload.station})])
    return {"terminal_id": terminal_id, "position": payload.position, "station": payload.station,
            "requested_position": result.position}


class ReceiptProofOut(BaseModel):
    store_id: str
    position: int
    terminal_id: str
    type: str
    body: str
    sig: str
    hash: str
    previous_hash: str
    chain_length: int


@router.get("/{store_id}/receipts/{position}", response_model=ReceiptProofOut, tags=["receipts"],
            responses=problems(404, 422))
def verify_receipt(store_id: StoreId, position: Annotated[int, Path(ge=1, le=2**62)], ledger: LedgerDep,
                   hash: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$", description="the entry's chain hash")]) -> dict[str, Any]:
    """What a receipt's QR code opens: the entry at `position`, if its chain hash is `hash`.

    No credential: the 32-byte hash printed on the receipt is the token. Anyone can check that
    SHA-256(previous_hash || body || sig) is `hash` and that `sig` verifies with the terminal's key."""
    try:
        ledger.store(store_id)
    except NotFound:
        raise NotFound("no such receipt in this store's chain") from None
    entries = ledger.read_entries(store_id, position - 1, 1)
    if not entries or entries[0].position != position or entries[0].hash.hex() != hash:
        raise NotFound("no such receipt in this store's chain")
    entry = entries[0]
    previous = ledger.read_entries(store_id, position - 2, 1)[0].hash.hex() if position > 1 else "00" * 32
    return {"store_id": store_id, "position": position, "terminal_id": entry.terminal_id,
            "type": str(_DECODER.decode(entry.body).get("type")), "body": entry.body,
            "sig": base64.b64encode(entry.sig).decode(), "hash": hash, "previous_hash": previous,
            "chain_length": ledger.chain(store_id)[1]}


__all__ = ["CHANNELS", "router"]
