"""The demo store: a tea-and-coffee shop with a menu, one till and a day of sales.

Seeded over HTTP through the same ingest path real terminals use.
"""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pos_ledger.simulate import Client, Terminal, TerminalKey, sell

DEMO_STORE_ID = "demo"
DEMO_TIMEZONE = "Asia/Shanghai"
DEMO_OWNER = "owner"
DEMO_TERMINAL_ID = "till-1"
DEMO_SALES = 320
DEMO_MENU = (
    ("LATTE", "拿铁 Latte", 2800, "coffee"),
    ("AMERICANO", "美式 Americano", 2200, "coffee"),
    ("CAPPUCCINO", "卡布奇诺 Cappuccino", 2800, "coffee"),
    ("FLATWHITE", "澳白 Flat White", 3000, "coffee"),
    ("MOCHA", "摩卡 Mocha", 3200, "coffee"),
    ("MILKTEA", "珍珠奶茶 Bubble Milk Tea", 1800, "tea"),
    ("OOLONG", "冻顶乌龙 Oolong Tea", 1600, "tea"),
    ("MATCHA", "抹茶拿铁 Matcha Latte", 2600, "tea"),
    ("LEMONTEA", "柠檬茶 Lemon Tea", 1500, "tea"),
    ("CROISSANT", "可颂 Croissant", 1400, "bakery"),
    ("EGGTART", "葡式蛋挞 Egg Tart", 900, "bakery"),
    ("MOONCAKE", "月饼 Mooncake", 1200, "bakery"),
    ("SANDWICH", "鸡肉三明治 Chicken Sandwich", 3200, "food"),
    ("BAOZI", "鲜肉包 Pork Bun", 600, "food"),
    ("NOODLES", "牛肉面 Beef Noodles", 3800, "food"),
    ("WATER", "矿泉水 Water", 300, "drinks"),
)


def terminal_key(var_dir: Path) -> TerminalKey:
    path = var_dir / "demo-terminal.seed"
    if path.exists():
        return TerminalKey(DEMO_TERMINAL_ID, base64.b64decode(path.read_text()))
    key = TerminalKey.generate(DEMO_TERMINAL_ID)
    var_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(base64.b64encode(key.seed).decode())
    path.chmod(0o600)
    return key


