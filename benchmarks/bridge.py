"""Latency benchmark of the live side: a sale's commit to its receipt bytes at a printer, and an
order's push to its message on the orders SSE stream.

    .venv/bin/python benchmarks/bridge.py [--sales 1000] [--rate 20] [--orders 500]

1. Starts the API in this process (uvicorn thread, fresh SQLite) so a ledger listener can stamp
   each sale's commit, and a fake ESC/POS TCP printer (tests/escpos_support.py) that stamps each
   job's arrival.
2. Starts `pos-ledger bridge` as its own process, following the store over SSE.
3. Posts `--sales` signed cash sales at `--rate` per second (a busy counter, not a flood: the
   printer is one device), decodes every receipt to match it to its chain position (the answer is
   checked: every sale printed once), and reports commit -> bytes p50/p99. Goal: p99 <= 300 ms.
4. Pushes `--orders` online orders and reports push -> SSE message p50/p99. Goal: p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.main import create_app  # noqa: E402
from api.settings import Settings  # noqa: E402
from pos_ledger.simulate import Client, Terminal, TerminalKey  # noqa: E402
from tests.bridge_support import positions_printed, sale  # noqa: E402
from tests.escpos_support import FakePrinter  # noqa: E402

ADMIN_TOKEN = "bench-admin-token"
STORE = "s1"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def start_server(database: str) -> tuple[uvicorn.Server, str, dict[int, float]]:
    app = create_app(Settings(database=database, admin_token=ADMIN_TOKEN, server_seed=os.urandom(32)))
    commits: dict[int, float] = {}
    app.state.ledger.listeners.insert(0, lambda store_id, position, head: commits.__setitem__(position,
                                                                                             time.perf_counter()))
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{port}", commits


def bench_receipts(url: str, commits: dict[int, float], client: Client, till: Terminal, sales: int, rate: float,
                   workdir: Path) -> tuple[float, float]:
    printer = FakePrinter()
    key = TerminalKey.generate("bridge-bench")
    key_file = workdir / "bridge.key"
    key_file.write_text(base64.b64encode(key.seed).decode() + "\n")
    client.register_terminal(STORE, key, "bench printer")
    bridge = subprocess.Popen([sys.executable, "-m", "pos_ledger.cli", "bridge", "--server", url, "--store", STORE,
                               "--terminal-id", key.terminal_id, "--key", str(key_file), "--printer", printer.uri,
                               "--journal", str(workdir / "journal.sqlite3")],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert bridge.stdout is not None and bridge.stdout.readline().startswith("bridge:")
        # Wait for the bridge's stream to be open: one warm-up sale must print.
        client.post_events(STORE, till.key.terminal_id, [sale(till, 100)])
        printer.wait_for_jobs(1, timeout_s=30)
        positions = []
        started = time.perf_counter()
        for index in range(sales):
            answer = client.post_events(STORE, till.key.terminal_id, [sale(till, 1000 + index)])
            positions.append(answer["results"][0]["position"])
            time.sleep(max(0.0, started + (index + 1) / rate - time.perf_counter()))
        jobs = printer.wait_for_jobs(sales + 1, timeout_s=120)
        printed = positions_printed(jobs)[1:]
        assert printed == positions, "every sale printed once, in order"
        latencies = [(arrived - commits[position]) * 1000
                     for position, arrived in zip(printed, printer.arrival_times[1:], strict=True)]
        return percentile(latencies, 0.5), percentile(latencies, 0.99)
    finally:
        bridge.terminate()
        bridge.wait(timeout=15)
        printer.close()


def bench_orders(url: str, admin: httpx.Client, orders: int) -> tuple[float, float]:
    arrivals: dict[str, float] = {}
    ready = threading.Event()

    def listen() -> None:
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request("GET", f"/v1/stores/{STORE}/orders/stream", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        response = connection.getresponse()
        ready.set()
        while len(arrivals) < orders:
            line = response.readline().decode()
            if line.startswith("data:"):
                message = json.loads(line[5:])
                arrivals.setdefault(message["order"]["channel_order_id"], time.perf_counter())
        connection.close()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(10)
    time.sleep(0.2)
    pushed: dict[str, float] = {}
    for _ in range(orders):
        channel_order_id = uuid.uuid4().hex
        pushed[channel_order_id] = time.perf_counter()
        admin.post(f"/v1/stores/{STORE}/orders", json={
            "channel": "mini_program", "channel_order_id": channel_order_id, "total_minor": 2800,
            "lines": [{"sku": "LATTE", "qty": 1, "unit_price_minor": 2800}],
            "fulfillment": {"type": "pickup"}}).raise_for_status()
        time.sleep(0.01)
    listener.join(60)
    assert len(arrivals) == orders, "every order appeared on the stream"
    latencies = [(arrivals[key] - pushed[key]) * 1000 for key in pushed]
    return percentile(latencies, 0.5), percentile(latencies, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="sales per second")
    parser.add_argument("--orders", type=int, default=500)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        server, url, commits = start_server(str(workdir / "ledger.sqlite3"))
        client = Client(url, ADMIN_TOKEN)
        client.open_store(STORE, "Bench Shop", "CNY", "Asia/Shanghai")
        client.put_menu_item(STORE, "LATTE", "拿铁 Latte", 2800, "coffee")
        till = Terminal(TerminalKey.generate("till-1"), seq=0)
        client.register_terminal(STORE, till.key, "till")
        p50, p99 = bench_receipts(url, commits, client, till, arguments.sales, arguments.rate, workdir)
        print(f"sale commit -> receipt bytes at the printer, {arguments.sales} sales at {arguments.rate:g}/s over SSE: "
              f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (goal p99 <= 300 ms: {'met' if p99 <= 300 else 'NOT met'})")
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as admin:
            p50, p99 = bench_orders(url, admin, arguments.orders)
        print(f"order push -> SSE message, {arguments.orders} orders: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"(goal p99 <= 100 ms: {'met' if p99 <= 100 else 'NOT met'})")
        client.close()
        server.should_exit = True


if __name__ == "__main__":
    main()
