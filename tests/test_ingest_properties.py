"""Invariants of ingest, checked by hypothesis on the Ledger itself (SQLite).

* Idempotent ingest: any sequence of batches with retries, duplicates and
  reorderings of already-sent events yields the same log, chain head and
  balances as posting each event once.
* Replay equals live state: a fresh Ledger on the same database rebuilds the
  same head, length and terminal sequence state.
* Postings balance for every accepted sale, and the balances table equals the
  sum of the stored postings.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos_ledger import _core
from pos_ledger.catalog.sales import SaleCompleted, sale_postings
from pos_ledger.events import check_balanced, decode_postings
from pos_ledger.ledger import Ledger, SignedEvent
from tests.conftest import SERVER_SEED

TERMINAL_SEED = bytes([7]) * 32
METHODS = ("cash", "wechat", "alipay", "unionpay", "card")


@st.composite
def sales(draw: st.DrawFn) -> dict[str, Any]:
    lines = draw(st.lists(
        st.fixed_dictionaries({
            "sku": st.sampled_from(["LATTE", "TART", "OPEN-1"]),
            "name": st.text(min_size=1, max_size=12).filter(str.strip),
            "qty": st.integers(1, 5),
            "unit_price_minor": st.integers(0, 50_000),
        }), min_size=1, max_size=4))
    gross = sum(line["qty"] * line["unit_price_minor"] for line in lines)
    discount = draw(st.integers(0, gross))
    total = gross - discount
    methods = draw(st.lists(st.sampled_from(METHODS), min_size=1 if total else 0, max_size=3))
    tenders: list[dict[str, Any]] = []
    remaining = total
    for i, method in enumerate(methods):
        amount = remaining if i == len(methods) - 1 else draw(st.integers(0, remaining))
        remaining -= amount
        tender: dict[str, Any] = {"method": method, "amount_minor": amount}
        if method == "cash":
            change = draw(st.integers(0, 10_000))
            tender = {"method": "cash", "amount_minor": amount + change, "change_minor": change}
        tenders.append(tender)
    return {"order_id": str(uuid.uuid4()), "currency": "CNY", "lines": lines,
            "discount_minor": discount, "total_minor": total, "tenders": tenders}


def sign(seq: int, data: dict[str, Any]) -> SignedEvent:
    body = json.dumps({"id": str(uuid.uuid4()), "seq": seq, "type": "sale.completed",
                       "at": "2026-11-23T12:00:00+08:00", "data": data}, ensure_ascii=False).encode()
    return SignedEvent(body, _core.ed25519_sign(TERMINAL_SEED, body))


def fresh_ledger(directory: str) -> Ledger:
    ledger = Ledger(str(Path(directory) / "l.sqlite3"), SERVER_SEED)
    ledger.open_store("s", "S", "CNY", "Asia/Shanghai")
    ledger.register_terminal("s", "t", _core.ed25519_public_key(TERMINAL_SEED), "")
    return ledger


def snapshot(ledger: Ledger) -> tuple[Any, ...]:
    entries = ledger.read_entries("s", 0, 1000)
    bodies = [e.body for e in entries if e.terminal_id == "t"]
    return bodies, ledger.chain("s")[0], ledger.balances("s")


@st.composite
def delivery(draw: st.DrawFn, count: int) -> list[list[int]]:
    """Batches in which every event is first sent in order, and retries come anywhere, any number of times."""
    stream: list[int] = []
    for index in range(count):
        retries = draw(st.lists(st.integers(0, index), max_size=3)) if index else []
        stream.extend(retries)
        stream.append(index)
    stream.extend(draw(st.lists(st.integers(0, count - 1), max_size=4)))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=4)))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True) if stream[a:b]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), baskets=st.lists(sales(), min_size=1, max_size=8))
def test_retries_duplicates_and_reorderings_change_nothing(data: st.DataObject, baskets: list[dict[str, Any]]) -> None:
    events = [sign(seq, basket) for seq, basket in enumerate(baskets, start=1)]
    with tempfile.TemporaryDirectory() as once_dir, tempfile.TemporaryDirectory() as messy_dir:
        once = fresh_ledger(once_dir)
        messy = fresh_ledger(messy_dir)
        try:
            results, _ = once.ingest("s", "t", events)
            assert {r.status for r in results} == {"accepted"}
            for batch in data.draw(delivery(len(events))):
                answers, _ = messy.ingest("s", "t", [events[i] for i in batch])
                assert {a.status for a in answers} <= {"accepted", "duplicate"}
            # the server-originated set-up events differ (own ids and times); the terminal's log must not
            assert snapshot(messy)[0] == snapshot(once)[0]
            assert snapshot(messy)[2] == snapshot(once)[2]
            replayed = Ledger(str(Path(messy_dir) / "l.sqlite3"), SERVER_SEED)
            try:
                assert replayed.chain("s") == messy.chain("s")
                assert replayed.store("s").last_seq == messy.store("s").last_seq
            finally:
                replayed.close()
        finally:
            once.close()
            messy.close()


@settings(max_examples=200, deadline=None)
@given(sale=sales(), terminal=st.sampled_from(["t", "till-2"]))
def test_postings_balance_for_every_valid_sale(sale: dict[str, Any], terminal: str) -> None:
    import msgspec

    decoded = msgspec.convert(sale, SaleCompleted)
    postings = sale_postings(decoded, terminal)
    check_balanced(postings)
    assert all(amount != 0 for _, _, amount in postings)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(baskets=st.lists(sales(), min_size=1, max_size=10))
def test_balances_equal_the_sum_of_stored_postings(baskets: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        ledger = fresh_ledger(directory)
        try:
            ledger.ingest("s", "t", [sign(seq, b) for seq, b in enumerate(baskets, start=1)])
            sums: dict[tuple[str, str], list[int]] = {}
            for entry in ledger.iter_entries("s"):
                postings = decode_postings(entry.postings)
                check_balanced(postings)
                for account, currency, amount in postings:
                    pair = sums.setdefault((account, currency), [0, 0])
                    pair[0 if amount > 0 else 1] += abs(amount)
            assert sorted((a, c, d, k) for (a, c), (d, k) in sums.items()) == ledger.balances("s")
        finally:
            ledger.close()
