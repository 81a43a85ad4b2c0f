"""kill -9 the server while a client streams batches; every acknowledged event survives exactly once."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from pos_ledger.simulate import Client, MenuEntry, Terminal, TerminalKey, random_sale
from tests.conftest import ADMIN_TOKEN, SERVER_SEED, free_port

pytestmark = pytest.mark.slow

EVENTS = 3_000
BATCH = 50


def start_server(database: str, port: int, *options: str) -> subprocess.Popen[bytes]:
    """`pos-ledger serve` as its own process (more `serve` options after the port), once /healthz answers."""
    env = dict(os.environ, POS_LEDGER_ADMIN_TOKEN=ADMIN_TOKEN,
               POS_LEDGER_SERVER_KEY=base64.b64encode(SERVER_SEED).decode())
    process = subprocess.Popen(
        [sys.executable, "-m", "pos_ledger.cli", "serve", "--db", database, "--port", str(port), *options],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not start: {process.stderr.read() if process.stderr else ''}")


def test_kill_9_mid_stream_loses_no_acknowledged_event(tmp_path: Path) -> None:
    import random

    database = str(tmp_path / "crash.sqlite3")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(database, port)
    client = Client(url, ADMIN_TOKEN, timeout_s=5)
    client.open_store("s", "Crash test", "CNY", "Asia/Shanghai")
    terminal = Terminal(TerminalKey.generate("t"), seq=0)
    client.register_terminal("s", terminal.key, "")
    rng = random.Random(1)
    menu = [MenuEntry("A", "Tea", 1500), MenuEntry("B", "Cake", 2300)]
    from datetime import UTC, datetime

    events = [terminal.sign("sale.completed", random_sale(rng, menu, "CNY"), datetime.now(UTC))
              for _ in range(EVENTS)]
    acknowledged: dict[str, int] = {}
    done = threading.Event()

    def stream() -> None:
        for start in range(0, EVENTS, BATCH):
            batch = events[start:start + BATCH]
            while True:
                try:
                    answer = client.post_events("s", "t", batch)
                    break
                except (httpx.HTTPError, RuntimeError):
                    time.sleep(0.05)  # server down: retry the same batch, as a terminal does
            for result in answer["results"]:
                assert result["status"] in ("accepted", "duplicate"), result
                previous = acknowledged.setdefault(result["id"], result["position"])
                assert previous == result["position"]
        done.set()

    worker = threading.Thread(target=stream)
    worker.start()
    while len(acknowledged) < EVENTS // 3:
        time.sleep(0.005)
    server.send_signal(signal.SIGKILL)
    server.wait()
    acked_before_crash = dict(acknowledged)
    server = start_server(database, port)
    try:
        worker.join(timeout=120)
        assert done.is_set()
        log: list[dict[str, object]] = []
        after = 0
        while True:
            page = client.http.get(f"{url}/v1/stores/s/events", params={"after": after, "limit": 1000}).json()
            log.extend(page)
            if not page:
                break
            after = page[-1]["position"]
        ids = [json.loads(str(e["body"]))["id"] for e in log if e["terminal_id"] == "t"]
        assert len(ids) == len(set(ids)) == EVENTS
        positions = {json.loads(str(e["body"]))["id"]: e["position"] for e in log}
        for event_id, position in acked_before_crash.items():
            assert positions[event_id] == position
        head = bytes(32)
        for index, entry in enumerate(log, start=1):
            assert entry["position"] == index
            head = hashlib.sha256(head + str(entry["body"]).encode() + base64.b64decode(str(entry["sig"]))).digest()
            assert entry["hash"] == head.hex()
        assert client.http.get(f"{url}/v1/stores/s/chain").json() == {"head": head.hex(), "length": len(log)}
    finally:
        client.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
