"""The apps page (issue 15): the store's installed apps with their scopes in plain words, install (the
secrets shown once), uninstall, webhook deliveries, replay from a position, disabled-endpoint notices."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from api.auth import OWN
from api.web.i18n import ZH
from api.web.pages import PageContext, page

#: What each OAuth2 scope lets an app do, for the shop owner (the Chinese is in api/web/i18n.py).
SCOPE_LABELS: Final = {
    "orders:read": "See online orders and completed sales",
    "orders:write": "Place online orders and move them along",
    "payments:read": "See payments and refunds",
    "payments:write": "Take payments and make refunds",
    "members:read": "See members with their personal details, stored value and points",
    "members:write": "Register members and change their stored value and points",
    "coupons:read": "See campaigns, coupons and vouchers",
    "coupons:write": "Issue and redeem coupons, write off group-buy vouchers",
    "reports:read": "Read the sales and member reports",
    "events:read": "Read the store's event log (the feed)",
}
ZH.update({
    "Apps": "应用管理",
    "See online orders and completed sales": "查看线上订单和已完成的销售",
    "Place online orders and move them along": "下线上订单并更新订单状态",
    "See payments and refunds": "查看支付和退款",
    "Take payments and make refunds": "发起收款和退款",
    "See members with their personal details, stored value and points": "查看会员及其个人信息、储值和积分",
    "Register members and change their stored value and points": "登记会员，变更储值和积分",
    "See campaigns, coupons and vouchers": "查看营销活动、优惠券和团购券",
    "Issue and redeem coupons, write off group-buy vouchers": "发放和核销优惠券，核销团购券",
    "Read the sales and member reports": "查看销售和会员报表",
    "Read the store's event log (the feed)": "读取门店事件日志（事件流）",
    "No access to store data": "不访问门店数据",
    "Webhook endpoint disabled": "Webhook 接收地址已停用",
    "Events are no longer sent to": "事件已不再发送到",
    "Once the app's endpoint works again, replay from a position below to enable it and send what it missed.":
        "待应用的接收地址恢复后，请在下方从某个位置重放，即可重新启用并补发错过的事件。",
    "Webhook failing": "Webhook 发送失败",
    "Deliveries have failed since": "自此时间起发送一直失败：",
    "The endpoint is disabled after 5 days of failures.": "连续失败 5 天后该地址将被停用。",
    "App installed: copy these secrets now": "应用已安装：请立即复制以下密钥",
    "They are shown only this once. The server keeps no copy it could show again; if one is lost, rotate it or reinstall the app.":
        "密钥仅显示这一次，服务器不保存可再次显示的副本；如有遗失，请轮换密钥或重新安装应用。",
    "Client id": "客户端 ID", "Client secret": "客户端密钥", "Webhook secret": "Webhook 签名密钥",
    "I have copied them": "我已复制", "Installed apps": "已安装的应用", "Installed": "安装于",
    "Uninstall {name}? Its credentials stop working at once.": "确定卸载 {name}？其凭证将立即失效。",
    "Uninstall": "卸载", "This app may:": "该应用可以：", "Webhook": "Webhook", "Enabled": "已启用",
    "Disabled": "已停用", "Delivered through position": "已处理到位置", "Replay from position": "从此位置重放",
    "Replay": "重放", "No app is installed in this store.": "本门店尚未安装应用。",
    "Apps you can install": "可安装的应用", "Install": "安装", "Installing lets this app:": "安装后该应用可以：",
    "It is sent the store's events of those kinds as signed webhooks.": "门店的相关事件将以签名 Webhook 推送给它。",
    "No other app is registered on this server.": "本服务器上没有其他已注册的应用。",
    "Webhook deliveries": "Webhook 推送记录", "App": "应用", "Event": "事件", "Attempts": "尝试次数",
    "Last error": "最近错误", "Last attempt": "最近尝试", "Next attempt": "下次尝试", "Pending": "待发送",
    "Delivered": "已送达", "Failed": "失败", "No deliveries yet.": "暂无推送记录。",
})
DELIVERY_STATUS_LABELS: Final = {"pending": "Pending", "delivered": "Delivered", "failed": "Failed"}
#: Log positions back from the end the deliveries table reads, and rows it shows (newest first).
DELIVERIES_WINDOW: Final = 500
DELIVERIES_SHOWN: Final = 50


def zone_of(ctx: PageContext) -> ZoneInfo:
    try:
        return ZoneInfo(str(ctx.store.get("timezone") or "UTC"))
    except Exception:
        return ZoneInfo("UTC")


def local_time_in(zone: ZoneInfo) -> Any:
    def local_time(text: str | None) -> str:
        if not text:
            return ""
        try:
            return datetime.fromisoformat(str(text)).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            return str(text)

    return local_time


def registered_apps(ctx: PageContext) -> list[dict[str, Any]]:
    """The platform's registry (what an owner may install): names, scopes and event types only.

    The registry's JSON route is the admin's (`GET /v1/apps`); the owner needs to see what can be
    installed, so the page (already checked for `store:own`) reads the table itself."""
    platform = getattr(ctx.request.app.state, "platform", None)
    if platform is None:
        return []
    return [{"app_id": a.app_id, "name": a.name, "scopes": list(a.scopes), "event_types": list(a.event_types),
             "has_webhook": a.webhook_url is not None} for a in platform.tables.apps()]


@page("apps", "Apps", OWN)
async def apps(ctx: PageContext) -> dict[str, Any]:
    base = f"/v1/stores/{ctx.store_id}"
    installed, chain = await asyncio.gather(ctx.api(f"{base}/apps"), ctx.api(f"{base}/chain"))
    registry = await asyncio.to_thread(registered_apps, ctx)
    length = int((chain or {}).get("length", 0) or 0)
    deliveries = await ctx.api(f"{base}/deliveries", after=max(0, length - DELIVERIES_WINDOW), limit=1000)
    rows = list((deliveries or {}).get("deliveries", []))
    rows.sort(key=lambda d: (d["position"], d["app_id"]), reverse=True)
    installed = installed if isinstance(installed, list) else []
    names = {a["app_id"]: a["name"] for a in installed}
    installed_ids = set(names)
    return {
        "installed": installed, "available": [a for a in registry if a["app_id"] not in installed_ids],
        "deliveries": rows[:DELIVERIES_SHOWN], "deliveries_available": deliveries is not None,
        "app_names": names, "scope_labels": SCOPE_LABELS, "delivery_labels": DELIVERY_STATUS_LABELS,
        "disabled": [a for a in installed if a.get("webhook_url") and not a.get("webhook_enabled")],
        "failing": [a for a in installed if a.get("webhook_enabled") and a.get("failing_since")],
        "local_time": local_time_in(zone_of(ctx)),
    }
