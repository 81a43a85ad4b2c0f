"""End-to-end ingest benchmark: signed events over real HTTP vs plain `eventsourcing` saves.

    .venv/bin/python benchmarks/ingest.py [--events 100000] [--batch 1000] [--terminals 4]
    .venv/bin/python benchmarks/ingest.py --mode single [--single-terminals 50] [--single-requests 10000]
    .venv/bin/python benchmarks/ingest.py --mode both --database postgres --servers 2

1. Starts `--servers` `pos-ledger serve` processes (uvicorn with uvloop/httptools) on one fresh
   database: a SQLite file or a new PostgreSQL database. Each server gets its own store.
2. A separate load-generator process (`loadgen.py`: asyncio over raw HTTP/1.1 keep-alive, one
   request in flight per connection) pre-signs the sales (not timed), then posts them:
   * `batch`: `--terminals` tills per store, each posting batches of `--batch` events;
   * `single`: `--single-terminals` tills in all, each posting one pre-signed event per request,
     after measuring the generator's own ceiling against `/healthz` with as many connections
     (the single-event figure counts only if that ceiling is >= 5,000 requests/s).
3. Around the timed phase it reads the CPU time (utime + stime, /proc) of the server processes
   and, on PostgreSQL, of the backends connected to the benchmark's database, and prints events
   per CPU-second of each (the machine's cores are shared with the client, so wall-clock speed
   is not the measure of scale-out).
4. Baseline, measured in the same run: the same kind of bodies saved one per `Application.save`
   through plain `eventsourcing` on SQLite (no HTTP, no signatures).
5. Afterwards every store is audited (`pos_ledger.audit`: chain, signatures, postings, balances)
   unless `--no-audit`; the run fails if a chain is not linear and clean.

Goals (issue 17, 2-core machine): batch >= 50,000 events/s and >= 12x the baseline, p99 <= 150 ms
(floor 30,000/s and 7x); single >= 3,000 requests/s with p99 <= 25 ms; two PostgreSQL servers lose
<= 15% of the per-CPU-second figure of one.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import loadgen  # noqa: E402

from pos_ledger.simulate import Client, MenuEntry, Terminal, TerminalKey, random_sale  # noqa: E402

ADMIN_TOKEN = "bench-admin-token"
SERVER_SEED = bytes(32)
PG_ADMIN_URL = os.environ.get("POS_LEDGER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MENU = [MenuEntry("LATTE", "拿铁 Latte", 2800), MenuEntry("TART", "蛋挞 Egg tart", 900),
        MenuEntry("NOODLES", "牛肉面 Beef noodles", 3800), MenuEntry("TEA", "乌龙 Oolong", 1600)]
#: /healthz requests per connection when measuring the generator's ceiling.
CEILING_REQUESTS_PER_CONNECTION = 200
CLOCK_TICKS_S = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(database: str, port: int, http: str = "uvicorn") -> subprocess.Popen[bytes]:
    """`pos-ledger serve` (uvicorn, uvloop + httptools), or the same app under granian."""
    # A provider URL is given so that no payment sandbox process is started (ingest needs none).
    env = dict(os.environ, POS_LEDGER_ADMIN_TOKEN=ADMIN_TOKEN, POS_LEDGER_PSP_URL="http://127.0.0.1:9",
               POS_LEDGER_SERVER_KEY=base64.b64encode(SERVER_SEED).decode(), POS_LEDGER_DB=database)
    if http == "granian":
        command = [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop",
                   "--workers", "1", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                   "api.main:create_app"]
    else:
        command = [sys.executable, "-m", "pos_ledger.cli", "serve", "--db", database, "--port", str(port)]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    for _ in range(1200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start")


def server_pids(process: subprocess.Popen[bytes]) -> list[int]:
    """The server process and its children (granian runs the app in a worker process)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    try:
        found = [int(pid) for pid in children.read_text().split()]
    except OSError:
        found = []
    return [process.pid, *found]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_S


def postgres_backends(database: str) -> list[int]:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        rows = connection.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
    return [int(row[0]) for row in rows]


@dataclass
class Target:
    """One server and the store it is driven on."""

    port: int
    store_id: str
    keys: list[tuple[str, bytes]]


def signed_sales(keys: list[tuple[str, bytes]], per_terminal: int, seed: int) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    sales: dict[str, list[dict[str, str]]] = {}
    for terminal_id, key_seed in keys:
        terminal = Terminal(TerminalKey(terminal_id, key_seed), seq=0)
        sales[terminal_id] = [terminal.sign("sale.completed", random_sale(rng, MENU, "CNY"), datetime.now(UTC))
                              for _ in range(per_terminal)]
    return sales


def count_accepted(body: bytes) -> int:
    import orjson

    return sum(result["status"] == "accepted" for result in orjson.loads(body)["results"])


