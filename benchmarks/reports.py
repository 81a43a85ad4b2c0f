"""Reports benchmark: rebuild speed and report latency at 1M (and 10M) sale lines, vs SQL over the log.

    .venv/bin/python benchmarks/reports.py [--lines 1000000 --lines 10000000] [--repeat 20] [--db DIR]

For each size:
1. Seeds a SQLite database with a synthetic log of one store (Asia/Shanghai): the
   menu (60 skus in 6 categories), then a year of `sale.completed` bodies (1-4
   lines, members on 30% of sales, 4 terminals, 2 channels, split tenders and cash
   change), until the size in sale lines is reached, in a `bench_log` table shaped
   like the ledger's entries (position, terminal, body, postings). Not timed.
2. Rebuild: the projections runner folds that log from zero through the projection
   writer (decode, fold, one transaction per 1,000 events); prints events/s and lines/s.
3. Times every report over a full-year window (`--repeat` runs each): sales by each
   group-by, members, campaigns, stored value, and the dashboard (one day); p50/p95.
4. Baseline in the same run: the same sales-by-day report computed straight from
   the log's JSON in SQL (json_extract / json_each over every sale body, what an ERP
   without projections does), checked equal to the projection's answer, and the ratio.
Goals (2-core machine): every report p95 <= 200 ms at 1M lines and <= 1 s at 10M;
rebuild >= 100,000 events/s; >= 50x the baseline at 1M.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from projections import reports  # noqa: E402
from projections.db import ReadDatabase  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402

STORE = "bench"
TIMEZONE = "Asia/Shanghai"  # UTC+8 all year: the SQL baseline shifts by a fixed 8 hours
FIRST_DAY = date(2025, 1, 1)
DAYS = 365
SKUS = [(f"SKU{i:03d}", ["coffee", "tea", "bakery", "noodles", "rice", "snacks"][i % 6], 500 + 100 * (i % 40))
        for i in range(60)]
METHODS = (("wechat", 45), ("alipay", 33), ("cash", 12), ("unionpay", 6), ("card", 4))
MEMBERS = 20_000
INSERT_ROWS = 20_000
_ENCODE = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class Row:
    position: int
    terminal_id: str
    body: str
    postings: str


class TableLog:
    """`LogSource` over the benchmark's `bench_log` table (the ledger's read port, minus the ledger)."""

    def __init__(self, path: str) -> None:
        self.connection = sqlite3.connect(path, check_same_thread=False)

    def read_entries(self, store_id: str, after: int, limit: int) -> list[Row]:
        return [Row(*r) for r in self.connection.execute(
            "SELECT position, terminal_id, body, postings FROM bench_log WHERE store_id = ? AND position > ? "
            "ORDER BY position LIMIT ?", (store_id, after, limit))]

    def chain_length(self, store_id: str) -> int:
        return int(self.connection.execute("SELECT MAX(position) FROM bench_log WHERE store_id = ?",
                                           (store_id,)).fetchone()[0] or 0)

    def store_ids(self) -> list[str]:
        return [STORE]


def body(position: int, event_type: str, at: datetime, data: dict[str, Any]) -> str:
    return _ENCODE({"id": str(uuid.uuid4()), "seq": position, "type": event_type, "at": at.isoformat(),
                    "data": data}).decode()


def random_sale(rng: random.Random, day: int) -> tuple[str, datetime, dict[str, Any], int]:
    lines = []
    for sku, _category, price in rng.sample(SKUS, rng.choice((1, 2, 2, 3, 3, 4))):
        lines.append({"sku": sku, "name": sku, "qty": rng.choice((1, 1, 1, 2)), "unit_price_minor": price})
    gross = sum(x["qty"] * x["unit_price_minor"] for x in lines)
    discount = gross // 10 if rng.random() < 0.1 else 0
    total = gross - discount
    method = rng.choices([m for m, _ in METHODS], weights=[w for _, w in METHODS])[0]
    tenders: list[dict[str, Any]] = [{"method": method, "amount_minor": total}]
    if method == "cash":
        paid = -(-total // 5000) * 5000
        tenders = [{"method": "cash", "amount_minor": paid, "change_minor": paid - total}]
    elif rng.random() < 0.05 and total > 1:
        tenders = [{"method": method, "amount_minor": total // 2}, {"method": "cash", "amount_minor": total - total // 2}]
    member = f"m{rng.randrange(MEMBERS)}" if rng.random() < 0.3 else None
    at = (datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC) + timedelta(days=day, hours=rng.randrange(0, 14),
                                                                                            seconds=rng.randrange(3600)))
    data = {"order_id": str(uuid.uuid4()), "currency": "CNY", "lines": lines, "discount_minor": discount,
            "total_minor": total, "tenders": tenders, "member_id": member,
            "channel": "counter" if rng.random() < 0.8 else "mini_program"}
    return f"t{rng.randrange(4)}", at, data, len(lines)


def seed(path: str, lines_wanted: int) -> tuple[int, int]:
    """The synthetic log; (events, sale lines)."""
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE bench_log (store_id TEXT NOT NULL, position INTEGER NOT NULL, "
                       "terminal_id TEXT NOT NULL, body TEXT NOT NULL, postings TEXT NOT NULL, "
                       "PRIMARY KEY (store_id, position))")
    start = datetime(2024, 12, 31, tzinfo=UTC)
    rows: list[tuple[Any, ...]] = [(STORE, 1, "server", body(1, "store.opened", start, {
        "store_id": STORE, "name": "Bench", "currency": "CNY", "timezone": TIMEZONE, "server_public_key": ""}), "[]")]
    for sku, category, price in SKUS:
        position = len(rows) + 1
        rows.append((STORE, position, "server", body(position, "menu.item_upserted", start,
                                                     {"sku": sku, "name": sku, "price_minor": price,
                                                      "category": category}), "[]"))
    rng = random.Random(12)
    lines = 0
    position = len(rows)
    sales_per_day = max(1, int(lines_wanted / 2.5 / DAYS) + 1)
    while lines < lines_wanted:
        for day in range(DAYS):
            for _ in range(sales_per_day):
                if lines >= lines_wanted:
                    break
                terminal_id, at, data, count = random_sale(rng, day)
                position += 1
                lines += count
                rows.append((STORE, position, terminal_id, body(position, "sale.completed", at, data), "[]"))
                if len(rows) >= INSERT_ROWS:
                    connection.executemany("INSERT INTO bench_log VALUES (?, ?, ?, ?, ?)", rows)
                    connection.commit()
                    rows = []
    connection.executemany("INSERT INTO bench_log VALUES (?, ?, ?, ?, ?)", rows)
    connection.commit()
    connection.close()
    return position, lines


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed(db: ReadDatabase, query: Callable[[Any], Any], repeat: int) -> tuple[list[float], Any]:
    samples = []
    answer = None
    for _ in range(repeat):
        started = time.perf_counter()
        with db.read() as sql:
            answer = query(sql)
        samples.append((time.perf_counter() - started) * 1000)
    return samples, answer


BASELINE_SQL = """
SELECT day, COUNT(*), SUM(items), SUM(gross), SUM(discount), SUM(gross) - SUM(discount) FROM (
  SELECT substr(datetime(json_extract(body, '$.at'), '+8 hours'), 1, 10) AS day,
         json_extract(body, '$.data.discount_minor') AS discount,
         (SELECT SUM(json_extract(value, '$.qty')) FROM json_each(body, '$.data.lines')) AS items,
         (SELECT SUM(json_extract(value, '$.qty') * json_extract(value, '$.unit_price_minor'))
          FROM json_each(body, '$.data.lines')) AS gross
  FROM bench_log WHERE store_id = ? AND json_extract(body, '$.type') = 'sale.completed'
) WHERE day BETWEEN ? AND ? GROUP BY day ORDER BY day
"""


def run(lines_wanted: int, directory: Path, repeat: int) -> None:
    path = str(directory / f"reports-{lines_wanted}.sqlite3")
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)
    started = time.perf_counter()
    events, lines = seed(path, lines_wanted)
    print(f"\n== {lines:,} sale lines, {events:,} events (seeded in {time.perf_counter() - started:.0f} s) ==", flush=True)

    db = ReadDatabase(path)
    runner = ProjectionRunner(db, TableLog(path))
    started = time.perf_counter()
    read = runner.run_store(STORE)
    elapsed = time.perf_counter() - started
    assert read == events and all(s.lag == 0 and s.error is None for s in runner.status(STORE))
    print(f"rebuild: {events / elapsed:,.0f} events/s, {lines / elapsed:,.0f} lines/s ({elapsed:.1f} s)", flush=True)

    first, last = FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 1)
    queries: list[tuple[str, Callable[[Any], Any]]] = [
        (f"sales by {g}", lambda sql, g=g: reports.sales(sql, STORE, first, last, g)) for g in reports.GROUP_BY]
    queries += [
        ("members", lambda sql: reports.members(sql, STORE, first, last)),
        ("campaigns", lambda sql: reports.campaigns(sql, STORE)),
        ("stored-value", lambda sql: reports.stored_value(sql, STORE, first, last)),
        ("dashboard (one day)", lambda sql: reports.dashboard(sql, STORE, last)),
    ]
    by_day_p50 = 0.0
    projected: Any = None
    for name, query in queries:
        samples, answer = timed(db, query, repeat)
        p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
        if name == "sales by day":
            by_day_p50, projected = p50, answer
        print(f"{name:>22}: p50 {p50:8.1f} ms  p95 {p95:8.1f} ms", flush=True)

    connection = sqlite3.connect(path)
    samples = []
    for _ in range(max(1, min(3, repeat))):
        started = time.perf_counter()
        baseline = connection.execute(BASELINE_SQL, (STORE, first.isoformat(), last.isoformat())).fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    connection.close()
    expected = [(r["key"], r["orders"], r["items"], r["gross_minor"], r["discount_minor"], r["net_minor"])
                for r in projected["rows"]]
    assert [tuple(r) for r in baseline] == expected, "the baseline and the projection disagree"
    baseline_ms = statistics.median(samples)
    print(f"baseline (sales by day from the log's JSON in SQL): {baseline_ms:,.0f} ms; projection p50 "
          f"{by_day_p50:.1f} ms -> {baseline_ms / by_day_p50:,.0f}x (answers equal)")
    db.close()
    runner.source.connection.close()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, action="append", help="sale lines to seed (repeatable; default 1M)")
    parser.add_argument("--repeat", type=int, default=20, help="runs of each report")
    parser.add_argument("--db", type=Path, default=None, help="directory for the databases (default: a temp dir)")
    args = parser.parse_args()
    directory = args.db or Path(tempfile.mkdtemp(prefix="pos-ledger-reports-"))
    directory.mkdir(parents=True, exist_ok=True)
    for size in args.lines or [1_000_000]:
        run(size, directory, args.repeat)


if __name__ == "__main__":
    main()
