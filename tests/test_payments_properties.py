"""Property: for any sequence of sales, payments, refunds and cash movements, every entry's postings balance,
refunds never exceed captures, the drawer's expected cash equals its account in the books, a replay
from the log rebuilds the same drawer and payments, and the auditor finds the log sound."""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos_ledger.audit import audit_store
from pos_ledger.catalog.payments import payments_of
from pos_ledger.catalog.shifts import shifts_of
from pos_ledger.errors import EventRefused, PosLedgerError
from pos_ledger.ledger import Ledger, SignedEvent, postings_of
from pos_ledger.payments.drawer import Shifts
from pos_ledger.payments.service import Payments
from pos_ledger.simulate import Terminal, TerminalKey
from tests.conftest import SERVER_SEED

STORE = "p1"
TILL = "t1"
DRAWER = f"asset:cash:{TILL}"

amounts = st.integers(min_value=1, max_value=50_000)
operation = st.one_of(
    st.tuples(st.just("open"), st.integers(min_value=0, max_value=20_000)),
    st.tuples(st.just("cash_payment"), amounts, st.integers(min_value=0, max_value=10_000)),
    st.tuples(st.just("card_payment"), amounts),
    st.tuples(st.just("cash_sale"), amounts, st.integers(min_value=0, max_value=5_000),
              st.integers(min_value=0, max_value=5_000)),
    st.tuples(st.just("apply"), st.integers(min_value=0, max_value=100), st.integers(min_value=0, max_value=3_000)),
    st.tuples(st.just("refund"), st.integers(min_value=0, max_value=100), st.integers(min_value=1, max_value=100)),
    st.tuples(st.just("paid_in"), amounts),
    st.tuples(st.just("paid_out"), amounts),
    st.tuples(st.just("close"), st.integers(min_value=-500, max_value=500)),
)


