"""Every event type pos-ledger knows, registered on import (see `pos_ledger.events`)."""

from __future__ import annotations

from pos_ledger.catalog import (
    apps,
    conflicts,
    coupons,
    members,
    menu,
    orders,
    payments,
    printers,
    sales,
    shifts,
    staff,
    store,
    vouchers,
)
from pos_ledger.events import EVENT_TYPES

__all__ = ["EVENT_TYPES", "apps", "conflicts", "coupons", "members", "menu", "orders", "payments", "printers",
           "sales", "shifts", "staff", "store", "vouchers"]
