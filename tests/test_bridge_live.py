"""The bridge as a real process: live server, fake TCP printer, kill -9, printer off, dropped jobs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bridge_support import (
    ROOT,
    STORE,
    BridgeProcess,
    body_types,
    journal_rows,
    make_key,
    positions_printed,
    register,
    sell,
    wait_until,
)
from tests.conftest import LiveServer
from tests.escpos_support import FakePrinter, decode

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def printer() -> Any:
    fake = FakePrinter()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def bridge_key(tmp_path: Path, admin: httpx.Client, shop: Any) -> Path:
    key_file = tmp_path / "bridge.key"
    register(admin, make_key(key_file, "bridge-1"))
    return key_file


def start(live_server: LiveServer, key: Path, journal: Path, printer_uri: str, *stations: str,
          extra: tuple[str, ...] = ()) -> BridgeProcess:
    bridge = BridgeProcess(live_server.url, key, journal, printer_uri, stations or ("receipt",), extra=extra)
    bridge.wait_started()
    return bridge


def test_receipts_print_once_from_the_end_of_the_log_and_are_reported(
        live_server: LiveServer, shop: Any, admin: httpx.Client, bridge_key: Path, printer: FakePrinter,
        tmp_path: Path) -> None:
    client, terminal = shop
    before = sell(client, terminal, [1000])  # before the bridge: not printed (an empty journal starts at the end)
    bridge = start(live_server, bridge_key, tmp_path / "journal.sqlite3", printer.uri)
    try:
        [cash_sale] = sell(client, terminal, [3150])
        [qr_sale] = sell(client, terminal, [2000], cash=False)
        jobs = printer.wait_for_jobs(2)
        assert positions_printed(jobs) == [cash_sale, qr_sale]
        cash_receipt, qr_receipt = decode(jobs[0]), decode(jobs[1])
        assert "拿铁 Latte" in cash_receipt.text and "31.50" in cash_receipt.text and "Test Shop" in cash_receipt.text
        assert cash_receipt.cuts == 1 and len(cash_receipt.drawer_pulses) == 1
        assert qr_receipt.drawer_pulses == [] and "20.00" in qr_receipt.text
        # The QR opens the proof of the receipt's chain position, without a credential.
        [url] = cash_receipt.qr_codes
        proof = httpx.get(url, timeout=10)
        assert proof.status_code == 200 and proof.json()["position"] == cash_sale
        assert httpx.get(url[:-4] + "0000", timeout=10).status_code == 404
        reported = wait_until(lambda: [e for e in body_types(admin) if e["type"] == "print.completed"] or None)
        wait_until(lambda: len([e for e in body_types(admin) if e["type"] == "print.completed"]) == 2)
        assert reported[0]["terminal_id"] == "bridge-1"
        state = admin.get(f"/v1/stores/{STORE}/printers").json()["printers"]
        assert state[0]["state"] == "ok" and state[0]["printer"] == printer.uri
        assert before[0] not in positions_printed(printer.jobs)
    finally:
        assert bridge.stop() == 0
    # Restarted, it prints nothing again.
    again = start(live_server, bridge_key, tmp_path / "journal.sqlite3", printer.uri)
    try:
        [third] = sell(client, terminal, [500])
        assert positions_printed(printer.wait_for_jobs(3)) == [cash_sale, qr_sale, third]
        time.sleep(1.0)
        assert len(printer.jobs) == 3
    finally:
        again.stop()


def test_kitchen_tickets_split_by_station(live_server: LiveServer, shop: Any, admin: httpx.Client,
                                          bridge_key: Path, printer: FakePrinter, tmp_path: Path) -> None:
    bridge = start(live_server, bridge_key, tmp_path / "journal.sqlite3", printer.uri,
                   "kitchen:coffee", "kitchen:bakery")
    try:
        order = admin.post(f"/v1/stores/{STORE}/orders", json={
            "channel": "meituan", "channel_order_id": "MT-1",
            "lines": [{"sku": "LATTE", "qty": 2, "unit_price_minor": 2800, "note": "去冰"},
                      {"sku": "TART", "qty": 3, "unit_price_minor": 900}],
            "fulfillment": {"type": "dine_in", "table": "A3"}, "total_minor": 8300}).json()
        time.sleep(0.5)
        assert printer.jobs == []  # placed is not accepted: nothing for the kitchen yet
        admin.post(f"/v1/stores/{STORE}/orders/{order['order_id']}/accept", json={}).raise_for_status()
        coffee, bakery = (decode(job).text for job in printer.wait_for_jobs(2))
        assert "Latte" in coffee and "去冰" in coffee and "Egg tart" not in coffee and "A3" in coffee
        assert "Egg tart" in bakery and "Latte" not in bakery and "美团" in bakery
    finally:
        bridge.stop()


def test_kill_minus_nine_mid_job_loses_and_doubles_nothing(live_server: LiveServer, shop: Any,
                                                          bridge_key: Path, printer: FakePrinter,
                                                          tmp_path: Path) -> None:
    client, terminal = shop
    journal = tmp_path / "journal.sqlite3"
    printer.confirm_delay_s = 0.6  # each job takes a while to print: the kill lands in the middle of one
    bridge = start(live_server, bridge_key, journal, printer.uri)
    positions = sell(client, terminal, [100 * (i + 1) for i in range(6)])
    printer.wait_for_jobs(2)
    wait_until(lambda: any(state == "sent" for *_, state in journal_rows(journal)), interval_s=0.01)
    bridge.kill()
    printer.confirm_delay_s = 0.0
    restarted = start(live_server, bridge_key, journal, printer.uri)
    try:
        wait_until(lambda: all(state in ("confirmed", "unknown") for *_, state in journal_rows(journal))
                   and len(journal_rows(journal)) == 6)
        time.sleep(1.0)
        printed = positions_printed(printer.jobs)
        assert sorted(printed) == positions, printed  # every ticket once: none lost, none doubled
        flagged = [p for p, _, _, state in journal_rows(journal) if state == "unknown"]
        assert len(flagged) == 1  # the job in flight at the kill: its bytes had left, it is not reprinted
    finally:
        restarted.stop()


@pytest.mark.parametrize("off_s", [3.0, pytest.param(30.0, marks=pytest.mark.slow)])
def test_printer_off_then_on_prints_each_ticket_once_in_order(live_server: LiveServer, shop: Any,
                                                              admin: httpx.Client, bridge_key: Path,
                                                              printer: FakePrinter, tmp_path: Path,
                                                              off_s: float) -> None:
    client, terminal = shop
    bridge = start(live_server, bridge_key, tmp_path / "journal.sqlite3", printer.uri)
    try:
        printer.switch_off()
        started = time.monotonic()
        positions = sell(client, terminal, [100 * (i + 1) for i in range(8)])
        wait_until(lambda: any(e["type"] == "print.failed" for e in body_types(admin)))
        failed = admin.get(f"/v1/stores/{STORE}/printers").json()["printers"][0]
        assert failed["state"] == "printer_offline"
        time.sleep(max(0.0, off_s - (time.monotonic() - started)))
        assert printer.jobs == []
        printer.switch_on()
        assert positions_printed(printer.wait_for_jobs(8, timeout_s=30)) == positions  # once each, in order
        time.sleep(1.0)
        assert len(printer.jobs) == 8
        wait_until(lambda: admin.get(f"/v1/stores/{STORE}/printers").json()["printers"][0]["state"] == "ok")
        offline_reports = [e for e in body_types(admin) if e["type"] == "print.failed"]
        assert len(offline_reports) == 1  # reported once, not once per retry
    finally:
        bridge.stop()


def test_a_dropped_job_is_flagged_not_reprinted_and_reprint_is_explicit(
        live_server: LiveServer, shop: Any, admin: httpx.Client, bridge_key: Path, printer: FakePrinter,
        tmp_path: Path) -> None:
    client, terminal = shop
    journal = tmp_path / "journal.sqlite3"
    bridge = start(live_server, bridge_key, journal, printer.uri)
    try:
        printer.drop_after_bytes = 200  # the cable is pulled in the middle of the next job
        [dropped] = sell(client, terminal, [3150])
        wait_until(lambda: journal_rows(journal) and journal_rows(journal)[0][3] == "unknown")
        [next_sale] = sell(client, terminal, [900])
        assert positions_printed(printer.wait_for_jobs(1)) == [next_sale]
        time.sleep(1.0)
        assert len(printer.jobs) == 1  # the unknown job was not printed again by itself
        failed = wait_until(lambda: [e for e in body_types(admin) if e["type"] == "print.failed"] or None)
        assert failed[0]["data"]["reason"] == "unknown_outcome" and failed[0]["data"]["position"] == dropped
        reprint = subprocess.run([sys.executable, "-m", "pos_ledger.cli", "bridge", "reprint", str(dropped),
                                  "--journal", str(journal)], capture_output=True, text=True, cwd=ROOT,
                                 env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
        assert reprint.returncode == 0, reprint.stderr
        assert "reprint 1" in reprint.stdout
        jobs = printer.wait_for_jobs(2)
        marked = decode(jobs[1])
        assert "REPRINT 1" in marked.text and "31.50" in marked.text
        assert positions_printed([jobs[1]]) == [dropped]
        wait_until(lambda: (dropped, "receipt", 2, "confirmed") in journal_rows(journal))
        # The back office's button: a request in the log that this bridge acts on, once.
        button = admin.post(f"/v1/stores/{STORE}/printers/bridge-1/reprints", json={"position": dropped})
        assert button.status_code == 202, button.text
        assert "REPRINT 2" in decode(printer.wait_for_jobs(3)[2]).text
        for bad, reason in (({"position": dropped}, "terminal_unknown"), ({"position": 10**6}, "position_unknown")):
            terminal_id = "nobody" if reason == "terminal_unknown" else "bridge-1"
            refused = admin.post(f"/v1/stores/{STORE}/printers/{terminal_id}/reprints", json=bad)
            assert refused.status_code == 409 and refused.json()["reason"] == reason
        time.sleep(1.0)
        assert len(printer.jobs) == 3
    finally:
        bridge.stop()
