"""Campaigns read model: coupons issued and redeemed per campaign, the discount they gave,
and the revenue of the orders that redeemed them.

A redemption counts when it is the coupon's one valid redemption, by the same
rule the ledger applies (`pos_ledger.catalog.coupons.validity_problem`: not void,
not already redeemed, inside the coupon's validity at `redeemed_at`); a
redemption that broke a rule became a conflict and gives the campaign nothing.
Revenue is the net (total) of the sales whose `order_id` is a valid
redemption's `order_ref`, each order once per campaign, whichever came first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pos_ledger.catalog.coupons import expiry
from projections.base import Entry, Projection
from projections.db import Sql

CAMPAIGNS = (
    "CREATE TABLE IF NOT EXISTS rm_campaigns (store_id TEXT NOT NULL, campaign_id TEXT NOT NULL, "
    "name TEXT NOT NULL, kind TEXT NOT NULL, valid_from TEXT NOT NULL, valid_until TEXT NOT NULL, "
    "coupon_valid_seconds BIGINT, issued BIGINT NOT NULL, redeemed BIGINT NOT NULL, "
    "discount_minor BIGINT NOT NULL, PRIMARY KEY (store_id, campaign_id))"
)
COUPONS = (
    "CREATE TABLE IF NOT EXISTS rm_coupons (store_id TEXT NOT NULL, coupon_id TEXT NOT NULL, "
    "campaign_id TEXT NOT NULL, expires_at TEXT NOT NULL, voided INTEGER NOT NULL, "
    "redeemed INTEGER NOT NULL, PRIMARY KEY (store_id, coupon_id))"
)
REDEEMED_ORDERS = (
    "CREATE TABLE IF NOT EXISTS rm_campaign_redeemed_orders (store_id TEXT NOT NULL, "
    "campaign_id TEXT NOT NULL, order_ref TEXT NOT NULL, PRIMARY KEY (store_id, campaign_id, order_ref))"
)
ORDERS = (
    "CREATE TABLE IF NOT EXISTS rm_campaign_orders (store_id TEXT NOT NULL, order_ref TEXT NOT NULL, "
    "net_minor BIGINT NOT NULL, PRIMARY KEY (store_id, order_ref))"
)
UPSERT_ORDER = (
    "INSERT INTO rm_campaign_orders (store_id, order_ref, net_minor) VALUES (?, ?, ?) "
    "ON CONFLICT (store_id, order_ref) DO UPDATE SET net_minor = rm_campaign_orders.net_minor + excluded.net_minor"
)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


class CampaignsProjection(Projection):
    name: ClassVar[str] = "campaigns"
    event_types: ClassVar[frozenset[str]] = frozenset(
        {"campaign.created", "coupon.issued", "coupon.redeemed", "coupon.voided", "sale.completed"})
    tables: ClassVar[tuple[str, ...]] = ("rm_campaigns", "rm_coupons", "rm_campaign_redeemed_orders",
                                         "rm_campaign_orders")
    schema: ClassVar[tuple[str, ...]] = (CAMPAIGNS, COUPONS, REDEEMED_ORDERS, ORDERS)

    def begin(self, sql: Sql, store_id: str) -> dict[str, int]:
        return {}

    def fold(self, sql: Sql, store_id: str, batch: dict[str, int], entry: Entry) -> None:
        data: Any = entry.data
        if entry.type == "sale.completed":
            order_ref = str(data.order_id)
            batch[order_ref] = batch.get(order_ref, 0) + data.total_minor
        elif entry.type == "campaign.created":
            sql.execute(
                "INSERT INTO rm_campaigns VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0)",
                (store_id, data.campaign_id, data.name, data.kind, data.valid_from.isoformat(),
                 data.valid_until.isoformat(), data.coupon_valid_seconds))
        elif entry.type == "coupon.issued":
            self._issued(sql, store_id, data)
        elif entry.type == "coupon.voided":
            sql.execute("UPDATE rm_coupons SET voided = 1 WHERE store_id = ? AND coupon_id = ?",
                        (store_id, data.coupon_id))
        else:
            self._redeemed(sql, store_id, data)

    def _issued(self, sql: Sql, store_id: str, data: Any) -> None:
        row = sql.execute("SELECT valid_until, coupon_valid_seconds, name, kind, valid_from FROM rm_campaigns "
                          "WHERE store_id = ? AND campaign_id = ?", (store_id, data.campaign_id)).fetchone()
        if row is None:
            raise LookupError(f"coupon issued for unknown campaign {data.campaign_id!r}")
        spec = _Spec(_instant(str(row[4])), _instant(str(row[0])), None if row[1] is None else int(row[1]))
        expires_at = expiry(spec, data.issued_at)  # type: ignore[arg-type]
        sql.execute("INSERT INTO rm_coupons VALUES (?, ?, ?, ?, 0, 0)",
                    (store_id, data.coupon_id, data.campaign_id, expires_at.isoformat()))
        sql.execute("UPDATE rm_campaigns SET issued = issued + 1 WHERE store_id = ? AND campaign_id = ?",
                    (store_id, data.campaign_id))

    def _redeemed(self, sql: Sql, store_id: str, data: Any) -> None:
        row = sql.execute(
            "SELECT c.campaign_id, c.expires_at, c.voided, c.redeemed, k.valid_from FROM rm_coupons c "
            "JOIN rm_campaigns k ON k.store_id = c.store_id AND k.campaign_id = c.campaign_id "
            "WHERE c.store_id = ? AND c.coupon_id = ?", (store_id, data.coupon_id)).fetchone()
        if row is None:
            raise LookupError(f"redemption of unknown coupon {data.coupon_id!r}")
        campaign_id, expires_at, voided, redeemed, valid_from = row
        at = data.redeemed_at
        if voided or redeemed or at < _instant(str(valid_from)) or at >= _instant(str(expires_at)):
            return  # a conflict, not a redemption of the campaign
        sql.execute("UPDATE rm_coupons SET redeemed = 1 WHERE store_id = ? AND coupon_id = ?",
                    (store_id, data.coupon_id))
        sql.execute("UPDATE rm_campaigns SET redeemed = redeemed + 1, discount_minor = discount_minor + ? "
                    "WHERE store_id = ? AND campaign_id = ?", (data.discount_minor, store_id, campaign_id))
        sql.execute("INSERT INTO rm_campaign_redeemed_orders VALUES (?, ?, ?) "
                    "ON CONFLICT (store_id, campaign_id, order_ref) DO NOTHING",
                    (store_id, campaign_id, data.order_ref))

    def flush(self, sql: Sql, store_id: str, batch: dict[str, int]) -> None:
        sql.executemany(UPSERT_ORDER, [(store_id, ref, net) for ref, net in batch.items()])


class _Spec:
    """The two fields of a campaign `expiry` reads."""

    def __init__(self, valid_from: datetime, valid_until: datetime, coupon_valid_seconds: int | None) -> None:
        self.valid_from = valid_from
        self.valid_until = valid_until
        self.coupon_valid_seconds = coupon_valid_seconds
