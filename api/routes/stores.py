"""Stores and terminals (back office), the chain and balances (read)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field, StrictInt

from api.auth import EVENTS_READ, OWN, REPORTS_READ, STORE_READ, Principal, allow
from api.deps import AdminDep, LedgerDep
from pos_ledger.catalog.store import ORDERS_ACCEPT_TIMEOUT_S_MAX, settings_of
from pos_ledger.errors import InvalidInput, WeakPublicKey
from pos_ledger.ledger import Ledger
from pos_ledger.money import currency
from pos_ledger.values import IDENTIFIER_LENGTH_MAX, IDENTIFIER_PATTERN

router = APIRouter(prefix="/v1/stores", tags=["stores"])

IdentifierPattern = IDENTIFIER_PATTERN
StoreId = Annotated[str, Path(pattern=IdentifierPattern, max_length=IDENTIFIER_LENGTH_MAX)]
TerminalId = Annotated[str, Path(pattern=IdentifierPattern, max_length=IDENTIFIER_LENGTH_MAX)]


class StoreIn(BaseModel):
    store_id: str = Field(pattern=IdentifierPattern, max_length=IDENTIFIER_LENGTH_MAX)
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    timezone: str = Field(min_length=1, max_length=64)


class StoreOut(BaseModel):
    store_id: str
    name: str
    currency: str
    timezone: str
    server_public_key: str


class TerminalIn(BaseModel):
    terminal_id: str = Field(pattern=IdentifierPattern, max_length=IDENTIFIER_LENGTH_MAX)
    public_key: str = Field(min_length=1, max_length=200)
    label: str = Field(default="", max_length=200)


class TerminalOut(BaseModel):
    terminal_id: str
    public_key: str
    label: str
    revoked: bool


class SettingsPatch(BaseModel):
    """The settings to change; those left out keep their values."""

    model_config = {"extra": "forbid", "strict": True}
    orders_auto_accept: bool | None = None
    orders_accept_timeout_s: StrictInt | None = Field(default=None, ge=1, le=ORDERS_ACCEPT_TIMEOUT_S_MAX)
    allow_local_webhooks: bool | None = None


class SettingsOut(BaseModel):
    orders_auto_accept: bool
    orders_accept_timeout_s: int
    allow_local_webhooks: bool


class ChainOut(BaseModel):
    head: str
    length: int


class BalanceOut(BaseModel):
    account: str
    currency: str
    debit_minor: int
    credit_minor: int
    balance_minor: int


class BalancesOut(BaseModel):
    store_id: str
    balances: list[BalanceOut]


def _valid_timezone(name: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown IANA time zone {name!r}") from None
    return name


@router.post("", status_code=201, response_model=StoreOut)
def open_store(payload: StoreIn, ledger: LedgerDep, _: AdminDep) -> StoreOut:
    currency(payload.currency)
    _valid_timezone(payload.timezone)
    state = ledger.open_store(payload.store_id, payload.name, payload.currency, payload.timezone)
    return StoreOut(store_id=state.store_id, name=state.name, currency=state.currency,
                    timezone=state.timezone,
                    server_public_key=base64.b64encode(state.server_public_key).decode())


@router.get("/{store_id}", response_model=StoreOut)
def get_store(store_id: StoreId, _: Annotated[Principal, allow(STORE_READ)], ledger: LedgerDep) -> StoreOut:
    state = ledger.store(store_id)
    return StoreOut(store_id=state.store_id, name=state.name, currency=state.currency,
                    timezone=state.timezone,
                    server_public_key=base64.b64encode(state.server_public_key).decode())


def _settings_out(ledger: Ledger, store_id: str) -> SettingsOut:
    settings = settings_of(ledger.store(store_id))
    return SettingsOut(orders_auto_accept=settings.orders_auto_accept,
                       orders_accept_timeout_s=settings.orders_accept_timeout_s,
                       allow_local_webhooks=settings.allow_local_webhooks)


@router.get("/{store_id}/settings", response_model=SettingsOut)
def get_settings(store_id: StoreId, ledger: LedgerDep, _: Annotated[Principal, allow(STORE_READ)]) -> SettingsOut:
    return _settings_out(ledger, store_id)


@router.patch("/{store_id}/settings", response_model=SettingsOut)
def change_settings(store_id: StoreId, payload: SettingsPatch, ledger: LedgerDep,
                    _: Annotated[Principal, allow(OWN)]) -> SettingsOut:
    """The owner's switches: online orders' auto-accept and accept timeout, local webhooks."""
    changes = payload.model_dump(exclude_none=True)
    ledger.store(store_id)
    if changes:
        ledger.append_server_events(store_id, [("store.settings_changed", changes)])
    return _settings_out(ledger, store_id)


@router.post("/{store_id}/terminals", status_code=201, response_model=TerminalOut)
def register_terminal(store_id: StoreId, payload: TerminalIn, ledger: LedgerDep, _: Annotated[Principal, allow(OWN)]) -> TerminalOut:
    try:
        public_key = base64.b64decode(payload.public_key, validate=True)
    except (binascii.Error, ValueError):
        raise WeakPublicKey("public_key is not valid base64") from None
    ledger.register_terminal(store_id, payload.terminal_id, public_key, payload.label)
    return TerminalOut(terminal_id=payload.terminal_id, public_key=payload.public_key,
                       label=payload.label, revoked=False)


@router.get("/{store_id}/terminals", response_model=list[TerminalOut])
def list_terminals(store_id: StoreId, ledger: LedgerDep, _: Annotated[Principal, allow(STORE_READ)]) -> list[TerminalOut]:
    state = ledger.store(store_id)
    return [
        TerminalOut(terminal_id=t.terminal_id, public_key=base64.b64encode(t.public_key).decode(),
                    label=t.label, revoked=t.revoked)
        for t in list(state.terminals.values())
    ]


@router.delete("/{store_id}/terminals/{terminal_id}", status_code=204)
def revoke_terminal(store_id: StoreId, terminal_id: TerminalId, ledger: LedgerDep, _: Annotated[Principal, allow(OWN)]) -> Response:
    ledger.revoke_terminal(store_id, terminal_id)
    return Response(status_code=204)


@router.get("/{store_id}/chain", response_model=ChainOut)
def chain(store_id: StoreId, _: Annotated[Principal, allow(EVENTS_READ)], ledger: LedgerDep) -> ChainOut:
    head, length = ledger.chain(store_id)
    return ChainOut(head=head.hex(), length=length)


@router.get("/{store_id}/balances", response_model=BalancesOut)
def balances(store_id: StoreId, _: Annotated[Principal, allow(REPORTS_READ)], ledger: LedgerDep) -> BalancesOut:
    rows = ledger.balances(store_id)
    return BalancesOut(
        store_id=store_id,
        balances=[
            BalanceOut(account=a, currency=c, debit_minor=d, credit_minor=k, balance_minor=d - k)
            for a, c, d, k in rows
        ],
    )
