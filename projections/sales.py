"""Sales read model: `sale.completed` pre-aggregated per store-local day and hour.

Rows are sums, so every report is a range scan of a few thousand rows at most
(a year of a busy shop is ~365 days x 14 hours x terminals x channels), whatever
the number of sales. The keys and sums, written down once:

* hourly: (day, hour, terminal, channel) -> orders, items (sum of qty),
  gross (sum of qty x unit price), discount (the sale's), net (gross - discount).
* items: (day, sku) -> orders (sales with that sku), items, gross. The category
  of a line is the sku's category in the menu at the time of the sale (the last
  `menu.item_upserted` before it; "" when the sku was never on the menu).
* categories: (day, category) -> orders (sales with a line of it), items, gross.
* methods: (day, method) -> orders (sales with a tender of it: a two-tender sale
  counts once in each), items, gross and discount of those sales, net = tendered
  minus change in that method.
* refunds: day -> count and money refunded that day (`refund.issued` to the
  customer's payment, `stored_value.refunded` back to a member's balance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from projections.base import Entry, Projection
from projections.db import Sql

HOURLY = (
    "CREATE TABLE IF NOT EXISTS rm_sales_hourly (store_id TEXT NOT NULL, day TEXT NOT NULL, "
    "hour INTEGER NOT NULL, terminal_id TEXT NOT NULL, channel TEXT NOT NULL, orders BIGINT NOT NULL, "
    "items BIGINT NOT NULL, gross_minor BIGINT NOT NULL, discount_minor BIGINT NOT NULL, "
    "net_minor BIGINT NOT NULL, PRIMARY KEY (store_id, day, hour, terminal_id, channel))"
)
ITEMS = (
    "CREATE TABLE IF NOT EXISTS rm_sales_items (store_id TEXT NOT NULL, day TEXT NOT NULL, "
    "sku TEXT NOT NULL, orders BIGINT NOT NULL, items BIGINT NOT NULL, gross_minor BIGINT NOT NULL, "
    "PRIMARY KEY (store_id, day, sku))"
)
CATEGORIES = (
    "CREATE TABLE IF NOT EXISTS rm_sales_categories (store_id TEXT NOT NULL, day TEXT NOT NULL, "
    "category TEXT NOT NULL, orders BIGINT NOT NULL, items BIGINT NOT NULL, gross_minor BIGINT NOT NULL, "
    "PRIMARY KEY (store_id, day, category))"
)
METHODS = (
    "CREATE TABLE IF NOT EXISTS rm_sales_methods (store_id TEXT NOT NULL, day TEXT NOT NULL, "
    "method TEXT NOT NULL, orders BIGINT NOT NULL, items BIGINT NOT NULL, gross_minor BIGINT NOT NULL, "
    "discount_minor BIGINT NOT NULL, net_minor BIGINT NOT NULL, PRIMARY KEY (store_id, day, method))"
)
REFUNDS = (
    "CREATE TABLE IF NOT EXISTS rm_sales_refunds (store_id TEXT NOT NULL, day TEXT NOT NULL, "
    "refunds BIGINT NOT NULL, refunds_minor BIGINT NOT NULL, PRIMARY KEY (store_id, day))"
)
MENU = (
    "CREATE TABLE IF NOT EXISTS rm_sales_menu (store_id TEXT NOT NULL, sku TEXT NOT NULL, "
    "category TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (store_id, sku))"
)


def _upsert(table: str, keys: tuple[str, ...], sums: tuple[str, ...]) -> str:
    columns = ("store_id", *keys, *sums)
    marks = ",".join("?" * len(columns))
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT (store_id, {', '.join(keys)}) DO UPDATE SET {updates}")


UPSERT_HOURLY = _upsert("rm_sales_hourly", ("day", "hour", "terminal_id", "channel"),
                        ("orders", "items", "gross_minor", "discount_minor", "net_minor"))
UPSERT_ITEMS = _upsert("rm_sales_items", ("day", "sku"), ("orders", "items", "gross_minor"))
UPSERT_CATEGORIES = _upsert("rm_sales_categories", ("day", "category"), ("orders", "items", "gross_minor"))
UPSERT_METHODS = _upsert("rm_sales_methods", ("day", "method"),
                         ("orders", "items", "gross_minor", "discount_minor", "net_minor"))
UPSERT_REFUNDS = _upsert("rm_sales_refunds", ("day",), ("refunds", "refunds_minor"))
UPSERT_MENU = (
    "INSERT INTO rm_sales_menu (store_id, sku, category, name) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (store_id, sku) DO UPDATE SET category = excluded.category, name = excluded.name"
)


def _add(sums: dict[Any, list[int]], key: Any, *values: int) -> None:
    row = sums.get(key)
    if row is None:
        sums[key] = list(values)
    else:
        for index, value in enumerate(values):
            row[index] += value


@dataclass(slots=True)
class _Batch:
    menu: dict[str, tuple[str, str]]
    menu_changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    hourly: dict[tuple[str, int, str, str], list[int]] = field(default_factory=dict)
    items: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    categories: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    methods: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    refunds: dict[tuple[str], list[int]] = field(default_factory=dict)


class SalesProjection(Projection):
    name: ClassVar[str] = "sales"
    event_types: ClassVar[frozenset[str]] = frozenset(
        {"sale.completed", "menu.item_upserted", "refund.issued", "stored_value.refunded"})
    tables: ClassVar[tuple[str, ...]] = ("rm_sales_hourly", "rm_sales_items", "rm_sales_categories",
                                         "rm_sales_methods", "rm_sales_refunds", "rm_sales_menu")
    schema: ClassVar[tuple[str, ...]] = (HOURLY, ITEMS, CATEGORIES, METHODS, REFUNDS, MENU)

    def __init__(self) -> None:
        #: store -> sku -> (category, name): the menu as of the projection's committed position.
        self._menus: dict[str, dict[str, tuple[str, str]]] = {}

    def forget(self, store_id: str) -> None:
        self._menus.pop(store_id, None)

    def begin(self, sql: Sql, store_id: str) -> _Batch:
        menu = self._menus.get(store_id)
        if menu is None:
            rows = sql.execute("SELECT sku, category, name FROM rm_sales_menu WHERE store_id = ?",
                               (store_id,)).fetchall()
            menu = {str(sku): (str(category), str(name)) for sku, category, name in rows}
        # Folding works on a copy: the cache only moves when the batch commits (`flush`).
        return _Batch(dict(menu))

    def fold(self, sql: Sql, store_id: str, batch: _Batch, entry: Entry) -> None:
        data = entry.data
        if entry.type == "sale.completed":
            self._fold_sale(batch, entry, data)
        elif entry.type == "menu.item_upserted":
            batch.menu[data.sku] = batch.menu_changed[data.sku] = (data.category, data.name)
        else:  # refund.issued, stored_value.refunded
            _add(batch.refunds, (entry.day,), 1, data.amount_minor)

    def _fold_sale(self, batch: _Batch, entry: Entry, sale: Any) -> None:
        day = entry.day
        gross = items = 0
        per_sku: dict[str, list[int]] = {}
        per_category: dict[str, list[int]] = {}
        for line in sale.lines:
            amount = line.qty * line.unit_price_minor
            gross += amount
            items += line.qty
            _add(per_sku, line.sku, line.qty, amount)
            category = batch.menu.get(line.sku, ("", ""))[0]
            _add(per_category, category, line.qty, amount)
        discount = sale.discount_minor
        _add(batch.hourly, (day, entry.hour, entry.terminal_id, sale.channel),
             1, items, gross, discount, gross - discount)
        for sku, (qty, amount) in per_sku.items():
            _add(batch.items, (day, sku), 1, qty, amount)
        for category, (qty, amount) in per_category.items():
            _add(batch.categories, (day, category), 1, qty, amount)
        per_method: dict[str, int] = {}
        for tender in sale.tenders:
            per_method[tender.method] = per_method.get(tender.method, 0) + tender.amount_minor - tender.change_minor
        for method, net in per_method.items():
            _add(batch.methods, (day, method), 1, items, gross, discount, net)

    def flush(self, sql: Sql, store_id: str, batch: _Batch) -> None:
        for statement, sums in ((UPSERT_HOURLY, batch.hourly), (UPSERT_ITEMS, batch.items),
                                (UPSERT_CATEGORIES, batch.categories), (UPSERT_METHODS, batch.methods),
                                (UPSERT_REFUNDS, batch.refunds)):
            sql.executemany(statement, [(store_id, *key, *values) for key, values in sums.items()])
        sql.executemany(UPSERT_MENU, [(store_id, sku, category, name)
                                      for sku, (category, name) in batch.menu_changed.items()])
        self._menus[store_id] = batch.menu


def sales_rows(entries: Sequence[Entry]) -> int:
    """Sale lines in a batch (the benchmark counts lines, not events)."""
    return sum(len(e.data.lines) for e in entries if e.type == "sale.completed")
