"""`pos-ledger checkpoint`, `export` and `audit --export/--witness/--server-key`: exit codes and messages."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pos_ledger import _core
from pos_ledger.cli import app
from pos_ledger.ledger import Ledger
from tests.conftest import SERVER_SEED
from tests.tamper_support import LogRewriter
from tests.test_anchors import ATTACKER_SEED, STORE, fill

runner = CliRunner()
ENV = {"POS_LEDGER_SERVER_KEY": base64.b64encode(SERVER_SEED).decode()}


@pytest.fixture
def db(database: str) -> str:
    ledger = Ledger(database, SERVER_SEED)
    try:
        fill(ledger)
    finally:
        ledger.close()
    return database


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=ENV)
    return result.exit_code, result.output


def test_checkpoint_export_and_audit_agree(db: str, tmp_path: Path) -> None:
    witness = tmp_path / "w.json"
    code, output = run("checkpoint", "--db", db, "--store", STORE, "--out", str(witness))
    assert code == 0, output
    signed = json.loads(witness.read_text())
    assert set(signed) == {"store_id", "position", "chain_head", "at", "signature"}
    assert (signed["store_id"], signed["position"]) == (STORE, 20)
    code, output = run("checkpoint", "--db", db, "--store", STORE)
    assert code == 0 and json.loads(output)["position"] == 20  # it wrote nothing to the log
    key = tmp_path / "server.pub"
    key.write_text(base64.b64encode(_core.ed25519_public_key(SERVER_SEED)).decode())

    code, output = run("audit", "--db", db, "--store", STORE, "--witness", str(witness), "--server-key", str(key))
    assert code == 0, output
    assert "extends the witness at position 20" in output and "balances match" in output

    code, output = run("export", "--db", db, "--store", STORE, "--out", str(tmp_path / "x"))
    assert code == 0, output
    assert "positions 1..20" in output
    code, output = run("audit", "--export", str(tmp_path / "x"), "--witness", str(witness), "--server-key", str(key))
    assert code == 0, output
    assert f"store {STORE}: 20 events" in output and "manifest: positions 1..20" in output
    assert run("audit", "--export", str(tmp_path / "x"), "--store", STORE)[0] == 0
    code, output = run("audit", "--export", str(tmp_path / "x"), "--store", "other")
    assert code == 1 and "PROBLEM: the export holds store 's', not 'other'" in output
    code, output = run("export", "--db", db, "--store", STORE, "--out", str(tmp_path / "x"))
    assert code == 2 and "not empty" in output
    code, output = run("export", "--db", db, "--store", STORE, "--from", "5", "--to", "99", "--out", str(tmp_path / "y"))
    assert code == 2 and "range" in output


def test_audit_names_a_cut_tail_and_a_wrong_server_key(db: str, tmp_path: Path) -> None:
    witness = tmp_path / "w.json"
    assert run("checkpoint", "--db", db, "--store", STORE, "--out", str(witness))[0] == 0
    rewriter = LogRewriter(db, STORE)
    rewriter.write(rewriter.entries()[:17])
    assert run("audit", "--db", db, "--store", STORE)[0] == 0  # the rows alone agree with themselves
    code, output = run("audit", "--db", db, "--store", STORE, "--witness", str(witness))
    assert code == 1
    assert "FIRST MISMATCH at position 18: log_cut" in output
    other = tmp_path / "other.pub"
    other.write_text(base64.b64encode(_core.ed25519_public_key(ATTACKER_SEED)).decode())
    code, output = run("audit", "--db", db, "--store", STORE, "--server-key", str(other))
    assert code == 1 and "FIRST MISMATCH at position 1: server_key_differs" in output
    seed_file = tmp_path / "server_ed25519.seed"
    seed_file.write_bytes(SERVER_SEED)
    assert run("audit", "--db", db, "--store", STORE, "--server-key", str(seed_file))[0] == 0


def test_an_edited_export_exits_1_and_bad_input_exits_2(db: str, tmp_path: Path) -> None:
    assert run("export", "--db", db, "--store", STORE, "--out", str(tmp_path / "x"))[0] == 0
    events = tmp_path / "x" / "events.jsonl"
    events.write_text(events.read_text().replace("1200", "1300", 1))
    code, output = run("audit", "--export", str(tmp_path / "x"))
    assert code == 1
    assert "PROBLEM: events.jsonl does not match its SHA-256 in the manifest" in output
    code, output = run("audit", "--export", str(tmp_path / "missing"))
    assert code == 2 and "no export directory" in output
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2")
    code, output = run("audit", "--db", db, "--store", STORE, "--witness", str(garbage))
    assert code == 2 and "error:" in output and "Traceback" not in output
    code, output = run("audit", "--db", db, "--store", "nope")
    assert code == 2 and "no store" in output
    code, output = run("checkpoint", "--db", str(tmp_path / "nope.sqlite3"), "--store", STORE)
    assert code == 2 and "no database" in output
