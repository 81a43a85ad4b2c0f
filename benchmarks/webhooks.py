"""Webhook fan-out benchmark: deliveries/s to 10 local receivers and p99 from commit to delivery.

    .venv/bin/python benchmarks/webhooks.py [--events 2000] [--batch 100] [--paced-events 300] [--rate 20]

Ten receivers (ten apps installed in one store, each with its own endpoint) run in a
separate process: a minimal keep-alive HTTP/1.1 server answering 204 and stamping each
message's arrival; a sample is verified with the PyPI `standardwebhooks` package. This
process holds the ledger (SQLite in a temp dir) and the real dispatcher
(`api.webhooks.Dispatcher`, the one the server runs); a ledger listener stamps each commit.

1. Throughput: `--events` voucher write-offs committed as fast as the ledger takes them
   (`--batch` per commit); deliveries/s from the first commit to the last arrival.
2. Latency: `--paced-events` committed one per commit at `--rate` events/s (each fans out
   to every receiver); p50/p99 from commit to arrival.
Both check that every receiver got every event exactly once, in log order.
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
        while True:
            ready = asyncio.Event()
            loop.add_reader(control.fileno(), ready.set)
            await ready.wait()
            loop.remove_reader(control.fileno())
            command = control.recv()
            control.send(list(records))
            records.clear()
            if command == "stop":
                return

    asyncio.run(serve([]))


Record = tuple[int, int, float, "bytes | None", "dict[str, str] | None"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100, help="events per commit in the throughput phase")
    parser.add_argument("--paced-events", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second in the latency phase")
    parser.add_argument("--receivers", type=int, default=10)
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
    ok = True
    try:
        for title, count, rate, batch in (("throughput", args.events, None, args.batch),
                                          ("latency", args.paced_events, args.rate, 1)):
            first_position = ledger.chain("s1")[1] + 1
            cpu_started, started = time.process_time(), time.time()
            commit(ledger, committed, first_position, count, rate, batch)
            last_position = ledger.chain("s1")[1]
            wait_delivered(platform, last_position, len(ports))
            cpu_s = time.process_time() - cpu_started
            control_parent.send("collect")
            records: list[Record] = control_parent.recv()
            print(f"-- {title}: {count} events, {'as fast as committed' if rate is None else f'{rate:g} events/s'}, "
                  f"{batch} per commit")
            ok &= report(records, committed, ports, secrets, first_position, last_position, started)
            print(f"   CPU of ledger commits + dispatcher: {cpu_s / max(1, len(records)) * 1000:.2f} ms per delivery")
    finally:
        control_parent.send("stop")
        control_parent.recv()
        platform.close()
        ledger.close()
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    if not ok:
        raise SystemExit(1)


def commit(ledger: Ledger, committed: dict[int, float], first: int, count: int, rate: float | None,
           batch: int) -> None:
    started = time.time()
    for start in range(0, count, batch):
        if rate is not None:
            time.sleep(max(0.0, started + start / rate - time.time()))
        events = [("voucher.redeemed", {"provider": "bench", "code": f"C{first + i}", "order_ref": f"o{i}",
                                        "currency": "CNY", "face_value_minor": 1000, "paid_minor": 800,
                                        "request_id": f"r{first + i}"})
                  for i in range(start, min(count, start + batch))]
        results = ledger.append_server_events("s1", events)
        # The listener stamps the batch's last position; the batch's other events committed with it.
        stamp = committed.get(results[-1].position or 0, time.time())
        for result in results:
            committed.setdefault(result.position or 0, stamp)


def wait_delivered(platform: Platform, last_position: int, lanes: int, timeout_s: float = 300.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if sum(1 for lane in platform.dispatcher._lanes.values() if lane.cursor >= last_position) == lanes:
            return
        time.sleep(0.05)


def report(records: list[Record], committed: dict[int, float], ports: list[int], secrets: dict[int, str],
           first_position: int, last_position: int, started: float) -> bool:
    from standardwebhooks.webhooks import Webhook

    expected = (last_position - first_position + 1) * len(ports)
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
    correct = all(positions == wanted for positions in by_port.values()) and len(records) == expected
    print(f"   {len(records)} of {expected} deliveries to {len(ports)} receivers in {elapsed_s:.2f} s "
          f"= {len(records) / elapsed_s:,.0f} deliveries/s")
    print(f"   commit -> delivery: p50 {statistics.median(latencies_ms):.1f} ms, "
          f"p99 {latencies_ms[max(0, int(len(latencies_ms) * 0.99) - 1)]:.1f} ms, max {latencies_ms[-1]:.1f} ms")
    print(f"   every receiver got every event once, in log order: {correct}; signatures verified by "
          f"standardwebhooks (a sample): {verified}")
    return correct


if __name__ == "__main__":
    threading.excepthook = lambda hook: None
    main()
