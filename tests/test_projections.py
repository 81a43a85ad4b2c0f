"""The projections runner: exactly once across runners and crashes, a failing event stops its
projection with the error, rebuild from zero, the CLI, and wake-ups through Redis."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from pos_ledger.cli import app as cli
from pos_ledger.ledger import Ledger, SignedEvent
from pos_ledger.simulate import Terminal, TerminalKey
from projections import reports
from projections.base import Entry
from projections.db import ReadDatabase, Sql
from projections.runner import LedgerLog, ProjectionRunner
from projections.sales import SalesProjection
from tests.conftest import SERVER_SEED

DAY = date(2026, 3, 1)
AT = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)


def seed(ledger: Ledger, sales: int, store: str = "s", batch: int = 500) -> Terminal:
    """A store (UTC) and `sales` one-line sales of sku A (qty 1..3, 1000 each), in batches."""
    if store not in ledger.store_ids():
        ledger.open_store(store, "S", "CNY", "UTC")
    terminal = Terminal(TerminalKey.generate(f"t{secrets.token_hex(2)}"), seq=0)
    ledger.register_terminal(store, terminal.key.terminal_id, terminal.key.public_key, "")
    events = []
    for index in range(sales):
        qty = index % 3 + 1
        data = {"order_id": str(uuid.uuid4()), "currency": "CNY", "discount_minor": 0, "total_minor": 1000 * qty,
                "lines": [{"sku": "A", "name": "A", "qty": qty, "unit_price_minor": 1000}],
                "tenders": [{"method": "card", "amount_minor": 1000 * qty}]}
        signed = terminal.sign("sale.completed", data, AT)
        events.append(SignedEvent(signed["body"].encode(), base64.b64decode(signed["sig"])))
    for start in range(0, len(events), batch):
        results, _ = ledger.ingest(store, terminal.key.terminal_id, events[start:start + batch])
        assert all(r.status == "accepted" for r in results)
    return terminal


def expected_totals(sales: int) -> dict[str, int]:
    items = sum(index % 3 + 1 for index in range(sales))
    return {"orders": sales, "items": items, "gross_minor": 1000 * items, "discount_minor": 0,
            "net_minor": 1000 * items, "refunds_minor": 0}


def totals(db: ReadDatabase, store: str = "s") -> dict[str, int]:
    with db.read() as sql:
        report = reports.sales(sql, store, DAY, DAY, "day")
    result: dict[str, int] = report["totals"]
    return result


class Picky(SalesProjection):
    """The sales read model, except that it cannot fold a sale of sku "BAD" while `picky` is set."""

    name: ClassVar[str] = "picky"
    tables: ClassVar[tuple[str, ...]] = ()
    schema: ClassVar[tuple[str, ...]] = ()
    picky = True
    folded: ClassVar[list[int]] = []

    def fold(self, sql: Sql, store_id: str, batch: Any, entry: Entry) -> None:
        if self.picky and entry.type == "sale.completed" and entry.data.lines[0].sku == "BAD":
            raise ValueError("cannot fold a BAD sale")
        Picky.folded.append(entry.position)

    def flush(self, sql: Sql, store_id: str, batch: Any) -> None:
        return None


def test_a_failing_event_stops_its_projection_there_with_the_error(ledger: Ledger, database: str) -> None:
    terminal = seed(ledger, 5)
    bad = {"order_id": str(uuid.uuid4()), "currency": "CNY", "discount_minor": 0, "total_minor": 10,
           "lines": [{"sku": "BAD", "name": "bad", "qty": 1, "unit_price_minor": 10}],
           "tenders": [{"method": "card", "amount_minor": 10}]}
    signed = terminal.sign("sale.completed", bad, AT)
    results, _ = ledger.ingest("s", terminal.key.terminal_id,
                               [SignedEvent(signed["body"].encode(), base64.b64decode(signed["sig"]))])
    bad_position = results[0].position
    assert bad_position is not None
    seed(ledger, 3)
    db = ReadDatabase(database)
    picky = Picky()
    Picky.folded.clear()
    runner = ProjectionRunner(db, LedgerLog(ledger), [SalesProjection(), picky], batch_events=4)
    try:
        runner.run_store("s")
        status = {s.name: s for s in runner.status("s")}
        length = ledger.chain("s")[1]
        assert status["sales"].position == length and status["sales"].error is None
        assert status["picky"].position == bad_position - 1
        assert status["picky"].lag == length - bad_position + 1
        assert f"position {bad_position}" in (status["picky"].error or "")
        assert "cannot fold a BAD sale" in (status["picky"].error or "")
        assert bad_position not in Picky.folded and max(Picky.folded) < bad_position
        runner.run_store("s")  # a stopped projection stays stopped: the event is never skipped
        assert {s.name: s.position for s in runner.status("s")}["picky"] == bad_position - 1
        runner.run_store("s", retry_failed=True)  # still failing: same place, same error
        assert {s.name: s.position for s in runner.status("s")}["picky"] == bad_position - 1
        picky.picky = False  # the bug is fixed
        runner.run_store("s", retry_failed=True)
        status = {s.name: s for s in runner.status("s")}
        assert status["picky"].position == length and status["picky"].error is None
        assert bad_position in Picky.folded
    finally:
        db.close()


def test_runners_racing_on_one_store_fold_each_entry_once(ledger: Ledger, database: str) -> None:
    """Two runners with their own connections (as two servers would be) on the same store."""
    seed(ledger, 400)
    databases = [ReadDatabase(database) for _ in range(3)]
    runners = [ProjectionRunner(db, LedgerLog(ledger), batch_events=7) for db in databases]
    try:
        threads = [threading.Thread(target=r.run_store, args=("s",)) for r in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert totals(databases[0]) == expected_totals(400)
        length = ledger.chain("s")[1]
        assert all(s.position == length and s.error is None for s in runners[0].status("s"))
    finally:
        for db in databases:
            db.close()


def test_rebuild_from_zero_gives_the_same_reports(ledger: Ledger, database: str) -> None:
    seed(ledger, 50)
    db = ReadDatabase(database)
    runner = ProjectionRunner(db, LedgerLog(ledger), batch_events=9)
    try:
        runner.run_store("s")
        before = totals(db)
        assert before == expected_totals(50)
        assert runner.start_rebuild("s") is True
        assert totals(db)["orders"] == 0 and all(s.rebuilding and s.position == 0 for s in runner.status("s"))
        assert runner.start_rebuild("s") is False  # under way: resumes, does not empty again
        runner.run_store("s")
        runner.finish_rebuild("s")
        assert totals(db) == before
        assert not any(s.rebuilding for s in runner.status("s"))
    finally:
        db.close()


def _sales_position(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=5) as connection:
            row = connection.execute("SELECT position FROM rm_positions WHERE store_id = 's' AND name = 'sales'"
                                     ).fetchone()
    except sqlite3.OperationalError:  # the table is not there yet
        return 0
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_kill_9_mid_rebuild_then_resume_counts_every_sale_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(str(path), SERVER_SEED)
    sales = 20_000
    try:
        seed(ledger, sales, batch=1000)
        length = ledger.chain("s")[1]
    finally:
        ledger.close()
    environment = {**os.environ, "POS_LEDGER_SERVER_KEY": base64.b64encode(SERVER_SEED).decode()}
    command = [sys.executable, "-m", "pos_ledger.cli", "projections", "rebuild", "--db", str(path), "--store", "s"]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _sales_position(path) == 0:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _sales_position(path)
    assert 0 < killed_at < length, "the kill landed after the rebuild finished: make the log longer"
    status = CliRunner().invoke(cli, ["projections", "status", "--db", str(path), "--store", "s"], env=environment)
    assert "rebuilding" in status.output
    resumed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    db = ReadDatabase(str(path))
    try:
        assert totals(db) == expected_totals(sales)
    finally:
        db.close()
    status = CliRunner().invoke(cli, ["projections", "status", "--db", str(path)], env=environment)
    assert status.exit_code == 0 and "rebuilding" not in status.output and str(length) in status.output


def test_cli_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["projections", "status", "--db", str(tmp_path / "none.sqlite3")])
    assert missing.exit_code == 2 and "no database" in missing.output and "Traceback" not in missing.output
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(str(path), SERVER_SEED)
    seed(ledger, 3)
    ledger.close()
    environment = {"POS_LEDGER_SERVER_KEY": base64.b64encode(SERVER_SEED).decode()}
    unknown = runner.invoke(cli, ["projections", "run", "--db", str(path), "--store", "nowhere"], env=environment)
    assert unknown.exit_code == 2 and "nowhere" in unknown.output and unknown.exception is not None
    assert isinstance(unknown.exception, SystemExit)
    wrong = runner.invoke(cli, ["projections", "run", "--db", str(path), "--projection", "nope"], env=environment)
    assert wrong.exit_code == 2 and "no projection 'nope'" in wrong.output
    done = runner.invoke(cli, ["projections", "run", "--db", str(path)], env=environment)
    assert done.exit_code == 0, done.output
    db = ReadDatabase(str(path))
    try:
        assert totals(db) == expected_totals(3)
    finally:
        db.close()


@pytest.mark.postgres
@pytest.mark.redis
def test_a_commit_in_another_process_wakes_the_runner_through_redis(pg_database: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Two servers on one PostgreSQL database: the one that did not write learns of it from Redis."""
    from projections import service as service_module
    from projections.fanout import RedisFanout
    from projections.service import ProjectionService

    monkeypatch.setattr(service_module, "POLL_S", 120.0)  # so only a wake-up can explain the catch-up
    store = f"r{secrets.token_hex(4)}"
    writer = Ledger(pg_database, SERVER_SEED)
    writer.listeners.append(RedisFanout("redis://127.0.0.1:6379/0"))
    reader = Ledger(pg_database, SERVER_SEED)
    writer.open_store(store, "S", "CNY", "UTC")
    follower = ProjectionService(reader, pg_database, "redis://127.0.0.1:6379/0")
    follower.start()
    try:
        time.sleep(1.5)  # the first catch-up and the subscription
        seed(writer, 20, store=store)
        length = writer.chain(store)[1]
        deadline = time.monotonic() + 10
        while min(p for p, _, _ in follower.runner.positions(store).values()) < length:
            assert time.monotonic() < deadline, follower.runner.positions(store)
            time.sleep(0.05)
        assert totals(follower.db, store) == expected_totals(20)
    finally:
        follower.stop()
        writer.close()
        reader.close()

