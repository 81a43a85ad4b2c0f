"""Shifts and the cash drawer: open with a float, paid in / paid out, X report, close with the Z report."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field, StrictInt

from api.auth import REPORTS_READ, SHIFTS_WRITE, Principal, allow
from api.routes.payments import shifts
from api.routes.stores import StoreId
from pos_ledger import money
from pos_ledger.errors import Conflict, Forbidden, InvalidInput
from pos_ledger.payments.drawer import Shifts
from pos_ledger.values import IDENTIFIER_LENGTH_MAX, IDENTIFIER_PATTERN

router = APIRouter(prefix="/v1/stores", tags=["shifts"])

IdPattern = IDENTIFIER_PATTERN
ShiftId = Annotated[str, Path(pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)]
Report = dict[str, Any]


class ShiftIn(BaseModel):
    float_minor: StrictInt = Field(ge=0, le=money.AMOUNT_MINOR_MAX)
    terminal_id: str | None = Field(default=None, pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)
    shift_id: str | None = Field(default=None, pattern=IdPattern, max_length=IDENTIFIER_LENGTH_MAX)


class CashMovementIn(BaseModel):
    kind: Literal["paid_in", "paid_out"]
    amount_minor: StrictInt = Field(ge=1, le=money.AMOUNT_MINOR_MAX)
    reason: str = Field(default="", max_length=200)


class CloseIn(BaseModel):
    counted_minor: StrictInt = Field(ge=0, le=money.AMOUNT_MINOR_MAX)


def _own_shift(service: Shifts, store_id: str, shift_id: str, cashier: Principal) -> None:
    shift = service.shift(store_id, shift_id)
    if cashier.terminal_id is not None and shift.terminal_id != cashier.terminal_id:
        raise Forbidden(f"shift {shift_id!r} belongs to terminal {shift.terminal_id!r}")


@router.post("/{store_id}/shifts", status_code=201)
def open_shift(store_id: StoreId, payload: ShiftIn, request: Request, cashier: Annotated[Principal, allow(SHIFTS_WRITE)]) -> Report:
    terminal_id = cashier.till(payload.terminal_id)
    if terminal_id is None:
        raise InvalidInput("a shift is a terminal's drawer: sign as the terminal or name terminal_id")
    service = shifts(request)
    shift = service.open(store_id, terminal_id, payload.float_minor, payload.shift_id)
    return service.report(store_id, shift.shift_id)


@router.get("/{store_id}/shifts/{shift_id}")
def get_shift(store_id: StoreId, shift_id: ShiftId, request: Request, cashier: Annotated[Principal, allow(REPORTS_READ)]) -> Report:
    return shifts(request).report(store_id, shift_id)


@router.post("/{store_id}/shifts/{shift_id}/cash-movements", status_code=201)
def move_cash(store_id: StoreId, shift_id: ShiftId, payload: CashMovementIn, request: Request,
              cashier: Annotated[Principal, allow(SHIFTS_WRITE)]) -> Report:
    service = shifts(request)
    _own_shift(service, store_id, shift_id, cashier)
    service.move_cash(store_id, shift_id, payload.kind, payload.amount_minor, payload.reason)
    return service.report(store_id, shift_id)


@router.get("/{store_id}/shifts/{shift_id}/x-report")
def x_report(store_id: StoreId, shift_id: ShiftId, request: Request, cashier: Annotated[Principal, allow(REPORTS_READ)]) -> Report:
    return shifts(request).report(store_id, shift_id)


@router.post("/{store_id}/shifts/{shift_id}/close")
def close_shift(store_id: StoreId, shift_id: ShiftId, payload: CloseIn, request: Request,
                cashier: Annotated[Principal, allow(SHIFTS_WRITE)]) -> Report:
    service = shifts(request)
    _own_shift(service, store_id, shift_id, cashier)
    return service.close(store_id, shift_id, payload.counted_minor)


@router.get("/{store_id}/shifts/{shift_id}/z-report")
def z_report(store_id: StoreId, shift_id: ShiftId, request: Request, cashier: Annotated[Principal, allow(REPORTS_READ)]) -> Report:
    service = shifts(request)
    if service.shift(store_id, shift_id).status != "closed":
        raise Conflict(f"shift {shift_id!r} is still open: close it for its Z report (or read the X report)")
    return service.report(store_id, shift_id)


@router.get("/{store_id}/z-report")
def day_z_report(store_id: StoreId, request: Request, cashier: Annotated[Principal, allow(REPORTS_READ)],
                 day: Annotated[date, Query(description="The store's local day, YYYY-MM-DD")]) -> Report:
    return shifts(request).day_report(store_id, day)
