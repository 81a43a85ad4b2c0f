"""ESC/POS documents of the store's events: receipts, kitchen tickets, refund and recharge slips,
X and Z reports. python-escpos makes the control sequences; text is GB18030 (Chinese printers'
character set; ASCII is unchanged in it). Amounts are printed with the currency's decimals."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any, Final

from escpos.printer import Dummy  # type: ignore[import-untyped]

from pos_ledger.money import format_minor

#: Characters per line of an 80 mm printer in font A (a CJK character takes two).
LINE_WIDTH: Final = 48
#: A receipt prints at most this many lines of items (a sale holds at most 500).
RECEIPT_LINES_MAX: Final = 500
#: `FS &`: select Chinese (double-byte) character mode, so GB18030 text prints as hanzi.
CHINESE_MODE: Final = b"\x1c&"
TENDER_NAMES: Final = {"cash": "现金 Cash", "wechat": "微信支付 WeChat Pay", "alipay": "支付宝 Alipay",
                       "unionpay": "云闪付 UnionPay", "card": "银行卡 Card", "member_balance": "会员余额 Balance"}
CHANNEL_NAMES: Final = {"mini_program": "小程序", "official_account": "公众号", "meituan": "美团", "eleme": "饿了么",
                        "douyin": "抖音", "phone": "电话", "counter": "柜台"}
FULFILLMENT_NAMES: Final = {"dine_in": "堂食 DINE IN", "pickup": "自取 PICKUP", "delivery": "外送 DELIVERY"}


def width_of(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def clip(text: str, width: int) -> str:
    out, used = [], 0
    for char in text:
        size = 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
        if used + size > width:
            break
        out.append(char)
        used += size
    return "".join(out)


def two_columns(left: str, right: str, width: int = LINE_WIDTH) -> str:
    left = clip(left, width - width_of(right) - 1)
    return left + " " * (width - width_of(left) - width_of(right)) + right


class Document:
    """One print job: text and commands, ending with a cut."""

    def __init__(self) -> None:
        self.printer = Dummy()
        self.printer.hw("INIT")
        self.printer._raw(CHINESE_MODE)

    def text(self, line: str = "", *, align: str = "left", bold: bool = False, big: bool = False) -> None:
        self.printer.set(align=align, bold=bold, double_height=big, double_width=big, normal_textsize=not big)
        self.printer._raw(line.encode("gb18030", errors="replace") + b"\n")

    def rule(self) -> None:
        self.text("-" * LINE_WIDTH)

    def pair(self, left: str, right: str, *, bold: bool = False) -> None:
        self.text(two_columns(left, right), bold=bold)

    def qr(self, data: str) -> None:
        self.printer.set(align="center")
        self.printer.qr(data, native=True, size=5)

    def kick_drawer(self) -> None:
        self.printer.cashdraw(2)

    def finish(self) -> bytes:
        self.printer.cut()
        output: bytes = self.printer.output
        return output


def money(amount_minor: int, currency: str) -> str:
    return format_minor(amount_minor, currency)


def _header(document: Document, store: dict[str, Any], title: str, reprint: int = 0) -> None:
    if reprint:
        document.text(f"*** REPRINT {reprint} ***", align="center", bold=True, big=True)
    document.text(store.get("name", ""), align="center", bold=True, big=True)
    document.text(title, align="center", bold=True)
    document.rule()


def receipt(store: dict[str, Any], sale: dict[str, Any], entry: dict[str, Any], extras: dict[str, Any],
            verify_url: str) -> bytes:
    """The customer's receipt of a `sale.completed` (entry: position, at, terminal_id, hash)."""
    currency = sale["currency"]
    document = Document()
    _header(document, store, "购物小票 RECEIPT")
    document.text(f"单号 Order: {sale['order_id']}")
    document.text(f"时间 Time: {entry['at']}")
    document.text(f"终端 Till: {entry['terminal_id']}  渠道: {CHANNEL_NAMES.get(sale.get('channel', 'counter'), '')}")
    document.rule()
    for line in sale["lines"][:RECEIPT_LINES_MAX]:
        document.text(clip(line["name"], LINE_WIDTH))
        document.pair(f"  {line['qty']} x {money(line['unit_price_minor'], currency)}",
                      money(line["qty"] * line["unit_price_minor"], currency))
    document.rule()
    gross = sum(line["qty"] * line["unit_price_minor"] for line in sale["lines"])
    document.pair("小计 Subtotal", money(gross, currency))
    if sale.get("discount_minor"):
        document.pair("折扣 Discount", "-" + money(sale["discount_minor"], currency))
    for saving in extras.get("coupons", []):
        document.pair("  优惠券 Coupon saving", "-" + money(saving, currency))
    document.pair("合计 TOTAL", money(sale["total_minor"], currency), bold=True)
    for tender in sale.get("tenders", []):
        document.pair(TENDER_NAMES.get(tender["method"], tender["method"]), money(tender["amount_minor"], currency))
        if tender.get("change_minor"):
            document.pair("找零 Change", money(tender["change_minor"], currency))
    if sale.get("member_id"):
        document.rule()
        document.text(f"会员 Member: {sale['member_id']}")
        if extras.get("points"):
            document.text(f"本单积分 Points earned: {extras['points']}")
        if extras.get("balance_spent"):
            document.pair("会员余额支付 Balance paid", money(extras["balance_spent"], currency))
    document.rule()
    document.text(f"链位置 Chain position {entry['position']}", align="center")
    document.text(f"{entry['hash'][:32]}", align="center")
    document.qr(verify_url)
    document.text("扫码验证小票 Scan to verify this receipt", align="center")
    if any(t["method"] == "cash" for t in sale.get("tenders", [])):
        document.kick_drawer()
    return document.finish()


