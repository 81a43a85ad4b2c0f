"""Store set-up events; the server originates and signs them."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated

import msgspec

from pos_ledger.events import (
    CurrencyCode,
    EntryMeta,
    EventRejected,
    EventType,
    Identifier,
    Posting,
    ShortText,
    register,
)
from pos_ledger.state import StoreState, Terminal

Base64Key = Annotated[str, msgspec.Meta(min_length=44, max_length=44)]


class StoreOpened(msgspec.Struct, frozen=True):
    store_id: Identifier
    name: ShortText
    currency: CurrencyCode
    timezone: ShortText
    #: The server key that signs this store's server-originated events and tokens.
    server_public_key: Base64Key


class TerminalRegistered(msgspec.Struct, frozen=True):
    terminal_id: Identifier
    public_key: Base64Key
    label: Annotated[str, msgspec.Meta(max_length=200)] = ""


class TerminalRevoked(msgspec.Struct, frozen=True):
    terminal_id: Identifier
    reason: Annotated[str, msgspec.Meta(max_length=200)] = ""


def _decide_opened(data: StoreOpened, state: StoreState, terminal_id: str) -> list[Posting]:
    if state.opened:
        raise EventRejected("store_exists", f"store {state.store_id!r} is already open")
    if data.store_id != state.store_id:
        raise EventRejected("invalid_data", "store_id does not match the store's log")
    return []


def _evolve_opened(data: StoreOpened, state: StoreState, meta: EntryMeta) -> None:
    state.opened = True
    state.name = data.name
    state.currency = data.currency
    state.timezone = data.timezone
    state.server_public_key = base64.b64decode(data.server_public_key)


def _decide_registered(data: TerminalRegistered, state: StoreState, terminal_id: str) -> list[Posting]:
    if data.terminal_id in state.terminals:
        raise EventRejected("terminal_exists", f"terminal {data.terminal_id!r} is registered")
    return []


def _evolve_registered(data: TerminalRegistered, state: StoreState, meta: EntryMeta) -> None:
    state.terminals[data.terminal_id] = Terminal(
        data.terminal_id, base64.b64decode(data.public_key), data.label
    )


def _decide_revoked(data: TerminalRevoked, state: StoreState, terminal_id: str) -> list[Posting]:
    terminal = state.terminals.get(data.terminal_id)
    if terminal is None or terminal.revoked:
        raise EventRejected("terminal_unknown", f"no active terminal {data.terminal_id!r}")
    return []


def _evolve_revoked(data: TerminalRevoked, state: StoreState, meta: EntryMeta) -> None:
    state.terminals[data.terminal_id].revoked = True


STORE_OPENED = register(
    EventType("store.opened", StoreOpened, _decide_opened, _evolve_opened, origin="server")
)
TERMINAL_REGISTERED = register(
    EventType(
        "terminal.registered",
        TerminalRegistered,
        _decide_registered,
        _evolve_registered,
        origin="server",
    )
)
TERMINAL_REVOKED = register(
    EventType("terminal.revoked", TerminalRevoked, _decide_revoked, _evolve_revoked, origin="server")
)


#: How long an online order may wait in `placed` before the server cancels it, by default and at most.
ORDERS_ACCEPT_TIMEOUT_S_DEFAULT = 300
ORDERS_ACCEPT_TIMEOUT_S_MAX = 86_400


@dataclass(slots=True)
class StoreSettings:
    """The store's switches, set by its owner; each change is a `store.settings_changed` event."""

    #: Online orders are accepted as they arrive instead of waiting for the counter.
    orders_auto_accept: bool = False
    orders_accept_timeout_s: int = ORDERS_ACCEPT_TIMEOUT_S_DEFAULT
    #: Apps' webhooks may point at loopback or private addresses (an integration inside the shop).
    allow_local_webhooks: bool = False


class StoreSettingsChanged(msgspec.Struct, frozen=True, omit_defaults=True):
    """Only the settings named change; the others keep their values."""

    orders_auto_accept: bool | None = None
    orders_accept_timeout_s: Annotated[int, msgspec.Meta(ge=1, le=ORDERS_ACCEPT_TIMEOUT_S_MAX)] | None = None
    allow_local_webhooks: bool | None = None


def settings_of(state: StoreState) -> StoreSettings:
    return state.feature("settings", StoreSettings)


def _evolve_settings(data: StoreSettingsChanged, state: StoreState, meta: EntryMeta) -> None:
    settings = settings_of(state)
    for name in StoreSettingsChanged.__struct_fields__:
        value = getattr(data, name)
        if value is not None:
            setattr(settings, name, value)


STORE_SETTINGS_CHANGED = register(
    EventType("store.settings_changed", StoreSettingsChanged, evolve=_evolve_settings, origin="server")
)
