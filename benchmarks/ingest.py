"""End-to-end ingest benchmark: signed batches over real HTTP vs plain `eventsourcing` saves.

    .venv/bin/python benchmarks/ingest.py [--events 100000] [--batch 1000] [--terminals 4]

1. Starts `pos-ledger serve` on a fresh SQLite file (its own process).
2. A separate load-generator process pre-signs the sales (not timed), then posts
   them in batches, one in-flight batch per terminal, and reports events/s and
   batch latency p50/p99.
3. Baseline, measured in the same run: the same event bodies saved one per
   `Application.save` call through plain `eventsourcing` on SQLite (no HTTP, no
   signatures), as a fresh aggregate's events.
Prints both and the ratio. Goal on the 2-core machine: >= 25,000 events/s and >= 7x.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pos_ledger.simulate import Client, MenuEntry, Terminal, TerminalKey, random_sale  # noqa: E402

ADMIN_TOKEN = "bench-admin-token"
MENU = [MenuEntry("LATTE", "拿铁 Latte", 2800), MenuEntry("TART", "蛋挞 Egg tart", 900),
        MenuEntry("NOODLES", "牛肉面 Beef noodles", 3800), MenuEntry("TEA", "乌龙 Oolong", 1600)]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(database: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, POS_LEDGER_ADMIN_TOKEN=ADMIN_TOKEN,
               POS_LEDGER_SERVER_KEY=base64.b64encode(bytes(32)).decode())
    process = subprocess.Popen([sys.executable, "-m", "pos_ledger.cli", "serve", "--db", database,
                                "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start")


def load_generator(url: str, keys: list[tuple[str, bytes]], events: int, batch: int,
                   out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Runs in its own process: pre-sign everything, then post and time."""
    import orjson

    rng = random.Random(3)
    terminals = [Terminal(TerminalKey(terminal_id, seed), seq=0) for terminal_id, seed in keys]
    per_terminal = events // len(terminals)
    payloads: dict[str, list[bytes]] = {}
    for terminal in terminals:
        signed = [terminal.sign("sale.completed", random_sale(rng, MENU, "CNY"), datetime.now(UTC))
                  for _ in range(per_terminal)]
        payloads[terminal.key.terminal_id] = [orjson.dumps({"events": signed[i:i + batch]})
                                              for i in range(0, per_terminal, batch)]
    latencies_ms: list[float] = []
    accepted = [0]
    lock = threading.Lock()

    def run(terminal_id: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for payload in payloads[terminal_id]:
                started = time.perf_counter()
                response = http.post(f"/v1/stores/bench/terminals/{terminal_id}/events", content=payload,
                                     headers={"content-type": "application/json"})
                elapsed_ms = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                ok = sum(r["status"] == "accepted" for r in response.json()["results"])
                with lock:
                    latencies_ms.append(elapsed_ms)
                    accepted[0] += ok

    threads = [threading.Thread(target=run, args=(t.key.terminal_id,)) for t in terminals]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    out.put({"accepted": accepted[0], "elapsed_s": elapsed, "latencies_ms": latencies_ms})


def baseline(bodies: list[bytes], directory: str) -> float:
    """Plain eventsourcing: one Application.save per event, SQLite, default JSON transcoder."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Till(Aggregate):
        @event("SaleRecorded")
        def record(self, body: str) -> None:
            pass

    class Plain(Application[Any]):
        pass

    app = Plain(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                     "SQLITE_DBNAME": str(Path(directory) / "baseline.sqlite3")})
    till = Till()
    app.save(till)
    started = time.perf_counter()
    for body in bodies:
        till.record(body.decode())
        app.save(till)
    elapsed = time.perf_counter() - started
    app.close()
    return len(bodies) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--terminals", type=int, default=4)
    parser.add_argument("--baseline-events", type=int, default=5_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(str(Path(directory) / "ledger.sqlite3"), port)
        try:
            client = Client(url, ADMIN_TOKEN)
            client.open_store("bench", "Bench", "CNY", "Asia/Shanghai")
            keys = []
            for i in range(args.terminals):
                key = TerminalKey.generate(f"t{i}")
                client.register_terminal("bench", key, "")
                keys.append((key.terminal_id, key.seed))
            client.close()
            print(f"pre-signing {args.events} sales in the load generator ...", flush=True)
            queue: multiprocessing.Queue[dict[str, Any]] = multiprocessing.Queue()
            generator = multiprocessing.Process(target=load_generator,
                                                args=(url, keys, args.events, args.batch, queue))
            generator.start()
            result = queue.get()
            generator.join()
        finally:
            server.terminate()
            server.wait()

        rng = random.Random(5)
        terminal = Terminal(TerminalKey.generate("b"), seq=0)
        bodies = [terminal.sign("sale.completed", random_sale(rng, MENU, "CNY"),
                                datetime.now(UTC))["body"].encode() for _ in range(args.baseline_events)]
        baseline_rate = baseline(bodies, directory)

    rate = result["accepted"] / result["elapsed_s"]
    latencies = sorted(result["latencies_ms"])
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{'what':58} {'events/s':>12}")
    print(f"{'pos-ledger: signed batches over HTTP, SQLite, verified':58} {rate:>12,.0f}")
    print(f"{'baseline: plain eventsourcing, one Application.save/event':58} {baseline_rate:>12,.0f}")
    print(f"ratio: {rate / baseline_rate:.1f}x   (goal >= 7x, >= 25,000 events/s)")
    print(f"batches of {args.batch}, {args.terminals} terminals: latency p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
          f"{result['accepted']} accepted of {args.events}")


if __name__ == "__main__":
    main()
