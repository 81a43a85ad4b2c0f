"""A terminal that sells from the menu: builds sales, signs them, posts them over HTTP.

Used by `pos-ledger simulate`, by the demo seeding of `pos-ledger serve --demo`
and by the load benchmark. It is a real client: it only speaks the HTTP contract.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from pos_ledger import _core, httpsig

#: Share of sales per tender method in a Chinese high-street shop (rough, for demo data).
TENDER_MIX = (("wechat", 45), ("alipay", 33), ("cash", 12), ("unionpay", 6), ("card", 4))
#: Hour of day -> relative footfall.
FOOTFALL = {8: 6, 9: 8, 10: 6, 11: 10, 12: 16, 13: 12, 14: 7, 15: 7, 16: 6, 17: 9, 18: 12, 19: 9, 20: 5}


@dataclass
class TerminalKey:
    terminal_id: str
    seed: bytes

    @classmethod
    def generate(cls, terminal_id: str) -> TerminalKey:
        return cls(terminal_id, secrets.token_bytes(32))

    @property
    def public_key(self) -> bytes:
        return _core.ed25519_public_key(self.seed)

    @property
    def public_key_b64(self) -> str:
        return base64.b64encode(self.public_key).decode()


@dataclass
class MenuEntry:
    sku: str
    name: str
    price_minor: int


@dataclass
class Terminal:
    """One till: its key and its own strictly increasing sequence."""

    key: TerminalKey
    #: Start from the clock so a restarted simulator never reuses a sequence number.
    seq: int = field(default_factory=lambda: time.time_ns() // 1_000)

    def sign(self, event_type: str, data: dict[str, Any], at: datetime) -> dict[str, str]:
        self.seq += 1
        body = json.dumps(
            {"id": str(uuid.uuid4()), "seq": self.seq, "type": event_type,
             "at": at.isoformat(timespec="seconds"), "data": data},
            ensure_ascii=False, separators=(",", ":"),
        ).encode()
        sig = _core.ed25519_sign(self.key.seed, body)
        return {"body": body.decode(), "sig": base64.b64encode(sig).decode()}

    def sign_request(self, method: str, path: str, body: bytes = b"",
                     idempotency_key: str | None = None) -> dict[str, str]:
        """The RFC 9421 headers of one cashier command: a fresh nonce every call, so a retry is signed
        again (the server refuses a nonce it has seen), and the Idempotency-Key signed when given."""
        return httpsig.sign_request(self.key.seed, self.key.terminal_id, method, path, body, int(time.time()),
                                    idempotency_key=idempotency_key)


def random_sale(rng: random.Random, menu: list[MenuEntry], currency: str) -> dict[str, Any]:
    """A plausible basket: 1-4 distinct items, sometimes two of one, an occasional discount."""
    picks = rng.sample(menu, k=min(len(menu), rng.choice((1, 1, 2, 2, 3, 4))))
    lines: list[dict[str, Any]] = [
        {"sku": m.sku, "name": m.name, "qty": rng.choice((1, 1, 1, 2)), "unit_price_minor": m.price_minor}
        for m in picks
    ]
    gross = sum(int(line["qty"]) * int(line["unit_price_minor"]) for line in lines)
    discount = (gross // 10 // 100) * 100 if rng.random() < 0.1 else 0
    total = gross - discount
    method = rng.choices([m for m, _ in TENDER_MIX], weights=[w for _, w in TENDER_MIX])[0]
    tender: dict[str, Any] = {"method": method, "amount_minor": total}
    if method == "cash":
        paid = -(-total // 5000) * 5000 if total else 0  # rounded up to a 50 note
        tender = {"method": "cash", "amount_minor": paid, "change_minor": paid - total}
    return {"order_id": str(uuid.uuid4()), "currency": currency, "lines": lines,
            "discount_minor": discount, "total_minor": total, "tenders": [tender] if total else []}


def day_of_sales(rng: random.Random, day: date, timezone: str, count: int) -> Iterator[datetime]:
    """`count` sale times over a shop's opening hours, busier at lunch and dinner."""
    zone = ZoneInfo(timezone)
    hours = rng.choices(list(FOOTFALL), weights=list(FOOTFALL.values()), k=count)
    times = sorted(
        datetime(day.year, day.month, day.day, hour, tzinfo=zone) + timedelta(seconds=rng.randrange(3600))
        for hour in hours
    )
    yield from times


