"""Running `pos-ledger bridge` as a real child process against the live server and a fake printer."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pos_ledger.simulate import Client, Terminal, TerminalKey

ROOT = Path(__file__).resolve().parent.parent
STORE = "s1"


def make_key(path: Path, terminal_id: str) -> TerminalKey:
    """A key file as `pos-ledger keygen` writes it."""
    key = TerminalKey.generate(terminal_id)
    path.write_text(base64.b64encode(key.seed).decode() + "\n")
    return key


class BridgeProcess:
    def __init__(self, server_url: str, key_file: Path, journal: Path, printer_uri: str,
                 stations: tuple[str, ...] = ("receipt",), terminal_id: str = "bridge-1",
                 extra: tuple[str, ...] = ()) -> None:
        self.args = [sys.executable, "-m", "pos_ledger.cli", "bridge", "--server", server_url, "--store", STORE,
                     "--terminal-id", terminal_id, "--key", str(key_file), "--printer", printer_uri,
                     "--journal", str(journal), *[a for s in stations for a in ("--station", s)], *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env, cwd=ROOT)
        self.journal = journal

    def wait_started(self, timeout_s: float = 20.0) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("bridge:"), (line, self.process.stderr.read() if self.process.poll() is not None else "")
        return line

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode)


def journal_rows(journal: Path) -> list[tuple[int, str, int, str]]:
    import sqlite3

    with sqlite3.connect(journal) as connection:
        rows = connection.execute("SELECT position, station, copy, state FROM jobs ORDER BY id").fetchall()
    return [(int(p), str(s), int(c), str(t)) for p, s, c, t in rows]


def sale(terminal: Terminal, total_minor: int, cash: bool = True, name: str = "拿铁 Latte") -> dict[str, str]:
    tender: dict[str, Any] = ({"method": "cash", "amount_minor": total_minor + 500, "change_minor": 500} if cash
                              else {"method": "wechat", "amount_minor": total_minor})
    return terminal.sign("sale.completed", {
        "order_id": str(uuid.uuid4()), "currency": "CNY",
        "lines": [{"sku": "LATTE", "name": name, "qty": 1, "unit_price_minor": total_minor}],
        "discount_minor": 0, "total_minor": total_minor, "tenders": [tender]}, datetime.now(UTC))


def sell(client: Client, terminal: Terminal, totals: list[int], cash: bool = True) -> list[int]:
    """Post one sale per total; their log positions."""
    positions = []
    for total in totals:
        answer = client.post_events(STORE, terminal.key.terminal_id, [sale(terminal, total, cash)])
        result = answer["results"][0]
        assert result["status"] == "accepted", result
        positions.append(int(result["position"]))
    return positions


def register(admin: httpx.Client, key: TerminalKey) -> None:
    response = admin.post(f"/v1/stores/{STORE}/terminals",
                          json={"terminal_id": key.terminal_id, "public_key": key.public_key_b64, "label": "printer"})
    assert response.status_code == 201, response.text


def wait_until(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(interval_s)


def positions_printed(jobs: list[bytes]) -> list[int]:
    """The chain position printed on each receipt (the decoder reads it back)."""
    from tests.escpos_support import decode

    found = []
    for job in jobs:
        text = decode(job).text
        marker = "Chain position "
        found.append(int(text[text.index(marker) + len(marker):].split()[0]))
    return found


def body_types(admin: httpx.Client) -> list[dict[str, Any]]:
    entries = admin.get(f"/v1/stores/{STORE}/events", params={"limit": 1000}).json()
    return [json.loads(e["body"]) | {"terminal_id": e["terminal_id"]} for e in entries]
