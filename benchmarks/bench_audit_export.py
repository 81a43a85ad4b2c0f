"""Offline audit of an export: `pos-ledger audit --export DIR` end to end, in a child process.

    .venv/bin/python benchmarks/bench_audit_export.py [--events 1000000] [--full-events 20000] [--keep DIR]
    .venv/bin/python benchmarks/bench_audit_export.py --events 10000000     # the goal's size (~6.5 GB on disk)

A synthetic export in the format `pos-ledger export` writes (events.jsonl, keys.json,
balances.csv, manifest.json + manifest.json.sig signed by the server key) is generated first
(not timed): store.opened, terminal.registered, then sales of one terminal (~500-byte bodies,
chained with `_core.chain_extend`). Then `pos-ledger audit --export DIR` runs as a child
process and is timed from start to exit (interpreter start, manifest and file hashes, reading
and decoding every line, chain, postings, order, balances):

* `--quick` over `--events` events (chain, postings, order, manifest; no signatures, no rules):
  the sales carry a placeholder signature, as `--quick` does not read them.
* the full audit (every signature verified, every rule re-run) over `--full-events` events,
  all signed for real.

The answers are checked before rates count: exit 0, the reported length and head equal the
generated ones. Goal: >= 1,500,000 events/s end to end and peak RSS <= 300 MB at 10,000,000 events.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec

from pos_ledger import _core
from pos_ledger.export import ExportRow

SERVER_SEED = bytes(range(32))
TERMINAL_SEED = bytes([9]) * 32
CHUNK = 50_000
PRICES = [900, 1500, 1800, 2800, 3200]


def _server_body(seq: int, event_type: str, data: dict[str, object]) -> bytes:
    return msgspec.json.encode({"id": str(uuid.UUID(int=seq)), "seq": seq, "type": event_type,
                                "at": "2026-11-23T08:00:00+00:00", "data": data})


def _sale(seq: int) -> tuple[bytes, bytes]:
    price = PRICES[seq % len(PRICES)]
    qty = 1 + seq % 3
    total = price * qty
    body = (f'{{"id":"{uuid.UUID(int=(1 << 100) + seq)}","seq":{seq},"type":"sale.completed",'
            f'"at":"2026-11-23T09:{seq // 60 % 60:02d}:{seq % 60:02d}+08:00","data":{{"order_id":'
            f'"{uuid.UUID(int=(1 << 90) + seq)}","currency":"CNY","lines":[{{"sku":"LATTE","name":"Latte 拿铁",'
            f'"qty":{qty},"unit_price_minor":{price}}}],"discount_minor":0,"total_minor":{total},'
            f'"tenders":[{{"method":"alipay","amount_minor":{total}}}],"channel":"counter"}}}}').encode()
    return body, f'[["asset:psp:alipay","CNY",{total}],["revenue:sales","CNY",-{total}]]'.encode()


def generate(out: Path, events: int, signed: bool) -> tuple[str, int]:
    """Write the export; (chain head hex, events)."""
    out.mkdir(parents=True)
    encoder = msgspec.json.Encoder()
    server_key = base64.b64encode(_core.ed25519_public_key(SERVER_SEED)).decode()
    terminal_key = base64.b64encode(_core.ed25519_public_key(TERMINAL_SEED)).decode()
    opened = _server_body(1, "store.opened", {"store_id": "bench", "name": "Bench", "currency": "CNY",
                                              "timezone": "Asia/Shanghai", "server_public_key": server_key})
    registered = _server_body(2, "terminal.registered", {"terminal_id": "t1", "public_key": terminal_key,
                                                         "label": ""})
    head, position, total = bytes(32), 0, 0
    placeholder = bytes(range(64))
    digest = hashlib.sha256()
    with (out / "events.jsonl").open("wb") as file:
        pending = [("server", opened, b"[]"), ("server", registered, b"[]")]
        seq = 1
        while position < events:
            while len(pending) < CHUNK and position + len(pending) < events:
                body, postings = _sale(seq)
                pending.append(("t1", body, postings))
                total -= int(postings.rsplit(b",", 1)[1].rstrip(b"]"))  # the revenue credit
                seq += 1
            sigs = [_core.ed25519_sign(SERVER_SEED if t == "server" else TERMINAL_SEED, b)
                    if signed or t == "server" else placeholder for t, b, _ in pending]
            hashes = _core.chain_extend(head, [b for _, b, _ in pending], sigs)
            lines = []
            for (terminal, body, postings), sig, chained in zip(pending, sigs, hashes, strict=True):
                position += 1
                lines.append(encoder.encode(ExportRow(position, terminal, body.decode(), base64.b64encode(sig).decode(),
                                                      chained.hex(), postings.decode())) + b"\n")
            data = b"".join(lines)
            file.write(data)
            digest.update(data)
            head, pending = hashes[-1], []
    files = [{"name": "events.jsonl", "sha256": digest.hexdigest(), "rows": position}]
    keys = json.dumps({"store_id": "bench", "server_public_key": server_key, "terminals": [
        {"terminal_id": "t1", "public_key": terminal_key, "label": ""}]}).encode()
    balances = (f"account,currency,debit_minor,credit_minor,balance_minor,balance\r\n"
                f"asset:psp:alipay,CNY,{total},0,{total},0\r\nrevenue:sales,CNY,0,{total},-{total},0\r\n").encode()
    for name, data in (("keys.json", keys), ("balances.csv", balances)):
        (out / name).write_bytes(data)
        files.append({"name": name, "sha256": hashlib.sha256(data).hexdigest(), "rows": 0})
    manifest = json.dumps({"format": "pos-ledger-export/1", "store_id": "bench", "currency": "CNY",
                           "range": {"unit": "position", "from": 1, "to": position}, "first_position": 1,
                           "last_position": position, "events": position, "previous_hash": "00" * 32,
                           "chain_head": head.hex(), "log_length": position, "log_head": head.hex(),
                           "server_public_key": server_key, "files": files}, indent=2).encode()
    (out / "manifest.json").write_bytes(manifest)
    (out / "manifest.json.sig").write_text(base64.b64encode(_core.ed25519_sign(SERVER_SEED, manifest)).decode())
    return head.hex(), position


def audit(directory: Path, head: str, events: int, quick: bool) -> tuple[float, float, int]:
    """(seconds, CPU seconds, peak RSS in bytes) of one `pos-ledger audit --export` child run, answer checked."""
    command = [sys.executable, "-m", "pos_ledger.cli", "audit", "--export", str(directory)]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    before, cpu_before = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    done = subprocess.run(command + (["--quick"] if quick else []), capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    elapsed = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime - cpu_before
    if done.returncode != 0 or f"{events} events, head {head}" not in done.stdout:
        raise SystemExit(f"the audit did not give the right answer (exit {done.returncode}):\n"
                         f"{done.stdout}{done.stderr}")
    return elapsed, cpu, max(peak, before) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the --quick run")
    parser.add_argument("--full-events", type=int, default=20_000, help="events in the full run (0: skip)")
    parser.add_argument("--keep", type=Path, help="generate into (and keep) this directory")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-audit-export-"))
    try:
        for quick, size in ((True, args.events), (False, args.full_events)):
            if size <= 0:
                continue
            directory = root / ("quick" if quick else "full")
            started = time.perf_counter()
            head, count = generate(directory, size, signed=not quick)
            megabytes = sum(p.stat().st_size for p in directory.iterdir()) / 1e6
            print(f"generated {count:,} events ({megabytes:,.0f} MB) in {time.perf_counter() - started:.1f}s",
                  flush=True)
            elapsed, cpu, peak = audit(directory, head, count, quick)
            mode = "audit --export --quick (chain, postings, order, manifest)" if quick else \
                "audit --export (+ every signature, every rule)"
            print(f"{mode}: {count:,} events in {elapsed:.2f}s = {count / elapsed:,.0f} events/s end to end "
                  f"({cpu:.2f} CPU s over all threads = {count / cpu:,.0f} events per CPU second), "
                  f"peak RSS {peak / 1e6:,.0f} MB (goal 1,500,000/s, 300 MB)", flush=True)
            if not args.keep:
                shutil.rmtree(directory)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
