"""The order board (issue 13): online orders live from the SSE stream, grouped by status, with the
transition buttons, a sound for each new order, and the printers' last states with a reprint button."""

from __future__ import annotations

import asyncio
from datetime import datetime, time
from typing import Any, Final
from zoneinfo import ZoneInfo

from api.auth import MANAGE, ORDERS_READ, ORDERS_WRITE, STORE_READ
from api.web.i18n import ZH
from api.web.pages import PageContext, page

#: The board's columns, in the order an order moves through them.
BOARD_COLUMNS: Final = ("placed", "accepted", "preparing", "ready", "done")
COLUMN_LABELS: Final = {"placed": "New", "accepted": "Accepted", "preparing": "Preparing", "ready": "Ready",
                        "done": "Done today"}
OPEN_STATUSES: Final = ("placed", "accepted", "preparing", "ready")
CHANNEL_LABELS: Final = {"mini_program": "Mini program", "official_account": "Official account",
                          "meituan": "Meituan", "eleme": "Ele.me", "douyin": "Douyin", "phone": "Phone"}
STATUS_LABELS: Final = {"placed": "New", "accepted": "Accepted", "rejected": "Rejected", "preparing": "Preparing",
                        "ready": "Ready", "completed": "Completed", "cancelled": "Cancelled"}
FULFILLMENT_LABELS: Final = {"dine_in": "Dine in", "pickup": "Pickup", "delivery": "Delivery"}
VERB_LABELS: Final = {"accept": "Accept", "reject": "Reject", "start": "Start preparing", "ready": "Mark ready",
                      "complete": "Complete", "cancel": "Cancel order"}
#: The one-click next step of each open status (POST …/orders/{order_id}/{verb}).
ACTIONS: Final = {"placed": ["accept"], "accepted": ["start"], "preparing": ["ready"], "ready": ["complete"]}
#: Steps that ask for a reason first.
REASON_ACTIONS: Final = {"placed": ["reject"], "accepted": ["cancel"], "preparing": ["cancel"],
                         "ready": ["cancel"]}
PRINTER_STATES: Final = {"ok": "OK", "printer_offline": "Printer offline", "unknown_outcome": "Outcome unknown"}
#: Labels the board's script needs to draw a card that arrives live.
SCRIPT_LABELS: Final = ("Table", "Pickup at", "Placed", "Total", "paid", "Reason", "Confirm", "Live",
                        "Reconnecting…", "Sound on", "Sound off", "New order")
ZH.update({
    "Order board": "订单看板", "New": "新订单", "Accepted": "已接单", "Preparing": "制作中", "Ready": "待取餐",
    "Done today": "今日已结束", "Rejected": "已拒单", "Completed": "已完成", "Cancelled": "已取消",
    "Mini program": "小程序", "Official account": "公众号", "Meituan": "美团", "Ele.me": "饿了么",
    "Douyin": "抖音", "Phone": "电话", "Dine in": "堂食", "Pickup": "自取", "Delivery": "外卖配送",
    "Accept": "接单", "Reject": "拒单", "Start preparing": "开始制作", "Mark ready": "出餐",
    "Complete": "完成", "Cancel order": "取消订单", "Confirm": "确认", "Reason": "原因", "Table": "桌号",
    "Pickup at": "取餐时间", "Placed": "下单", "Total": "合计", "paid": "已支付", "Live": "实时连接中",
    "Connecting…": "连接中…", "Reconnecting…": "正在重新连接…", "Sound on": "提示音：开", "Sound off": "提示音：关",
    "New order": "新订单", "Orders are not available.": "订单暂不可用。", "Printers": "打印机",
    "Printer": "打印机", "Station": "打印站", "State": "状态", "Last job": "最近任务", "Reported": "上报时间",
    "Reprint": "补打", "copy": "份", "Log position": "日志位置", "OK": "正常", "Printer offline": "打印机离线",
    "Outcome unknown": "结果未知（需人工确认）",
    "No printer has reported yet (a printer appears after its bridge prints or fails).":
        "还没有打印机上报状态（打印桥接程序打印或失败后即会显示）。",
})
#: Finished orders (completed, rejected, cancelled) the board shows: today's, newest first.
DONE_SHOWN: Final = 30


def column_of(status: str) -> str:
    return status if status in OPEN_STATUSES else "done"


def store_midnight(ctx: PageContext) -> datetime:
    zone = zone_of(ctx)
    return datetime.combine(datetime.now(zone).date(), time(), zone)


def zone_of(ctx: PageContext) -> ZoneInfo:
    try:
        return ZoneInfo(str(ctx.store.get("timezone") or "UTC"))
    except Exception:
        return ZoneInfo("UTC")


def local_time_in(zone: ZoneInfo) -> Any:
    def local_time(text: str | None, with_date: bool = False) -> str:
        """An RFC 3339 time as the store's wall clock: '12:30' (or '2026-12-02 12:30')."""
        if not text:
            return ""
        try:
            moment = datetime.fromisoformat(str(text)).astimezone(zone)
        except ValueError:
            return str(text)
        return moment.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")

    return local_time


def script_labels(ctx: PageContext) -> dict[str, str]:
    labels = {text: ctx.t(text) for text in SCRIPT_LABELS}
    for table in (CHANNEL_LABELS, STATUS_LABELS, FULFILLMENT_LABELS, VERB_LABELS):
        labels.update({key: ctx.t(text) for key, text in table.items()})
    return labels


def exponent(ctx: PageContext) -> int:
    from pos_ledger import money

    try:
        return money.currency(ctx.currency).exponent
    except Exception:
        return 2


@page("orders", "Order board", ORDERS_READ)
async def orders(ctx: PageContext) -> dict[str, Any]:
    path = f"/v1/stores/{ctx.store_id}/orders"
    # Open orders whatever day they were placed, and today's finished ones.
    answers = await asyncio.gather(
        *[ctx.api(path, status=status) for status in OPEN_STATUSES],
        ctx.api(path, **{"from": store_midnight(ctx).isoformat()}),
        ctx.api(f"/v1/stores/{ctx.store_id}/printers") if ctx.principal.may(STORE_READ) else asyncio.sleep(0, None))
    *lists, printers = answers
    found: dict[str, dict[str, Any]] = {}
    for answer in lists:
        for order in (answer or {}).get("orders", []):
            found[order["order_id"]] = order
    columns: dict[str, list[dict[str, Any]]] = {c: [] for c in BOARD_COLUMNS}
    for order in sorted(found.values(), key=lambda o: o["placed_position"]):
        columns[column_of(order["status"])].append(order)
    columns["done"] = sorted(columns["done"], key=lambda o: o["updated_at"], reverse=True)[:DONE_SHOWN]
    return {"columns": columns, "column_labels": COLUMN_LABELS, "available": any(a is not None for a in lists),
            "printers": (printers or {}).get("printers", []), "printers_available": printers is not None,
            "can_write": ctx.principal.may(ORDERS_WRITE), "can_reprint": ctx.principal.may(MANAGE),
            "exponent": exponent(ctx), "channel_labels": CHANNEL_LABELS, "status_labels": STATUS_LABELS,
            "fulfillment_labels": FULFILLMENT_LABELS, "verb_labels": VERB_LABELS, "actions": ACTIONS,
            "reason_actions": REASON_ACTIONS, "printer_states": PRINTER_STATES,
            "local_time": local_time_in(zone_of(ctx)), "js_labels": script_labels(ctx)}
