"""The `pos-ledger` command: help, keygen, serve --demo (seeded through real HTTP ingest), chain, audit."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from pos_ledger import _core
from pos_ledger.cli import app
from tests.conftest import ADMIN_TOKEN, SERVER_SEED, free_port

runner = CliRunner()


def test_help_explains_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "keygen", "simulate", "chain", "audit"):
        assert command in result.output


def test_keygen_writes_a_usable_key_pair(tmp_path: Path) -> None:
    out = tmp_path / "till.key"
    result = runner.invoke(app, ["keygen", "--out", str(out)])
    assert result.exit_code == 0
    seed = base64.b64decode(out.read_text())
    public = base64.b64decode(Path(str(out) + ".pub").read_text())
    assert _core.ed25519_public_key(seed) == public
    assert result.output.strip() == base64.b64encode(public).decode()
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert runner.invoke(app, ["keygen", "--out", str(out)]).exit_code == 2  # no silent overwrite


def test_chain_on_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["chain", "--db", str(tmp_path / "nope.sqlite3")])
    assert result.exit_code == 2
    assert "no database" in result.output


@pytest.mark.slow
def test_serve_demo_seeds_a_day_of_sales_then_chain_and_audit_agree(tmp_path: Path) -> None:
    database = tmp_path / "var" / "pos-ledger.sqlite3"
    port = free_port()
    env = dict(os.environ, POS_LEDGER_ADMIN_TOKEN=ADMIN_TOKEN,
               POS_LEDGER_SERVER_KEY=base64.b64encode(SERVER_SEED).decode())
    server = subprocess.Popen(
        [sys.executable, "-m", "pos_ledger.cli", "serve", "--demo", "--db", str(database), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        deadline = time.monotonic() + 90
        sales = 0
        while time.monotonic() < deadline:
            try:
                chain = httpx.get(f"{url}/v1/stores/demo/chain", headers=admin, timeout=2)
                if chain.status_code == 200:
                    events = httpx.get(f"{url}/v1/stores/demo/events", params={"limit": 1000}, headers=admin).json()
                    sales = sum('"sale.completed"' in e["body"] for e in events)
                    if any('"order.started"' in e["body"] for e in events):  # the demo's last step
                        break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert sales >= 300
        assert any(e["terminal_id"] == "till-1" for e in events)
        menu = httpx.get(f"{url}/v1/stores/demo/menu", headers=admin).json()
        assert len(menu) >= 10
        balances = httpx.get(f"{url}/v1/stores/demo/balances", headers=admin).json()["balances"]
        assert sum(b["balance_minor"] for b in balances) == 0
        head = httpx.get(f"{url}/v1/stores/demo/chain", headers=admin).json()
        member = httpx.get(f"{url}/v1/stores/demo/members/m-0001", headers=admin).json()
        assert member["balance_minor"] == 38_000  # 300 paid + 80 bonus
        kinds = [json.loads(e["body"])["type"] for e in events]
        assert {"shift.opened", "stored_value.recharged", "coupon.issued", "payment.captured"} <= set(kinds)
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=20)
    assert "admin token" not in output  # it was given, so not printed
    result = runner.invoke(app, ["chain", "--store", "demo", "--db", str(database)], env=env)
    assert result.exit_code == 0, result.output
    assert head["head"] in result.output and str(head["length"]) in result.output
    result = runner.invoke(app, ["audit", "--store", "demo", "--db", str(database)], env=env)
    assert result.exit_code == 0, result.output
    assert "balances match" in result.output
