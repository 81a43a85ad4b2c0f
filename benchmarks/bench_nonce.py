"""What the replay check costs a signed cashier command: p50 with the nonce table vs without.

    .venv/bin/python benchmarks/bench_nonce.py [--requests 1000] [--db URL]

The real app under uvicorn (in this process, a thread) on a fresh SQLite file (or
`--db postgresql://...`), one registered terminal signing each request (RFC 9421,
fresh nonce each). The command is a cash payment (`POST /payments`: one store lock,
one commit). Requests alternate "with" (the nonce is recorded in `pos_signature_nonces`,
as served) and "without" (the same code with the table's insert skipped), so drift
of a shared machine hits both alike. Every request must answer 201, and every
"with" nonce must be in the table afterwards (the check really ran).
Goal (issue 14): the nonce check adds <= 5% to the command's p50.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.main import create_app  # noqa: E402
from api.nonces import NonceTable  # noqa: E402
from api.settings import Settings  # noqa: E402
from pos_ledger.simulate import Client, Terminal, TerminalKey  # noqa: E402
from tests.conftest import free_port  # noqa: E402

ADMIN_TOKEN = "bench-admin-token"
GOAL_OVERHEAD = 0.05


def serve(database: str) -> tuple[str, uvicorn.Server, threading.Thread]:
    app = create_app(Settings(database=database, admin_token=ADMIN_TOKEN, server_seed=bytes(range(32))))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread


def timed_payment(http: httpx.Client, terminal: Terminal, order_ref: str) -> float:
    body = json.dumps({"amount_minor": 1_000, "currency": "CNY", "order_ref": order_ref, "method": "cash"}).encode()
    headers = {**terminal.sign_request("POST", "/v1/stores/bench/payments", body), "content-type": "application/json"}
    started = time.perf_counter()
    response = http.post("/v1/stores/bench/payments", content=body, headers=headers)
    spent = time.perf_counter() - started
    if response.status_code != 201:
        raise SystemExit(f"unexpected answer {response.status_code}: {response.text}")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1_000, help="requests of each kind")
    parser.add_argument("--db", default="", help="postgresql:// URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        database = args.db or str(Path(directory) / "bench.sqlite3")
        url, server, thread = serve(database)
        admin = Client(url, ADMIN_TOKEN)
        admin.open_store("bench", "Bench", "CNY", "Asia/Shanghai")
        terminal = Terminal(TerminalKey.generate("till"), seq=0)
        admin.register_terminal("bench", terminal.key, "till")
        recorded = NonceTable.first_use
        timings: dict[str, list[float]] = {"with": [], "without": []}
        def skipped(self: NonceTable, store_id: str, terminal_id: str, nonce: str, created: int) -> bool:
            return True

        with httpx.Client(base_url=url, timeout=30) as http:
            for n in range(50):
                timed_payment(http, terminal, f"warm-up-{n}")
            # Alternating request by request, so a shared machine's drift hits both alike.
            for n in range(2 * args.requests):
                kind = ("with", "without")[(n + n // 2) % 2]
                NonceTable.first_use = recorded if kind == "with" else skipped  # type: ignore[method-assign]
                timings[kind].append(timed_payment(http, terminal, f"{kind}-{n}"))
        NonceTable.first_use = recorded  # type: ignore[method-assign]
        checked = NonceTable(database)
        stored = checked.count()
        checked.close()
        expected = 50 + args.requests  # warm-up and "with" requests; "without" stored none
        if stored != expected:
            raise SystemExit(f"the nonce table holds {stored} nonces, expected {expected}: the check did not run")
        server.should_exit = True
        thread.join(timeout=10)
        admin.close()
    p50 = {kind: statistics.median(values) * 1000 for kind, values in timings.items()}
    overhead = p50["with"] / p50["without"] - 1
    print(f"signed cash payment, {len(timings['with'])} requests each, {'PostgreSQL' if args.db else 'SQLite'}")
    print(f"  p50 with the nonce check    {p50['with']:.3f} ms")
    print(f"  p50 without                 {p50['without']:.3f} ms")
    print(f"  overhead                    {overhead * 100:+.1f}%  (goal <= {GOAL_OVERHEAD * 100:.0f}%: "
          f"{'met' if overhead <= GOAL_OVERHEAD else 'NOT met'})")


if __name__ == "__main__":
    main()