class Shop:
    def __init__(self, database: str) -> None:
        self.ledger = Ledger(database, SERVER_SEED)
        self.ledger.open_store(STORE, "Prop Shop", "CNY", "Asia/Shanghai")
        self.terminal = Terminal(TerminalKey.generate(TILL), seq=0)
        self.ledger.register_terminal(STORE, TILL, self.terminal.key.public_key, "till")
        self.payments = Payments(self.ledger)
        self.shifts = Shifts(self.ledger)

    def open_shift_id(self) -> str | None:
        return shifts_of(self.ledger.store(STORE)).open_by_terminal.get(TILL)

    def sale(self, data: dict[str, Any]) -> str:
        signed = self.terminal.sign("sale.completed", data, datetime.now(UTC))
        results, _ = self.ledger.ingest(STORE, TILL, [SignedEvent(signed["body"].encode(),
                                                                  __import__("base64").b64decode(signed["sig"]))])
        return results[0].status

    def run(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        shift_id = self.open_shift_id()
        book = payments_of(self.ledger.store(STORE))
        if kind == "open" and shift_id is None:
            self.shifts.open(STORE, TILL, op[1])
        elif kind == "cash_payment":
            self.payments.create(STORE, amount_minor=op[1], currency="CNY", order_ref=uuid.uuid4().hex,
                                 method="cash", terminal_id=TILL, tendered_minor=op[1] + op[2])
        elif kind == "card_payment":
            self.payments.create(STORE, amount_minor=op[1], currency="CNY", order_ref=uuid.uuid4().hex,
                                 method="card", terminal_id=TILL)
        elif kind == "cash_sale":
            gross, discount, change = op[1], min(op[2], op[1]), op[3]
            total = gross - discount
            status = self.sale({"order_id": str(uuid.uuid4()), "currency": "CNY", "discount_minor": discount,
                                "total_minor": total,
                                "lines": [{"sku": "X", "name": "X", "qty": 1, "unit_price_minor": gross}],
                                "tenders": [{"method": "cash", "amount_minor": total + change,
                                             "change_minor": change}] if total else []})
            assert status == "accepted"
        elif kind == "apply":
            open_payments = [p for p in book.payments.values()
                             if p.status == "captured" and p.applied_order_id is None
                             and p.amount_minor > p.refunded_minor]
            if open_payments:
                payment = open_payments[op[1] % len(open_payments)]
                net = payment.amount_minor - payment.refunded_minor
                status = self.sale({"order_id": str(uuid.uuid4()), "currency": "CNY", "discount_minor": op[2],
                                    "total_minor": net,
                                    "lines": [{"sku": "Y", "name": "Y", "qty": 1, "unit_price_minor": net + op[2]}],
                                    "tenders": [{"method": payment.tender_method, "amount_minor": net,
                                                 "payment_id": payment.payment_id}]})
                assert status == "accepted"
        elif kind == "refund":
            refundable = [p for p in book.payments.values() if p.status == "captured"]
            if refundable:
                payment = refundable[op[1] % len(refundable)]
                remaining = payment.amount_minor - payment.refunded_minor
                amount = max(1, remaining * op[2] // 100)
                try:
                    self.payments.refund(STORE, payment.payment_id, refund_id=uuid.uuid4().hex[:20],
                                         amount_minor=amount)
                except EventRefused as refused:
                    assert refused.reason in ("refund_exceeds_captured", "insufficient_cash")
        elif kind in ("paid_in", "paid_out") and shift_id is not None:
            try:
                self.shifts.move_cash(STORE, shift_id, kind, op[1], "")
            except EventRefused as refused:
                assert refused.reason == "insufficient_cash"
        elif kind == "close" and shift_id is not None:
            expected = shifts_of(self.ledger.store(STORE)).drawers.get(TILL, 0)
            report = self.shifts.close(STORE, shift_id, max(0, expected + op[1]))
            assert report["difference_minor"] == report["counted_minor"] - expected

    def check(self) -> None:
        state = self.ledger.store(STORE)
        for entry in self.ledger.iter_entries(STORE):
            sums: dict[str, int] = {}
            for _, currency_code, amount in postings_of(entry):
                sums[currency_code] = sums.get(currency_code, 0) + amount
            assert all(total == 0 for total in sums.values()), entry.body
        books = {account: debit - credit for account, _, debit, credit in self.ledger.balances(STORE)}
        assert sum(books.values()) == 0
        drawer = shifts_of(state).drawers.get(TILL, 0)
        assert books.get(DRAWER, 0) == drawer >= 0
        shift_id = self.open_shift_id()
        if shift_id is not None:
            assert self.shifts.report(STORE, shift_id)["cash_expected_minor"] == drawer
        for payment in payments_of(state).payments.values():
            assert 0 <= payment.refunded_minor <= payment.amount_minor
        assert books.get("liability:unapplied_payments", 0) <= 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, min_size=1, max_size=25))
def test_postings_balance_and_the_drawer_reconciles(operations: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        database = str(Path(directory) / "ledger.sqlite3")
        shop = Shop(database)
        try:
            for op in operations:
                try:
                    shop.run(op)
                except PosLedgerError as error:  # only the rules' refusals are expected
                    assert isinstance(error, EventRefused), error
                shop.check()
            state = shop.ledger.store(STORE)
            drawers = dict(shifts_of(state).drawers)
            refunded = {p: v.refunded_minor for p, v in payments_of(state).payments.items()}
        finally:
            shop.ledger.close()
        replayed = Ledger(database, SERVER_SEED)
        try:
            state = replayed.store(STORE)
            assert dict(shifts_of(state).drawers) == drawers
            assert {p: v.refunded_minor for p, v in payments_of(state).payments.items()} == refunded
            # The auditor re-runs every rule on the replayed state and gets the same postings.
            report = audit_store(replayed, STORE)
            assert report.ok, report.first_error
        finally:
            replayed.close()
