"""The demo store: a tea-and-coffee shop with a menu, one till and a day of sales.

Seeded over HTTP through the same ingest path real terminals use.
"""

from __future__ import annotations

import base64
from datetime import date, timedelta
from pathlib import Path

from pos_ledger.simulate import Client, Terminal, TerminalKey, sell

DEMO_STORE_ID = "demo"
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
        client.open_store(DEMO_STORE_ID, "Demo Tea & Coffee 示范茶咖", "CNY", "Asia/Shanghai")
        for sku, name, price_minor, category in DEMO_MENU:
            client.put_menu_item(DEMO_STORE_ID, sku, name, price_minor, category)
        key = terminal_key(var_dir)
        client.register_terminal(DEMO_STORE_ID, key, "Front counter till")
        counts = sell(client, DEMO_STORE_ID, [Terminal(key)], sales, batch_size=50,
                      currency="CNY", timezone="Asia/Shanghai", day=date.today() - timedelta(days=1))
        return f"demo store {DEMO_STORE_ID!r} seeded: {counts['accepted']} sales accepted"
    finally:
        client.close()