def load_generator(targets: list[Target], mode: str, per_terminal: int, batch: int,
                   out: Any, go: Any) -> None:
    """Runs in its own process: pre-sign everything (not timed), then post and time."""
    import orjson

    runs: list[tuple[int, list[list[bytes]]]] = []
    for index, target in enumerate(targets):
        host = f"127.0.0.1:{target.port}"
        connections = []
        for terminal_id, sales in signed_sales(target.keys, per_terminal, seed=index).items():
            path = f"/v1/stores/{target.store_id}/terminals/{terminal_id}/events"
            size = batch if mode == "batch" else 1
            connections.append([loadgen.post_request(host, path, orjson.dumps({"events": sales[i:i + size]}))
                                for i in range(0, len(sales), size)])
        runs.append((target.port, connections))
    ceiling = None
    if mode == "single":
        count = sum(len(connections) for _, connections in runs)
        ceiling = loadgen.ceiling("127.0.0.1", targets[0].port, count, CEILING_REQUESTS_PER_CONNECTION)
    out.put("ready")
    go.wait()
    started = time.perf_counter()
    run = _drive_all(runs)
    run.elapsed_s = time.perf_counter() - started
    out.put({"run": run, "ceiling": ceiling})


def _drive_all(runs: list[tuple[int, list[list[bytes]]]]) -> loadgen.Run:
    """Every target at once, on one event loop."""
    import asyncio

    async def everything() -> loadgen.Run:
        total = loadgen.Run()
        parts = await asyncio.gather(*(loadgen._run("127.0.0.1", port, connections, count_accepted)
                                       for port, connections in runs))
        for part in parts:
            total.requests += part.requests
            total.accepted += part.accepted
            total.latencies_ms += part.latencies_ms
            total.failures += part.failures
        return total

    try:
        import uvloop
    except ImportError:
        return asyncio.run(everything())
    return uvloop.run(everything())


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


def audit(database: str, store_ids: list[str]) -> list[str]:
    from pos_ledger.audit import audit_store
    from pos_ledger.ledger import Ledger

    ledger = Ledger(database, SERVER_SEED)
    try:
        lines = []
        for store_id in store_ids:
            report = audit_store(ledger, store_id)
            verdict = "clean" if report.ok else f"NOT CLEAN: {report.first_error}"
            lines.append(f"audit {store_id}: {report.length:,} events, chain linear, {verdict}")
            if not report.ok:
                raise SystemExit("\n".join(lines))
        return lines
    finally:
        ledger.close()


@dataclass
class Outcome:
    mode: str
    http: str
    run: loadgen.Run
    ceiling: loadgen.Run | None
    events: int
    server_cpu_s: float
    postgres_cpu_s: float | None


def measure(database: str, pg_name: str | None, mode: str, http: str,
            args: argparse.Namespace) -> tuple[Outcome, list[str]]:
    ports = [free_port() for _ in range(args.servers)]
    servers = [start_server(database, port, http) for port in ports]
    try:
        targets = []
        terminals = args.terminals if mode == "batch" else args.single_terminals // args.servers
        for index, port in enumerate(ports):
            client = Client(f"http://127.0.0.1:{port}", ADMIN_TOKEN)
            store_id = f"bench-{mode}-{http}-{index}"
            client.open_store(store_id, f"Bench {index}", "CNY", "Asia/Shanghai")
            keys = []
            for number in range(terminals):
                key = TerminalKey(f"t{number}", secrets.token_bytes(32))
                client.register_terminal(store_id, key, "")
                keys.append((key.terminal_id, key.seed))
            client.close()
            targets.append(Target(port, store_id, keys))
        total_terminals = terminals * args.servers
        per_terminal = (args.events if mode == "batch" else args.single_requests) // total_terminals
        print(f"[{mode}, {http}] pre-signing {per_terminal * total_terminals:,} sales for {total_terminals} terminals "
              f"on {args.servers} server(s) ...", flush=True)
        context = multiprocessing.get_context("fork")
        queue, go = context.Queue(), context.Event()
        generator = context.Process(target=load_generator,
                                    args=(targets, mode, per_terminal, args.batch, queue, go))
        generator.start()
        assert queue.get() == "ready"
        backends = postgres_backends(pg_name) if pg_name else []
        pids = [pid for server in servers for pid in server_pids(server)]
        before = {pid: cpu_seconds(pid) for pid in pids + backends}
        go.set()
        result = queue.get()
        generator.join()
        after_backends = postgres_backends(pg_name) if pg_name else []
        server_cpu = sum(cpu_seconds(pid) - before[pid] for pid in pids)
        postgres_cpu = (sum(cpu_seconds(pid) - before.get(pid, 0.0) for pid in set(backends) | set(after_backends))
                        if pg_name else None)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait()
    run: loadgen.Run = result["run"]
    if run.failures:
        raise SystemExit(f"[{mode}] {len(run.failures)} failed requests, first: {run.failures[0]}")
    audits = [] if args.no_audit else audit(database, [t.store_id for t in targets])
    return Outcome(mode, http, run, result["ceiling"], run.accepted, server_cpu, postgres_cpu), audits


