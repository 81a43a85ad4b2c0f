"""`pos-ledger bridge` bad input: a clear message and an exit code, never a traceback; `--from`; reports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.bridge_support import ROOT, STORE, BridgeProcess, make_key, positions_printed, register, sell
from tests.conftest import LiveServer
from tests.escpos_support import FakePrinter, decode


def run_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pos_ledger.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=timeout_s)


def bridge_args(server: str, key: Path, printer: str, journal: Path, terminal_id: str = "bridge-1") -> list[str]:
    return ["bridge", "--server", server, "--store", STORE, "--terminal-id", terminal_id, "--key", str(key),
            "--printer", printer, "--journal", str(journal)]


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_printer_uris_keys_and_stations_are_clear_errors(tmp_path: Path) -> None:
    key = tmp_path / "bridge.key"
    make_key(key, "bridge-1")
    journal = tmp_path / "journal.sqlite3"
    for uri in ("lpt1", "tcp://printer", "tcp://host:99999", "usb:zz:1", "serial:/tmp/x", "file:"):
        result = run_cli(*bridge_args("http://127.0.0.1:9", key, uri, journal))
        assert_clean_failure(result, 2, "printer URI" if uri != "tcp://host:99999" else "port")
    unreadable = tmp_path / "missing.key"
    assert_clean_failure(run_cli(*bridge_args("http://127.0.0.1:9", unreadable, "dummy", journal)), 2,
                         "cannot read the key file")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    assert_clean_failure(run_cli(*bridge_args("http://127.0.0.1:9", garbage, "dummy", journal)), 2, "keygen")
    short = tmp_path / "short.key"
    short.write_text("AAAA\n")
    assert_clean_failure(run_cli(*bridge_args("http://127.0.0.1:9", short, "dummy", journal)), 2, "32-byte")
    result = run_cli(*bridge_args("http://127.0.0.1:9", key, "dummy", journal), "--station", "bar")
    assert_clean_failure(result, 2, "unknown station")
    assert_clean_failure(run_cli("bridge", "--printer", "dummy"), 2, "missing --server")
    assert_clean_failure(run_cli("bridge", "reprint", "5", "--journal", str(tmp_path / "none.sqlite3")), 2,
                         "no journal")


def test_unreachable_server_unregistered_and_revoked_terminals(live_server: LiveServer, shop: Any,
                                                               admin: httpx.Client, tmp_path: Path) -> None:
    key = tmp_path / "bridge.key"
    journal = tmp_path / "journal.sqlite3"
    make_key(key, "bridge-1")
    assert_clean_failure(run_cli(*bridge_args("http://127.0.0.1:9", key, "dummy", journal)), 1, "cannot reach")
    assert_clean_failure(run_cli(*bridge_args(live_server.url, key, "dummy", journal)), 3, "refused terminal")
    register(admin, make_key(key, "bridge-1"))
    assert admin.delete(f"/v1/stores/{STORE}/terminals/bridge-1").status_code == 204
    assert_clean_failure(run_cli(*bridge_args(live_server.url, key, "dummy", journal)), 3, "revoked")


def test_from_prints_the_past_and_a_journal_is_bound_to_its_printer(live_server: LiveServer, shop: Any,
                                                                    admin: httpx.Client, tmp_path: Path) -> None:
    client, terminal = shop
    key = tmp_path / "bridge.key"
    register(admin, make_key(key, "bridge-1"))
    past = sell(client, terminal, [1200, 1300])
    printer = FakePrinter()
    journal = tmp_path / "journal.sqlite3"
    bridge = BridgeProcess(live_server.url, key, journal, printer.uri, extra=("--from", str(past[1])))
    try:
        bridge.wait_started()
        assert positions_printed(printer.wait_for_jobs(1)) == [past[1]]
    finally:
        bridge.stop()
        printer.close()
    other = run_cli(*bridge_args(live_server.url, key, "dummy", journal))
    assert_clean_failure(other, 2, "belongs to printer")


def test_x_and_z_reports_print_on_request(live_server: LiveServer, shop: Any, admin: httpx.Client,
                                          tmp_path: Path) -> None:
    client, terminal = shop
    key = tmp_path / "bridge.key"
    register(admin, make_key(key, "bridge-1"))
    shift = admin.post(f"/v1/stores/{STORE}/shifts", json={"terminal_id": "t1", "float_minor": 10000}).json()
    sell(client, terminal, [3150])
    printer = FakePrinter()
    journal = tmp_path / "journal.sqlite3"
    bridge = BridgeProcess(live_server.url, key, journal, printer.uri)
    try:
        bridge.wait_started()
        common = ["bridge", "--server", live_server.url, "--store", STORE, "--terminal-id", "bridge-1",
                  "--key", str(key), "--journal", str(journal)]
        queued = run_cli(*common, "report", "x", "--shift", shift["shift_id"])
        assert queued.returncode == 0, queued.stderr
        report = decode(printer.wait_for_jobs(1)[0])
        assert "X REPORT" in report.text and "31.50" in report.text and report.cuts == 1
        assert_clean_failure(run_cli(*common, "report", "y", "--shift", "x"), 2, "x or z")
    finally:
        bridge.stop()
        printer.close()
