"""Back-office staff accounts of a store: created by the admin token or the store's owner.

The account (argon2 hash of the password) lives in the staff table; the store's log
gets `staff.added` / `staff.removed` (username and role only), so the audit trail
shows who was given access. A password is never echoed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.auth import OWN, Principal, allow
from api.deps import LedgerDep
from api.limits import body_limit, problems
from api.routes.stores import StoreId
from api.web.session import staff_service
from pos_ledger.catalog.staff import USERNAME_PATTERN
from pos_ledger.staff import PASSWORD_CHARS_MAX, PASSWORD_CHARS_MIN, Account

router = APIRouter(prefix="/v1/stores", tags=["staff"])
#: A staff request is three short fields.
STAFF_BODY_BYTES_MAX: Final = 4 * 1024
Username = Annotated[str, Path(pattern=USERNAME_PATTERN)]


_COMMON: Final = {401: "No credential, or not a valid one",
                  403: "Not the admin token nor the store's owner (or a session without its CSRF token)",
                  404: "No such store"}


class StaffIn(BaseModel):
    model_config = {"extra": "forbid"}
    #: Unique in the store (lower-cased); the login form finds the store from the account.
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=PASSWORD_CHARS_MIN, max_length=PASSWORD_CHARS_MAX)
    role: Literal["owner", "manager", "viewer", "auditor"]


class StaffOut(BaseModel):
    username: str
    store_id: str
    role: str
    created_at: datetime


def staff_out(account: Account) -> StaffOut:
    return StaffOut(username=account.username, store_id=account.store_id, role=account.role,
                    created_at=datetime.fromtimestamp(account.created_at, UTC))


@router.post("/{store_id}/staff", status_code=201, response_model=StaffOut,
             dependencies=[body_limit(STAFF_BODY_BYTES_MAX)],
             responses=problems({**_COMMON, 409: "The store has a staff member of that username",
                                 413: "Body over 4 KiB", 422: "Bad username, password (8-1024 characters) "
                                 "or role"}))
async def add_staff(store_id: StoreId, payload: StaffIn, request: Request, ledger: LedgerDep,
                    _: Annotated[Principal, allow(OWN)]) -> StaffOut:
    """Give a person access to the store's back office; appends `staff.added` (no password) to the log."""
    await run_in_threadpool(ledger.store, store_id)
    account = await run_in_threadpool(staff_service(request).add, store_id, payload.username,
                                      payload.password, payload.role)
    return staff_out(account)


@router.get("/{store_id}/staff", response_model=list[StaffOut], responses=problems(_COMMON))
async def list_staff(store_id: StoreId, request: Request, ledger: LedgerDep,
                     _: Annotated[Principal, allow(OWN)]) -> list[StaffOut]:
    await run_in_threadpool(ledger.store, store_id)
    return [staff_out(a) for a in await run_in_threadpool(staff_service(request).accounts, store_id)]


@router.delete("/{store_id}/staff/{username}", status_code=204,
               responses=problems({**_COMMON, 404: "No such store or staff member"}))
async def remove_staff(store_id: StoreId, username: Username, request: Request, ledger: LedgerDep,
                       _: Annotated[Principal, allow(OWN)]) -> Response:
    """Take access away: the account and its sessions end; appends `staff.removed`."""
    await run_in_threadpool(ledger.store, store_id)
    await run_in_threadpool(staff_service(request).remove, store_id, username)
    return Response(status_code=204)
