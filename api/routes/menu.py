"""The menu: public to read, back office to change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from api.auth import MANAGE, STORE_READ, Principal, allow
from api.deps import LedgerDep
from api.routes.stores import StoreId
from pos_ledger.catalog.menu import menu_of
from pos_ledger.errors import NotFound

router = APIRouter(prefix="/v1/stores", tags=["menu"])
Sku = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class MenuItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    price_minor: int = Field(ge=0, le=10**15)
    category: str = Field(default="", max_length=100)
    #: False while the item cannot be sold (sold out); it stays on the menu.
    available: bool = True


class MenuItemOut(BaseModel):
    sku: str
    name: str
    price_minor: int
    currency: str
    category: str
    available: bool = True


@router.get("/{store_id}/menu", response_model=list[MenuItemOut])
def list_menu(store_id: StoreId, _: Annotated[Principal, allow(STORE_READ)], ledger: LedgerDep) -> list[MenuItemOut]:
    state = ledger.store(store_id)
    return [
        MenuItemOut(sku=i.sku, name=i.name, price_minor=i.price_minor, currency=state.currency,
                    category=i.category, available=i.available)
        for i in sorted(menu_of(state).values(), key=lambda item: (item.category, item.sku))
    ]


@router.put("/{store_id}/menu/{sku}", response_model=MenuItemOut)
def upsert_menu_item(store_id: StoreId, sku: Sku, payload: MenuItemIn, ledger: LedgerDep,
                     _: Annotated[Principal, allow(MANAGE)]) -> MenuItemOut:
    state = ledger.store(store_id)
    ledger.append_server_events(store_id, [("menu.item_upserted", {"sku": sku, **payload.model_dump()})])
    return MenuItemOut(sku=sku, currency=state.currency, **payload.model_dump())


@router.delete("/{store_id}/menu/{sku}", status_code=204)
def remove_menu_item(store_id: StoreId, sku: Sku, ledger: LedgerDep, _: Annotated[Principal, allow(MANAGE)]) -> Response:
    if sku not in menu_of(ledger.store(store_id)):
        raise NotFound(f"no menu item {sku!r}")
    ledger.append_server_events(store_id, [("menu.item_removed", {"sku": sku})])
    return Response(status_code=204)