def report(outcome: Outcome, baseline_rate: float, args: argparse.Namespace) -> None:
    run = outcome.run
    rate = outcome.events / run.elapsed_s
    where = f"{outcome.http}, {args.database}, {args.servers} server(s)"
    if outcome.mode == "batch":
        print(f"{'batch: signed batches over HTTP, verified, ' + where:70} {rate:>12,.0f} events/s")
        print(f"  ratio to the baseline: {rate / baseline_rate:.1f}x   (goal >= 12x and >= 50,000/s; floor 7x, 30,000/s)")
        print(f"  batches of {args.batch}, {args.terminals} terminals per store: latency p50 "
              f"{run.percentile_ms(0.5):.1f} ms, p99 {run.percentile_ms(0.99):.1f} ms (goal p99 <= 150 ms); "
              f"{outcome.events:,} accepted")
    else:
        ceiling = outcome.ceiling
        assert ceiling is not None
        counts = ceiling.rate >= 5000
        print(f"{'single: one pre-signed event per request, ' + where:70} {run.rate:>12,.0f} requests/s")
        print(f"  {args.single_terminals} keep-alive terminals: latency p50 {run.percentile_ms(0.5):.1f} ms, "
              f"p99 {run.percentile_ms(0.99):.1f} ms (goal >= 3,000 requests/s, p99 <= 25 ms); "
              f"{outcome.events:,} accepted")
        print(f"  load generator ceiling on /healthz, same connections: {ceiling.rate:,.0f} requests/s, "
              f"p99 {ceiling.percentile_ms(0.99):.1f} ms -> the figure {'counts' if counts else 'does NOT count'} "
              "(needs >= 5,000)")
    line = f"  CPU: servers {outcome.server_cpu_s:.1f} s -> {outcome.events / max(outcome.server_cpu_s, 1e-9):,.0f} events per server CPU-second"
    if outcome.postgres_cpu_s is not None:
        both = outcome.server_cpu_s + outcome.postgres_cpu_s
        line += (f"; PostgreSQL backends {outcome.postgres_cpu_s:.1f} s -> "
                 f"{outcome.events / max(outcome.postgres_cpu_s, 1e-9):,.0f} per PostgreSQL CPU-second; "
                 f"{outcome.events / max(both, 1e-9):,.0f} per CPU-second of both")
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="batch mode: events in all")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--terminals", type=int, default=4, help="batch mode: terminals per store")
    parser.add_argument("--mode", choices=["batch", "single", "both"], default="batch")
    parser.add_argument("--single-terminals", type=int, default=50)
    parser.add_argument("--single-requests", type=int, default=10_000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--servers", type=int, default=1, help="server processes on one database, one store each")
    parser.add_argument("--http", choices=["uvicorn", "granian", "both"], default="uvicorn",
                        help="HTTP server for the app; both = measure each in this run")
    parser.add_argument("--baseline-events", type=int, default=5_000)
    parser.add_argument("--no-audit", action="store_true", help="skip auditing the stores afterwards")
    args = parser.parse_args()
    modes = ["batch", "single"] if args.mode == "both" else [args.mode]
    servers = ["uvicorn", "granian"] if args.http == "both" else [args.http]

    with tempfile.TemporaryDirectory() as directory:
        outcomes, audits = [], []
        for mode, http in [(mode, http) for mode in modes for http in servers]:
            pg_name = None
            if args.database == "postgres":
                import psycopg

                pg_name = f"pos_ledger_bench_{secrets.token_hex(4)}"
                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
                    connection.execute(f'CREATE DATABASE "{pg_name}"')
                database = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + pg_name
            else:
                database = str(Path(directory) / f"ledger-{mode}-{http}.sqlite3")
            try:
                outcome, lines = measure(database, pg_name, mode, http, args)
                outcomes.append(outcome)
                audits += lines
            finally:
                if pg_name:
                    import psycopg

                    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
                        connection.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')

        rng = random.Random(5)
        terminal = Terminal(TerminalKey.generate("b"), seq=0)
        bodies = [terminal.sign("sale.completed", random_sale(rng, MENU, "CNY"),
                                datetime.now(UTC))["body"].encode() for _ in range(args.baseline_events)]
        baseline_rate = baseline(bodies, directory)

    print(f"{'baseline: plain eventsourcing on SQLite, one Application.save per event':70} "
          f"{baseline_rate:>12,.0f} events/s")
    for outcome in outcomes:
        report(outcome, baseline_rate, args)
    for line in audits:
        print(line)


if __name__ == "__main__":
    main()