class Client:
    """Thin HTTP client for the endpoints a terminal and the back office use."""

    def __init__(self, base_url: str, admin_token: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {"authorization": f"Bearer {admin_token}"} if admin_token else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise RuntimeError(f"{response.request.method} {response.request.url}: "
                               f"{response.status_code} {response.text}")
        return response.json() if response.content else None

    def open_store(self, store_id: str, name: str, currency: str, timezone: str) -> Any:
        return self._ok(self.http.post("/v1/stores", json={
            "store_id": store_id, "name": name, "currency": currency, "timezone": timezone}))

    def store(self, store_id: str) -> Any | None:
        response = self.http.get(f"/v1/stores/{store_id}")
        return None if response.status_code == 404 else self._ok(response)

    def register_terminal(self, store_id: str, key: TerminalKey, label: str) -> Any:
        return self._ok(self.http.post(f"/v1/stores/{store_id}/terminals", json={
            "terminal_id": key.terminal_id, "public_key": key.public_key_b64, "label": label}))

    def put_menu_item(self, store_id: str, sku: str, name: str, price_minor: int, category: str) -> Any:
        return self._ok(self.http.put(f"/v1/stores/{store_id}/menu/{sku}", json={
            "name": name, "price_minor": price_minor, "category": category}))

    def menu(self, store_id: str) -> list[MenuEntry]:
        items = self._ok(self.http.get(f"/v1/stores/{store_id}/menu"))
        return [MenuEntry(i["sku"], i["name"], i["price_minor"]) for i in items]

    def post_events(self, store_id: str, terminal_id: str, events: list[dict[str, str]]) -> Any:
        return self._ok(self.http.post(
            f"/v1/stores/{store_id}/terminals/{terminal_id}/events", json={"events": events}))


def sell(
    client: Client,
    store_id: str,
    terminals: list[Terminal],
    sales: int,
    batch_size: int,
    *,
    currency: str,
    timezone: str,
    day: date,
    seed: int = 7,
    until: datetime | None = None,
    on_batch: Callable[[int], None] = lambda n: None,
) -> dict[str, int]:
    """Sell `sales` baskets over the terminals; each terminal posts its own batches, concurrently.

    Like a real till, a terminal has one batch in flight and resends it until answered.
    Sales the day would have after `until` (today's, later than now) are not made.
    """
    rng = random.Random(seed)
    menu = client.menu(store_id)
    if not menu:
        raise RuntimeError(f"store {store_id!r} has no menu to sell from")
    queues: dict[str, list[dict[str, str]]] = {t.key.terminal_id: [] for t in terminals}
    times = [at for at in day_of_sales(rng, day, timezone, sales) if until is None or at <= until]
    for i, at in enumerate(times):
        terminal = terminals[i % len(terminals)]
        queues[terminal.key.terminal_id].append(terminal.sign("sale.completed", random_sale(rng, menu, currency), at))
    counts: dict[str, int] = {"accepted": 0, "duplicate": 0, "rejected": 0}
    lock = threading.Lock()

    def post_all(terminal_id: str) -> None:
        queue = queues[terminal_id]
        for start in range(0, len(queue), batch_size):
            batch = queue[start:start + batch_size]
            answer = client.post_events(store_id, terminal_id, batch)
            with lock:
                for result in answer["results"]:
                    counts[result["status"]] += 1
            on_batch(len(batch))

    with ThreadPoolExecutor(max_workers=len(terminals)) as pool:
        for future in [pool.submit(post_all, terminal_id) for terminal_id in queues]:
            future.result()
    return counts
