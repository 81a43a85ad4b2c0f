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