def seed_demo(base_url: str, admin_token: str, var_dir: Path, sales: int = DEMO_SALES) -> str:
    """Create and fill the demo store unless it exists; returns what was done."""
    client = Client(base_url, admin_token)
    try:
        if client.store(DEMO_STORE_ID) is not None:
            return f"demo store {DEMO_STORE_ID!r} already present"
        client.open_store(DEMO_STORE_ID, "Demo Tea & Coffee 示范茶咖", "CNY", DEMO_TIMEZONE)
        for sku, name, price_minor, category in DEMO_MENU:
            client.put_menu_item(DEMO_STORE_ID, sku, name, price_minor, category)
        key = terminal_key(var_dir)
        client.register_terminal(DEMO_STORE_ID, key, "Front counter till")
        till = Terminal(key)
        accepted = 0
        # The same weekday last week, yesterday and today so far: the dashboard compares them.
        today = datetime.now(ZoneInfo(DEMO_TIMEZONE)).date()
        for days_ago, count in ((7, sales // 2), (1, sales), (0, sales // 2)):
            counts = sell(client, DEMO_STORE_ID, [till], count, batch_size=50, currency="CNY",
                          timezone=DEMO_TIMEZONE, day=today - timedelta(days=days_ago), seed=7 + days_ago,
                          until=datetime.now(UTC))
            accepted += counts["accepted"]
        scene = seed_counter(client)
        owner = seed_owner(client, var_dir)
        orders = seed_orders(client)
        return f"demo store {DEMO_STORE_ID!r} seeded: {accepted} sales accepted; {scene}; {orders}; {owner}"
    finally:
        client.close()


#: A scanned WeChat Pay payment code the sandbox captures (18 digits starting 10-15).
DEMO_WECHAT_CODE = "134567890123456789"


def seed_counter(client: Client) -> str:
    """Today at the counter, through the same HTTP API a till uses: an open shift with a float,
    a member program with two members (one recharged with a bonus), a "100 minus 20" campaign
    with an issued coupon, a scanned-code payment, a cash payment and a QR waiting to be scanned."""
    store = f"/v1/stores/{DEMO_STORE_ID}"

    def post(path: str, body: dict[str, Any], method: str = "POST") -> Any:
        return client._ok(client.http.request(method, store + path, json=body))

    shift = post("/shifts", {"float_minor": 50_000, "terminal_id": DEMO_TERMINAL_ID})
    post("/member-program", {
        "recharge_rules": [{"name": "充100送20 pay 100 get 20", "paid_minor_min": 10_000, "bonus_minor": 2_000},
                           {"name": "充300送80 pay 300 get 80", "paid_minor_min": 30_000, "bonus_minor": 8_000}],
        "tiers": [{"tier": "silver", "points_lifetime_min": 500}, {"tier": "gold", "points_lifetime_min": 2_000}],
        "earn_minor_per_point": 100, "point_value_minor": 1}, method="PUT")
    for member_id, name in (("m-0001", "王小明 Wang Xiaoming"), ("m-0002", "李华 Li Hua")):
        post("/members", {"member_id": member_id, "name": name})
    post("/members/m-0001/recharge", {"amount_minor": 30_000, "currency": "CNY", "method": "cash",
                                      "recharge_id": "demo-recharge-1", "terminal_id": DEMO_TERMINAL_ID})
    now = datetime.now(UTC)
    post("/campaigns", {"campaign_id": "demo-100-20", "name": "满100减20 100 minus 20", "kind": "cash_off",
                        "threshold_minor": 10_000, "off_minor": 2_000, "quota_total": 500,
                        "valid_from": (now - timedelta(days=1)).isoformat(),
                        "valid_until": (now + timedelta(days=30)).isoformat(), "issue_rule": "manual"})
    post("/campaigns/demo-100-20/issue", {"member_id": "m-0002"})
    order = f"demo-{uuid.uuid4().hex[:12]}"
    scanned = post("/payments", {"amount_minor": 5_600, "currency": "CNY", "order_ref": order,
                                 "auth_code": DEMO_WECHAT_CODE, "terminal_id": DEMO_TERMINAL_ID})
    post("/payments", {"amount_minor": 3_100, "currency": "CNY", "order_ref": f"{order}-cash", "method": "cash",
                       "tendered_minor": 5_000, "terminal_id": DEMO_TERMINAL_ID})
    waiting = post("/payments", {"amount_minor": 2_800, "currency": "CNY", "order_ref": f"{order}-qr",
                                 "terminal_id": DEMO_TERMINAL_ID})
    return (f"shift {shift['shift_id']} open on {DEMO_TERMINAL_ID}; members m-0001 and m-0002; "
            f"campaign demo-100-20; payments {scanned['payment_id']} ({scanned['status']}), "
            f"QR {waiting['payment_id']} waiting at {store}/payments/{waiting['payment_id']}/qr.svg")


def seed_owner(client: Client, var_dir: Path) -> str:
    """The store owner's back-office account; its password is kept beside the database (0600)."""
    path = var_dir / "demo-owner.password"
    password = secrets.token_urlsafe(12)
    var_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(password + "\n")
    client._ok(client.http.post(f"/v1/stores/{DEMO_STORE_ID}/staff",
                                json={"username": DEMO_OWNER, "password": password, "role": "owner"}))
    return f"back office: log in as {DEMO_OWNER!r} with the password in {path}"


def seed_orders(client: Client) -> str:
    """Two online orders at the counter: one waiting to be accepted, one being prepared."""
    store = f"/v1/stores/{DEMO_STORE_ID}"
    placed = []
    orders: tuple[tuple[str, list[dict[str, Any]], dict[str, str]], ...] = (
        ("mini_program", [{"sku": "LATTE", "qty": 2, "unit_price_minor": 2800},
                          {"sku": "EGGTART", "qty": 2, "unit_price_minor": 900, "note": "少糖 less sugar"}],
         {"type": "pickup"}),
        ("meituan", [{"sku": "NOODLES", "qty": 1, "unit_price_minor": 3800},
                     {"sku": "MILKTEA", "qty": 1, "unit_price_minor": 1800}],
         {"type": "delivery", "address": "人民路 88 号 88 Renmin Road"}),
    )
    for channel, lines, fulfillment in orders:
        order = client._ok(client.http.post(f"{store}/orders", json={
            "channel": channel, "channel_order_id": f"demo-{uuid.uuid4().hex[:10]}", "lines": lines,
            "fulfillment": fulfillment,
            "total_minor": sum(line["qty"] * line["unit_price_minor"] for line in lines)}))
        placed.append(order["order_id"])
    client._ok(client.http.post(f"{store}/orders/{placed[1]}/accept", json={}))
    client._ok(client.http.post(f"{store}/orders/{placed[1]}/start", json={}))
    return f"online orders {placed[0]} (placed) and {placed[1]} (preparing) on the order board"
