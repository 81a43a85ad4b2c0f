"""The audit's balance comparison (pos_ledger/audit.py): the balances the server serves (the
`ledger_balances` table) must equal the balances refolded from the log, account by account; a
tampered table fails the audit even when every chain entry and signature is sound."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_ledger import _core
from pos_ledger.audit import audit_store
from pos_ledger.ledger import READ_EVENTS_MAX, Ledger
from tests.conftest import SERVER_SEED
from tests.test_audit import TERMINAL_SEED, _tamper, sale

SALES = 5
PRICE = 1_200


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[str, Ledger]]:
    database = str(tmp_path / "audit.sqlite3")
    ledger = Ledger(database, SERVER_SEED)
    ledger.open_store("s", "S", "CNY", "UTC")
    ledger.register_terminal("s", "t", _core.ed25519_public_key(TERMINAL_SEED), "")
    ledger.ingest("s", "t", [sale(seq, PRICE) for seq in range(1, SALES + 1)])
    try:
        yield database, ledger
    finally:
        ledger.close()


def tamper(database: str, statement: str, *params: object) -> None:
    with sqlite3.connect(database) as db:
        changed = db.execute(statement, params).rowcount
    assert changed == 1, statement


def audited(database: str) -> tuple[bool, bool, object]:
    fresh = Ledger(database, SERVER_SEED)
    try:
        report = audit_store(fresh, "s")
    finally:
        fresh.close()
    return report.ok, report.balances_match, report.first_error


def test_untampered_balances_match_the_refold(shop: tuple[str, Ledger]) -> None:
    _, ledger = shop
    report = audit_store(ledger, "s")
    assert report.ok and report.balances_match and report.first_error is None
    assert {key: value for key, value in report.balances.items() if value} == {
        ("asset:psp:alipay", "CNY"): SALES * PRICE, ("revenue:sales", "CNY"): -SALES * PRICE}


def test_a_changed_served_balance_fails_the_audit(shop: tuple[str, Ledger]) -> None:
    database, _ = shop
    tamper(database, "UPDATE ledger_balances SET debit_minor = debit_minor + 1 WHERE account = ?",
           "asset:psp:alipay")
    # Every entry is sound: only the comparison of balances can see this.
    assert audited(database) == (False, False, None)


def test_a_moved_balance_that_still_balances_fails_the_audit(shop: tuple[str, Ledger]) -> None:
    database, _ = shop
    # Both sides changed by the same amount: the table still balances, but not as the log says.
    tamper(database, "UPDATE ledger_balances SET debit_minor = debit_minor - 100 WHERE account = ?",
           "asset:psp:alipay")
    tamper(database, "INSERT INTO ledger_balances VALUES ('s', 'asset:cash:t', 'CNY', 100, 0)")
    assert audited(database) == (False, False, None)


def test_a_served_account_the_log_never_moved_fails_the_audit(shop: tuple[str, Ledger]) -> None:
    database, _ = shop
    tamper(database, "INSERT INTO ledger_balances VALUES ('s', 'asset:ghost', 'CNY', 5, 0)")
    assert audited(database) == (False, False, None)


def test_a_deleted_served_balance_fails_the_audit(shop: tuple[str, Ledger]) -> None:
    database, _ = shop
    tamper(database, "DELETE FROM ledger_balances WHERE account = ?", "revenue:sales")
    assert audited(database) == (False, False, None)


def test_a_served_balance_in_another_currency_fails_the_audit(shop: tuple[str, Ledger]) -> None:
    database, _ = shop
    tamper(database, "UPDATE ledger_balances SET currency = 'USD' WHERE account = ?", "asset:psp:alipay")
    assert audited(database) == (False, False, None)


def test_an_account_served_at_zero_equals_an_account_never_served(shop: tuple[str, Ledger]) -> None:
    database, _ = shop
    # Debits equal to credits is a zero balance, as the refold of an account that was never moved.
    tamper(database, "INSERT INTO ledger_balances VALUES ('s', 'asset:cash:t', 'CNY', 700, 700)")
    assert audited(database) == (True, True, None)


def test_the_other_stores_balances_do_not_count(shop: tuple[str, Ledger]) -> None:
    database, _ = shop
    tamper(database, "INSERT INTO ledger_balances VALUES ('other', 'asset:psp:alipay', 'CNY', 1, 0)")
    assert audited(database) == (True, True, None)


def test_a_log_longer_than_a_page_is_audited_whole(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path / "long.sqlite3"), SERVER_SEED)
    try:
        ledger.open_store("s", "S", "CNY", "UTC")
        ledger.register_terminal("s", "t", _core.ed25519_public_key(TERMINAL_SEED), "")
        ledger.ingest("s", "t", [sale(seq, 100) for seq in range(1, READ_EVENTS_MAX + 1)])
        pages: list[int] = []
        report = audit_store(ledger, "s", pages.append)
        length = READ_EVENTS_MAX + 2
        assert report.ok and (report.length, report.signatures_checked) == (length, length)
        assert pages == [READ_EVENTS_MAX, 2]
        assert (bytes.fromhex(report.head), report.length) == ledger.chain("s")
        assert report.balances[("asset:psp:alipay", "CNY")] == READ_EVENTS_MAX * 100
    finally:
        ledger.close()


def test_changed_postings_are_named_as_differing_from_the_rules(shop: tuple[str, Ledger]) -> None:
    database, _ = shop
    # The chain hash covers the body and signature, not the postings: the replay of the rules catches it.
    _tamper(database, 5, {"postings": '[["asset:psp:alipay","CNY",1100],["revenue:sales","CNY",-1100]]'})
    fresh = Ledger(database, SERVER_SEED)
    try:
        report = audit_store(fresh, "s")
    finally:
        fresh.close()
    assert report.first_error == (5, "postings_differ_from_rules")
    assert not report.ok


def _resign_from(database: str, position: int, signature: bytes) -> None:
    """An attacker with database access replaces entry `position`'s signature and recomputes the chain
    from there, so every stored hash links: only the signature check can see it."""
    import json

    from pos_ledger.ledger import chain_hash

    with sqlite3.connect(database) as db:
        rows = [(rowid, json.loads(state)) for rowid, state in db.execute("SELECT rowid, state FROM stored_events")]
        rows.sort(key=lambda row: row[1]["position"])
        head = bytes.fromhex(rows[position - 2][1]["hash"]) if position > 1 else bytes(32)
        for rowid, state in rows[position - 1:]:
            if state["position"] == position:
                state["sig"] = signature.hex()
            head = chain_hash(head, state["body"].encode(), bytes.fromhex(state["sig"]))
            state["hash"] = head.hex()
            db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (json.dumps(state).encode(), rowid))


def test_a_forged_signature_under_a_recomputed_chain_is_named(shop: tuple[str, Ledger]) -> None:
    database, _ = shop
    reader = Ledger(database, SERVER_SEED)
    body = reader.read_entries("s", 3, 1)[0].body.encode()
    reader.close()
    _resign_from(database, 4, _core.ed25519_sign(bytes([3]) * 32, body))  # signed, but not by the till's key
    fresh = Ledger(database, SERVER_SEED)
    try:
        report = audit_store(fresh, "s")
    finally:
        fresh.close()
    assert report.first_error == (4, "bad_signature")
    assert report.store_id == "s" and not report.ok


def test_the_audit_replays_a_tills_cash_through_its_drawer(tmp_path: Path) -> None:
    """A cash sale fills the drawer of the till that sent it; a paid out of that cash is only valid if
    the replay put the sale's cash in that drawer (and booked it to that till's cash account)."""
    from pos_ledger.payments.drawer import Shifts

    database = str(tmp_path / "cash.sqlite3")
    ledger = Ledger(database, SERVER_SEED)
    try:
        ledger.open_store("s", "S", "CNY", "UTC")
        ledger.register_terminal("s", "t", _core.ed25519_public_key(TERMINAL_SEED), "")
        shifts = Shifts(ledger)
        shift = shifts.open("s", "t", 0)
        cash_sale = sale(1, 700)
        cash_sale = type(cash_sale)(cash_sale.body.replace(b'"alipay"', b'"cash"'), b"")
        cash_sale = type(cash_sale)(cash_sale.body, _core.ed25519_sign(TERMINAL_SEED, cash_sale.body))
        results, _ = ledger.ingest("s", "t", [cash_sale])
        assert results[0].status == "accepted"
        shifts.move_cash("s", shift.shift_id, "paid_out", 700, "to the bank")
        auditor = Ledger(database, SERVER_SEED)
        report = audit_store(auditor, "s")
        auditor.close()
        assert report.ok, report
        assert report.balances[("asset:cash:t", "CNY")] == 0
        assert report.balances[("clearing:cash:paid_out", "CNY")] == 700
    finally:
        ledger.close()
