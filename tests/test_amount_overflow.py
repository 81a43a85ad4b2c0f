"""An account's running totals stay within PostgreSQL's bigint: `amount_overflow`, on both databases."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from pos_ledger.bounds import BALANCE_MINOR_MAX, AccountTotals
from pos_ledger.events import EventRejected
from pos_ledger.ledger import Ledger, SignedEvent
from pos_ledger.money import AMOUNT_MINOR_MAX
from pos_ledger.simulate import Client, Terminal, TerminalKey
from tests.conftest import SERVER_SEED

#: Sales of the largest amount an event may carry that fit under the bound; one more does not.
FULL_SALES = BALANCE_MINOR_MAX // AMOUNT_MINOR_MAX


def sale(total_minor: int) -> dict[str, Any]:
    return {"order_id": str(uuid.uuid4()), "currency": "CNY",
            "lines": [{"sku": "GOLD", "name": "Gold bar", "qty": 1, "unit_price_minor": total_minor}],
            "discount_minor": 0, "total_minor": total_minor,
            "tenders": [{"method": "cash", "amount_minor": total_minor}]}


def signed(terminal: Terminal, data: dict[str, Any]) -> SignedEvent:
    event = terminal.sign("sale.completed", data, datetime.now(UTC))
    return SignedEvent(event["body"].encode(), base64.b64decode(event["sig"]))


def fill(ledger: Ledger, terminal: Terminal) -> None:
    """Takes `asset:cash:t1` and `revenue:sales` to within one largest sale of the bound."""
    for start in range(0, FULL_SALES, 1_000):
        batch = [signed(terminal, sale(AMOUNT_MINOR_MAX)) for _ in range(min(1_000, FULL_SALES - start))]
        results, _ = ledger.ingest("s1", "t1", batch)
        assert {r.status for r in results} == {"accepted"}


def cash_balance(ledger: Ledger) -> int:
    return next(d - c for account, _, d, c in ledger.balances("s1") if account == "asset:cash:t1")


def test_totals_refuse_what_would_pass_the_bound() -> None:
    totals = AccountTotals()
    totals.add([("a", "CNY", BALANCE_MINOR_MAX - 5), ("b", "CNY", -(BALANCE_MINOR_MAX - 5))])
    totals.check([("a", "CNY", 5), ("b", "CNY", -5)])
    with pytest.raises(EventRejected) as refused:
        totals.check([("a", "CNY", 6), ("b", "CNY", -6)])
    assert refused.value.reason == "amount_overflow"
    with pytest.raises(EventRejected):  # credits are bounded too
        totals.check([("c", "CNY", 6), ("b", "CNY", -6)])
    totals.check([("a", "CNY", -10), ("c", "CNY", 10)])  # the other side of `a` has room


def test_an_overflowing_sale_is_rejected_alone_and_the_next_sale_succeeds(database: str) -> None:
    ledger = Ledger(database, SERVER_SEED)
    try:
        ledger.open_store("s1", "Shop", "CNY", "Asia/Shanghai")
        key = TerminalKey.generate("t1")
        ledger.register_terminal("s1", "t1", key.public_key, "till")
        terminal = Terminal(key)
        fill(ledger, terminal)
        before_head, before_length = ledger.chain("s1")
        results, _ = ledger.ingest("s1", "t1", [signed(terminal, sale(2_800)),
                                                 signed(terminal, sale(AMOUNT_MINOR_MAX)),
                                                 signed(terminal, sale(900))])
        assert [(r.status, r.reason) for r in results] == [
            ("accepted", None), ("rejected", "amount_overflow"), ("accepted", None)]
        assert ledger.chain("s1")[1] == before_length + 2
        assert cash_balance(ledger) == FULL_SALES * AMOUNT_MINOR_MAX + 3_700
        assert isinstance(cash_balance(ledger), int)
        assert before_head != ledger.chain("s1")[0]
    finally:
        ledger.close()
    # A restarted server folds the totals back from the log: still refused, ordinary sales still fine.
    again = Ledger(database, SERVER_SEED)
    try:
        results, _ = again.ingest("s1", "t1", [signed(terminal, sale(AMOUNT_MINOR_MAX)), signed(terminal, sale(100))])
        assert [r.reason for r in results] == ["amount_overflow", None]
    finally:
        again.close()


def test_an_overflowing_command_is_409_and_writes_nothing(shop: tuple[Client, Terminal], admin: httpx.Client,
                                                          live_server: Any) -> None:
    _, terminal = shop
    ledger: Ledger = live_server.ledger
    fill(ledger, terminal)
    _, length = ledger.chain("s1")
    payment = {"amount_minor": AMOUNT_MINOR_MAX, "currency": "CNY", "order_ref": "gold-1", "method": "cash",
               "terminal_id": "t1"}
    refused = admin.post("/v1/stores/s1/payments", json=payment)
    assert refused.status_code == 409, refused.text
    assert refused.json()["reason"] == "amount_overflow"
    assert ledger.chain("s1")[1] == length
    ok = admin.post("/v1/stores/s1/payments", json={**payment, "amount_minor": 2_800, "order_ref": "tea-1"})
    assert ok.status_code == 201, ok.text
