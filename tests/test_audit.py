"""The auditor finds the first position that does not match, whatever was tampered with."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from pos_ledger import _core
from pos_ledger.audit import audit_store
from pos_ledger.ledger import Ledger, SignedEvent
from tests.conftest import SERVER_SEED

TERMINAL_SEED = bytes([9]) * 32


def sale(seq: int, total: int = 1200) -> SignedEvent:
    body = json.dumps({"id": str(uuid.uuid4()), "seq": seq, "type": "sale.completed",
                       "at": "2026-11-23T09:00:00+08:00",
                       "data": {"order_id": str(uuid.uuid4()), "currency": "CNY",
                                "lines": [{"sku": "T", "name": "Tea", "qty": 1, "unit_price_minor": total}],
                                "discount_minor": 0, "total_minor": total,
                                "tenders": [{"method": "alipay", "amount_minor": total}]}}).encode()
    return SignedEvent(body, _core.ed25519_sign(TERMINAL_SEED, body))


@pytest.fixture
def filled(tmp_path: Path) -> tuple[str, Ledger]:
    database = str(tmp_path / "audit.sqlite3")
    ledger = Ledger(database, SERVER_SEED)
    ledger.open_store("s", "S", "CNY", "Asia/Shanghai")
    ledger.register_terminal("s", "t", _core.ed25519_public_key(TERMINAL_SEED), "")
    ledger.ingest("s", "t", [sale(seq) for seq in range(1, 40)])
    return database, ledger


def test_a_sound_log_audits_clean(filled: tuple[str, Ledger]) -> None:
    _, ledger = filled
    report = audit_store(ledger, "s")
    assert report.ok, report
    assert (bytes.fromhex(report.head), report.length) == ledger.chain("s")
    assert report.signatures_checked == report.length == 41
    assert report.balances[("asset:psp:alipay", "CNY")] == 39 * 1200


def _tamper(database: str, position: int, change: dict[str, str]) -> None:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT rowid, state FROM stored_events").fetchall()
        for rowid, state in rows:
            decoded = json.loads(state)
            if decoded.get("position") == position:
                decoded.update(change)
                db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?",
                           (json.dumps(decoded).encode(), rowid))


@pytest.mark.parametrize("what", ["body", "postings", "sig"])
def test_tampering_is_named_at_its_position(filled: tuple[str, Ledger], what: str) -> None:
    database, _ = filled
    fresh = Ledger(database, SERVER_SEED)
    original = fresh.read_entries("s", 19, 1)[0]
    change = {
        "body": {"body": original.body.replace("1200", "1100")},
        "postings": {"postings": '[["asset:psp:alipay","CNY",1100],["revenue:sales","CNY",-1100]]'},
        "sig": {"sig": bytes(64).hex()},
    }[what]
    _tamper(database, 20, change)
    report = audit_store(Ledger(database, SERVER_SEED), "s")
    assert not report.ok
    assert report.first_error is not None and report.first_error[0] == 20, report.first_error
