"""Webhook fan-out benchmark: deliveries/s to 10 local receivers and p99 from commit to delivery.

    .venv/bin/python benchmarks/webhooks.py [--events 2000] [--rate 250] [--receivers 10] [--batch 10]

1. Ten receivers (ten apps installed in one store, each with its own endpoint) run in a
   separate process: a minimal keep-alive HTTP/1.1 server answering 204, recording each
   message's arrival time; a sample of messages is verified with the PyPI
   `standardwebhooks` package.
2. This process holds the ledger (SQLite in a temp dir) and the real dispatcher
   (`api.webhooks.Dispatcher`, the one the server runs), and commits `--events` voucher
   write-offs at `--rate` events/s in batches of `--batch` (one commit each); a ledger
   listener stamps each commit.
3. Reported: deliveries/s over the run (first commit to last delivery), p50/p99 latency
   from commit to arrival, and checks: every receiver got every event exactly once, in
   log order, with valid signatures.
Goal on the 2-core machine: >= 2,000 deliveries/s and p99 <= 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.platform import Platform  # noqa: E402
from api.ratelimit import RateLimit  # noqa: E402
from api.settings import Settings  # noqa: E402
from api.webhooks import WebhookConfig  # noqa: E402
from pos_ledger.ledger import Ledger  # noqa: E402

SAMPLE_VERIFY_EVERY = 50


def receivers_main(count: int, ports_out: Connection, control: Connection) -> None:
    """Child process: `count` endpoints; on request, answers (port, position, arrival, body?, headers?)."""
    records: list[tuple[int, int, float, bytes | None, dict[str, str] | None]] = []

    async def serve(port_box: list[int]) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            port = writer.get_extra_info("sockname")[1]
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    headers = {}
                    for line in head.decode("latin-1").split("\r\n")[1:]:
                        if ":" in line:
                            name, _, value = line.partition(":")
                            headers[name.strip().lower()] = value.strip()
                    body = await reader.readexactly(int(headers.get("content-length", "0")))
                    arrived = time.time()
                    writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    position = int(json.loads(body)["data"]["position"])
                    sample = len(records) % SAMPLE_VERIFY_EVERY == 0
                    records.append((port, position, arrived, body if sample else None, headers if sample else None))
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                writer.close()

        servers = [await asyncio.start_server(handle, "127.0.0.1", 0) for _ in range(count)]
        port_box.extend(s.sockets[0].getsockname()[1] for s in servers)
        ports_out.send(port_box)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        loop.add_reader(control.fileno(), done.set)
        await done.wait()
        control.recv()
        control.send(records)

    asyncio.run(serve([]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=250.0, help="events committed per second")
    parser.add_argument("--receivers", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10, help="events per commit")
    args = parser.parse_args()

    ports_parent, ports_child = multiprocessing.Pipe()
    control_parent, control_child = multiprocessing.Pipe()
    child = multiprocessing.Process(target=receivers_main, args=(args.receivers, ports_child, control_child),
                                    daemon=True)
    child.start()
    ports: list[int] = ports_parent.recv()

    directory = tempfile.mkdtemp(prefix="bench-webhooks-")
    settings = Settings(database=f"{directory}/ledger.sqlite3", admin_token="bench", server_seed=bytes(32))
    ledger = Ledger(settings.database, settings.server_seed)
    platform = Platform(ledger, settings, webhooks=WebhookConfig(), rate_limit=RateLimit())
    committed: dict[int, float] = {}
    ledger.listeners.append(lambda store_id, position, head: committed.setdefault(position, time.time()))
    ledger.listeners.append(platform.dispatcher.notify)
    ledger.open_store("s1", "Bench", "CNY", "Asia/Shanghai")
    ledger.append_server_events("s1", [("store.settings_changed", {"allow_local_webhooks": True})])
    secrets: dict[int, str] = {}
    for index, port in enumerate(ports):
        platform.register(f"app{index}", f"App {index}", ["coupons:read"], f"http://127.0.0.1:{port}/hook",
                          ["voucher.*"])
        secrets[port] = platform.install("s1", f"app{index}").webhook_secret
    platform.dispatcher.start()
    first_position = ledger.chain("s1")[1] + 1

    # Batches carry consecutive positions: the listener stamps the last; earlier ones share its time.
    started = time.time()
    cpu_started = time.process_time()
    interval_s = args.batch / args.rate
    for start in range(0, args.events, args.batch):
        due = started + (start / args.batch) * interval_s
        time.sleep(max(0.0, due - time.time()))
        events = [("voucher.redeemed", {"provider": "bench", "code": f"C{i}", "order_ref": f"o{i}",
                                        "currency": "CNY", "face_value_minor": 1000, "paid_minor": 800,
                                        "request_id": f"r{i}"})
                  for i in range(start, min(args.events, start + args.batch))]
        results = ledger.append_server_events("s1", events)
        stamp = committed.get(results[-1].position or 0, time.time())
        for result in results:
            committed.setdefault(result.position or 0, stamp)
    last_position = ledger.chain("s1")[1]
    expected = args.events * len(ports)

    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        delivered = sum(1 for lane in platform.dispatcher._lanes.values() if lane.cursor >= last_position)
        if delivered == len(ports):
            break
    cpu_s = time.process_time() - cpu_started
    control_parent.send("stop")
    records: list[tuple[int, int, float, bytes | None, dict[str, str] | None]] = control_parent.recv()
    platform.close()
    ledger.close()
    report(records, committed, ports, secrets, first_position, last_position, expected, started)
    print(f"CPU of the server side (ledger commits + dispatcher): {cpu_s / max(1, len(records)) * 1000:.2f} ms "
          f"per delivery; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


def report(records: list[Any], committed: dict[int, float], ports: list[int], secrets: dict[int, str],
           first_position: int, last_position: int, expected: int, started: float) -> None:
    from standardwebhooks.webhooks import Webhook

    latencies_ms = sorted((arrived - committed[position]) * 1000 for _, position, arrived, _, _ in records)
    elapsed_s = max(arrived for _, _, arrived, _, _ in records) - started
    by_port: dict[int, list[int]] = {port: [] for port in ports}
    verified = 0
    for port, position, _, body, headers in records:
        by_port[port].append(position)
        if body is not None and headers is not None:
            Webhook(secrets[port]).verify(body, headers)
            verified += 1
    wanted = list(range(first_position, last_position + 1))
    correct = all(positions == wanted for positions in by_port.values())
    print(f"deliveries: {len(records)} of {expected} to {len(ports)} receivers in {elapsed_s:.2f} s "
          f"= {len(records) / elapsed_s:,.0f} deliveries/s")
    print(f"commit -> delivery: p50 {statistics.median(latencies_ms):.1f} ms, "
          f"p99 {latencies_ms[int(len(latencies_ms) * 0.99) - 1]:.1f} ms, max {latencies_ms[-1]:.1f} ms")
    print(f"each receiver got every event once, in log order: {correct}; signatures verified "
          f"(standardwebhooks, a sample): {verified}")
    if not correct or len(records) != expected:
        raise SystemExit(1)


if __name__ == "__main__":
    threading.excepthook = lambda hook: None
    main()
