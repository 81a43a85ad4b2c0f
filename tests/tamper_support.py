"""Rewriting a store's log behind the server's back, as an attacker with database access would.

`LogRewriter` reads every stored entry of a store (SQLite or PostgreSQL), lets a test change
the list (edit, delete, insert, reorder, cut) and writes it back, optionally recomputing the
chain, the index table and the balances so that the database is consistent with itself.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg

from pos_ledger import _core
from pos_ledger.events import decode_postings
from pos_ledger.ledger import segment_id, segment_version

Entry = dict[str, Any]


class LogRewriter:
    def __init__(self, database: str, store_id: str) -> None:
        self.database = database
        self.store_id = store_id
        self.postgres = database.startswith("postgresql://")
        self.table = "pos_ledger_events" if self.postgres else "stored_events"

    def _execute(self, work: Callable[[Any, str], Any]) -> Any:
        mark = "%s" if self.postgres else "?"
        if self.postgres:
            with psycopg.connect(self.database) as conn:
                return work(conn, mark)
        conn = sqlite3.connect(self.database)
        try:
            with conn:
                return work(conn, mark)
        finally:
            conn.close()

    def entries(self) -> list[Entry]:
        def read(conn: Any, mark: str) -> list[Entry]:
            rows = conn.execute(f"SELECT topic, state FROM {self.table}").fetchall()
            found = [dict(json.loads(bytes(state)), _topic=topic) for topic, state in rows]
            return sorted((e for e in found if e.get("store_id") == self.store_id), key=lambda e: e["position"])
        result: list[Entry] = self._execute(read)
        return result

    def write(self, entries: list[Entry], *, rechain: bool = True, fix_index: bool = True,
              fix_balances: bool = True, checkpoints_seed: bytes | None = None) -> None:
        """Replace the store's log with `entries`, numbered in order; recompute the chain when asked."""
        head = bytes(32)
        for position, entry in enumerate(entries, start=1):
            entry["position"] = position  # the rows in their new order; stale hashes unless re-chained
            if rechain and checkpoints_seed is not None and entry["type"] == "checkpoint.recorded":
                # An attacker holding a server key re-pins the in-log checkpoints too.
                entries[position - 1] = entry = resign(entry, checkpoints_seed, position=position - 1,
                                                       chain_head=head.hex())
                entry["position"] = position
            if rechain:
                head = hashlib.sha256(head + entry["body"].encode() + bytes.fromhex(entry["sig"])).digest()
                entry["hash"] = head.hex()

        def work(conn: Any, mark: str) -> None:
            rows = conn.execute(f"SELECT originator_id, originator_version, state FROM {self.table}").fetchall()
            for originator_id, version, state in rows:
                if json.loads(bytes(state)).get("store_id") == self.store_id:
                    conn.execute(f"DELETE FROM {self.table} WHERE originator_id = {mark} AND originator_version = {mark}",
                                 (originator_id, version))
            for entry in entries:
                state = {k: v for k, v in entry.items() if k != "_topic"}
                originator = segment_id(self.store_id, entry["position"])
                conn.execute(f"INSERT INTO {self.table} (originator_id, originator_version, topic, state) "
                             f"VALUES ({mark}, {mark}, {mark}, {mark})",
                             (originator if self.postgres else originator.hex, segment_version(entry["position"]),
                              entry["_topic"], json.dumps(state).encode()))
            if fix_index:
                conn.execute(f"DELETE FROM ledger_entries WHERE store_id = {mark}", (self.store_id,))
                seen: set[str] = set()
                for entry in entries:
                    if entry["event_id"] in seen:  # the index cannot hold a copied event twice
                        continue
                    seen.add(entry["event_id"])
                    conn.execute(f"INSERT INTO ledger_entries VALUES ({mark},{mark},{mark},{mark},{mark},{mark},{mark})",
                                 (self.store_id, entry["position"], entry["event_id"], entry["terminal_id"],
                                  json.loads(entry["body"])["seq"], entry["type"],
                                  hashlib.sha256(entry["body"].encode()).digest()))
            if fix_balances:
                sums: dict[tuple[str, str], list[int]] = {}
                for entry in entries:
                    for account, currency, amount in decode_postings(entry["postings"]):
                        pair = sums.setdefault((account, currency), [0, 0])
                        pair[0 if amount > 0 else 1] += abs(amount)
                conn.execute(f"DELETE FROM ledger_balances WHERE store_id = {mark}", (self.store_id,))
                for (account, currency), (debit, credit) in sums.items():
                    conn.execute(f"INSERT INTO ledger_balances VALUES ({mark},{mark},{mark},{mark},{mark})",
                                 (self.store_id, account, currency, debit, credit))
        self._execute(work)


def resign(entry: Entry, seed: bytes, **data_changes: Any) -> Entry:
    """The entry with its body's `data` changed and signed again with `seed` (an attacker's key)."""
    body = json.loads(entry["body"])
    body["data"].update(data_changes)
    text = json.dumps(body, separators=(",", ":"))
    return dict(entry, body=text, sig=_core.ed25519_sign(seed, text.encode()).hex())
