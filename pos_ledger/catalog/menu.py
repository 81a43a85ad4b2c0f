"""The menu: what the store sells, at what price (back-office, server-signed events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import msgspec

from pos_ledger.events import Amount, EntryMeta, EventRejected, EventType, Posting, ShortText, register
from pos_ledger.state import StoreState

MENU_ITEMS_MAX = 5_000
Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


@dataclass(slots=True)
class MenuItem:
    sku: str
    name: str
    price_minor: int
    category: str
    #: False while the item is sold out or off the menu for now (kept, not removed).
    available: bool = True


class MenuItemUpserted(msgspec.Struct, frozen=True):
    sku: Sku
    name: ShortText
    price_minor: Amount
    category: Annotated[str, msgspec.Meta(max_length=100)] = ""
    #: Added later: events written before it decode as available.
    available: bool = True


class MenuItemRemoved(msgspec.Struct, frozen=True):
    sku: Sku


def menu_of(state: StoreState) -> dict[str, MenuItem]:
    return state.feature("menu", dict[str, MenuItem])


def _decide_upserted(data: MenuItemUpserted, state: StoreState, terminal_id: str) -> list[Posting]:
    menu = menu_of(state)
    if data.sku not in menu and len(menu) >= MENU_ITEMS_MAX:
        raise EventRejected("menu_full", f"a menu holds at most {MENU_ITEMS_MAX} items")
    return []


def _evolve_upserted(data: MenuItemUpserted, state: StoreState, meta: EntryMeta) -> None:
    menu_of(state)[data.sku] = MenuItem(data.sku, data.name, data.price_minor, data.category, data.available)


def _decide_removed(data: MenuItemRemoved, state: StoreState, terminal_id: str) -> list[Posting]:
    if data.sku not in menu_of(state):
        raise EventRejected("menu_item_unknown", f"no menu item {data.sku!r}")
    return []


def _evolve_removed(data: MenuItemRemoved, state: StoreState, meta: EntryMeta) -> None:
    menu_of(state).pop(data.sku, None)


MENU_ITEM_UPSERTED = register(
    EventType("menu.item_upserted", MenuItemUpserted, _decide_upserted, _evolve_upserted, origin="server")
)
MENU_ITEM_REMOVED = register(
    EventType("menu.item_removed", MenuItemRemoved, _decide_removed, _evolve_removed, origin="server")
)