def kitchen_ticket(store: dict[str, Any], order: dict[str, Any], station: str, lines: Iterable[dict[str, Any]],
                   position: int) -> bytes:
    document = Document()
    document.text(f"厨房单 KITCHEN {station.partition(':')[2] or ''}".strip(), align="center", bold=True, big=True)
    document.text(f"{CHANNEL_NAMES.get(order['channel'], order['channel'])} #{order['channel_order_id']}",
                  align="center", bold=True)
    fulfillment = order.get("fulfillment", {})
    document.text(FULFILLMENT_NAMES.get(fulfillment.get("type", ""), ""), align="center", bold=True, big=True)
    if fulfillment.get("table"):
        document.text(f"桌号 Table {fulfillment['table']}", align="center", big=True)
    if fulfillment.get("pickup_at"):
        document.text(f"取餐 Pickup {fulfillment['pickup_at']}", align="center")
    document.rule()
    for line in lines:
        document.text(f"{line['qty']} x {line['name']}", bold=True, big=True)
        if line.get("note"):
            document.text(f"   备注 Note: {line['note']}")
    document.rule()
    document.text(f"{store.get('name', '')}  #{position}  {order['order_id'][:8]}", align="center")
    return document.finish()


def refund_slip(store: dict[str, Any], refund: dict[str, Any], entry: dict[str, Any], currency: str,
                cash: bool) -> bytes:
    document = Document()
    _header(document, store, "退款单 REFUND")
    document.text(f"退款号 Refund: {refund['refund_id']}")
    document.text(f"支付号 Payment: {refund['payment_id']}")
    document.text(f"时间 Time: {entry['at']}")
    if refund.get("reason"):
        document.text(f"原因 Reason: {refund['reason']}")
    document.pair("退款金额 REFUNDED", money(refund["amount_minor"], currency), bold=True)
    document.rule()
    document.text(f"链位置 Chain position {entry['position']}", align="center")
    if cash:
        document.kick_drawer()
    return document.finish()


def recharge_slip(store: dict[str, Any], recharge: dict[str, Any], entry: dict[str, Any]) -> bytes:
    currency = recharge["currency"]
    document = Document()
    _header(document, store, "会员充值 RECHARGE")
    document.text(f"会员 Member: {recharge['member_id']}")
    document.text(f"时间 Time: {entry['at']}")
    document.pair("充值 Paid", money(recharge["paid_minor"], currency))
    if recharge.get("bonus_minor"):
        document.pair(f"赠送 Bonus {recharge.get('rule_name', '')}".strip(), money(recharge["bonus_minor"], currency))
    document.pair("到账 Credited", money(recharge["paid_minor"] + recharge.get("bonus_minor", 0), currency), bold=True)
    document.text(f"方式 Method: {TENDER_NAMES.get(recharge.get('method', 'cash'), recharge.get('method', ''))}")
    document.rule()
    document.text(f"链位置 Chain position {entry['position']}", align="center")
    if recharge.get("method", "cash") == "cash":
        document.kick_drawer()
    return document.finish()


def shift_report(store: dict[str, Any], report: dict[str, Any]) -> bytes:
    """An X (shift so far) or Z (closed shift, or the day) report as the server computed it."""
    currency = report.get("currency", "CNY")
    kind = report.get("kind", "X")
    document = Document()
    _header(document, store, f"{kind} 报表 {kind} REPORT")
    for key in ("shift_id", "terminal_id", "day", "status", "opened_at", "closed_at"):
        if report.get(key):
            document.text(f"{key}: {report[key]}")
    document.rule()
    document.pair("销售笔数 Sales", str(report.get("sales_count", 0)))
    for method, amount in sorted(report.get("tenders", {}).items()):
        document.pair(TENDER_NAMES.get(method, method), money(amount, currency))
    for method, amount in sorted(report.get("refunds", {}).items()):
        document.pair(f"退款 Refund {method}", "-" + money(amount, currency))
    for key, label in (("discounts_minor", "折扣 Discounts"), ("cash_expected_minor", "应有现金 Cash expected"),
                       ("counted_minor", "实点现金 Counted"), ("difference_minor", "差额 Difference")):
        if report.get(key) is not None:
            document.pair(label, money(int(report[key]), currency))
    document.rule()
    document.text(f"链位置 Chain position {report.get('chain_position', '')}", align="center")
    document.text(str(report.get("chain_head", ""))[:32], align="center")
    document.text(str(report.get("chain_head", ""))[32:], align="center")
    return document.finish()


def mark_reprint(payload: bytes, copy_number: int) -> bytes:
    """The stored job with a "REPRINT n" banner after its initialisation (copy 2 is reprint 1)."""
    banner = Document()
    banner.text(f"*** REPRINT {copy_number - 1} ***", align="center", bold=True, big=True)
    banner.text("", align="left")
    head = b"\x1b@" + CHINESE_MODE
    body: bytes = banner.printer.output[len(head):]
    assert payload.startswith(head)
    return head + body + payload[len(head):]
