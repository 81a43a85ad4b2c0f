"""`pos-ledger export`: a store's log and its journals, signed, for an auditor to take away.

One directory per export (one store):

* `events.jsonl` – each stored event of the range, one JSON object a line, in order:
  `position`, `terminal_id`, `body` (the exact signed text), `sig` (base64), `hash` (hex of the
  chain hash after it) – the fields of `GET /events` – plus `postings` (the compact JSON the
  balances fold reads).
* `keys.json` – the server's and every terminal's Ed25519 public key (base64).
* CSV journals in the manner of DSFinV-K, UTF-8 with a header row, one file per module and
  `index.csv` naming them: `transactions.csv`, `lines.csv`, `tenders.csv`,
  `stored_value.csv`, `shift_closings.csv`, and `balances.csv` (the served balances, only when
  the export reaches from position 1 to the head). Amounts are integer minor units
  (`*_minor`) beside a decimal column written from integers.
* `manifest.json` – each file's SHA-256, byte count and rows, the range and the chain head;
  `manifest.json.sig` – the base64 Ed25519 signature of the exact bytes of `manifest.json`
  by the server key.

`--from` / `--to` are positions (inclusive; the log's order is the only total order, device
clocks are not). An export from position > 1 carries `previous_hash`, the chain hash before
its first event, so its chain verifies on its own.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import msgspec

from pos_ledger import _core, money
from pos_ledger.errors import InvalidInput, StoreNotFound
from pos_ledger.events import SERVER_TERMINAL_ID, decode_postings
from pos_ledger.ledger import READ_EVENTS_MAX, Ledger, StoredEntry
from pos_ledger.state import ZERO_HASH

EXPORT_FORMAT: Final = "pos-ledger-export/1"
EVENTS_FILE: Final = "events.jsonl"
KEYS_FILE: Final = "keys.json"
MANIFEST_FILE: Final = "manifest.json"
SIGNATURE_FILE: Final = "manifest.json.sig"
INDEX_FILE: Final = "index.csv"
#: The journals: file -> (description, header).
JOURNALS: Final[dict[str, tuple[str, list[str]]]] = {
    "transactions.csv": ("one row per sale (sale.completed)", [
        "position", "at", "terminal_id", "event_id", "order_id", "channel", "member_id", "currency",
        "gross_minor", "discount_minor", "total_minor", "total"]),
    "lines.csv": ("one row per sale line", [
        "position", "order_id", "line_no", "sku", "name", "qty", "unit_price_minor", "amount_minor",
        "amount", "currency"]),
    "tenders.csv": ("one row per tender of a sale", [
        "position", "order_id", "tender_no", "method", "amount_minor", "change_minor", "net_minor", "net",
        "payment_id", "currency"]),
    "stored_value.csv": ("members' stored value: every change of a member's principal or bonus", [
        "position", "at", "event_type", "member_id", "reference", "currency", "principal_change_minor",
        "bonus_change_minor", "change_minor", "change"]),
    "shift_closings.csv": ("one row per shift close (Z)", [
        "position", "at", "shift_id", "terminal_id", "currency", "expected_minor", "counted_minor",
        "difference_minor", "difference", "chain_head"]),
}
BALANCES_FILE: Final = "balances.csv"
BALANCES_HEADER: Final = ["account", "currency", "debit_minor", "credit_minor", "balance_minor", "balance"]
_ROW_ENCODER: Final = msgspec.json.Encoder()


class ExportRow(msgspec.Struct):
    position: int
    terminal_id: str
    body: str
    sig: str
    hash: str
    postings: str = "[]"


def _decimal(amount_minor: int, code: str) -> str:
    return money.format_minor(amount_minor, code) if money.is_currency(code) else str(amount_minor)


class _Hashed:
    """A text file whose SHA-256, size and data rows are counted as it is written."""

    def __init__(self, path: Path) -> None:
        self.name = path.name
        self.file: IO[bytes] = path.open("wb")
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.rows = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.sha256.update(data)
        self.size += len(data)

    def close(self) -> dict[str, Any]:
        self.file.close()
        return {"name": self.name, "sha256": self.sha256.hexdigest(), "bytes": self.size, "rows": self.rows}


class _Csv(_Hashed):
    def __init__(self, path: Path, header: list[str]) -> None:
        super().__init__(path)
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\r\n")
        self.writer.writerow(header)
        self._flush()

    def row(self, values: list[Any]) -> None:
        self.writer.writerow(values)
        self.rows += 1
        if self.buffer.tell() > 1 << 16:
            self._flush()

    def _flush(self) -> None:
        self.write(self.buffer.getvalue().encode())
        self.buffer.seek(0)
        self.buffer.truncate()

    def close(self) -> dict[str, Any]:
        self._flush()
        return super().close()


class _Journals:
    """Turns stored events into the CSV journals' rows."""

    def __init__(self, out: Path) -> None:
        self.files = {name: _Csv(out / name, header) for name, (_, header) in JOURNALS.items()}

    def add(self, entry: StoredEntry) -> None:
        body = msgspec.json.decode(entry.body.encode())
        kind, data, at = body.get("type"), body.get("data") or {}, body.get("at", "")
        if kind == "sale.completed":
            self._sale(entry.position, at, entry.terminal_id, body.get("id", ""), data)
        elif kind == "shift.closed":
            self._shift_closed(entry, at, data)
        postings = decode_postings(entry.postings)
        changes: dict[tuple[str, str], list[int]] = {}
        for account, currency_code, amount in postings:
            if account.startswith("liability:stored_value:"):
                member, _, part = account.removeprefix("liability:stored_value:").rpartition(":")
                sums = changes.setdefault((member, currency_code), [0, 0])
                sums[0 if part == "principal" else 1] -= amount  # a credit raises what is owed
        reference = next((str(data[k]) for k in ("recharge_id", "spend_id", "refund_id") if k in data), "")
        for (member, currency_code), (principal, bonus) in changes.items():
            self.files["stored_value.csv"].row([
                entry.position, at, kind, member, reference, currency_code, principal, bonus,
                principal + bonus, _decimal(principal + bonus, currency_code)])

    def _sale(self, position: int, at: str, terminal_id: str, event_id: str, data: dict[str, Any]) -> None:
        code, order_id = data.get("currency", ""), data.get("order_id", "")
        gross = 0
        for number, line in enumerate(data.get("lines", []), start=1):
            amount = line["qty"] * line["unit_price_minor"]
            gross += amount
            self.files["lines.csv"].row([position, order_id, number, line["sku"], line["name"], line["qty"],
                                         line["unit_price_minor"], amount, _decimal(amount, code), code])
        for number, tender in enumerate(data.get("tenders", []), start=1):
            change = tender.get("change_minor", 0)
            net = tender["amount_minor"] - change
            self.files["tenders.csv"].row([position, order_id, number, tender["method"], tender["amount_minor"],
                                           change, net, _decimal(net, code), tender.get("payment_id") or "", code])
        total = data.get("total_minor", 0)
        self.files["transactions.csv"].row([
            position, at, terminal_id, event_id, order_id, data.get("channel", "counter"),
            data.get("member_id") or "", code, gross, data.get("discount_minor", 0), total, _decimal(total, code)])

    def _shift_closed(self, entry: StoredEntry, at: str, data: dict[str, Any]) -> None:
        expected, terminal_id, code = 0, "", ""
        for account, currency_code, amount in decode_postings(entry.postings):
            if account.startswith("asset:cash:") and account != "asset:cash:safe":
                expected, terminal_id, code = -amount, account.removeprefix("asset:cash:"), currency_code
            code = code or currency_code
        counted = data.get("counted_minor", 0)
        self.files["shift_closings.csv"].row([
            entry.position, at, data.get("shift_id", ""), terminal_id, code, expected, counted,
            counted - expected, _decimal(counted - expected, code) if code else str(counted - expected),
            entry.hash.hex()])

    def close(self) -> list[dict[str, Any]]:
        return [f.close() for f in self.files.values()]


def _entries(ledger: Ledger, store_id: str, first: int, last: int) -> Iterator[StoredEntry]:
    after = first - 1
    while after < last:
        page = ledger.read_entries(store_id, after, min(READ_EVENTS_MAX, last - after))
        if not page:
            return
        yield from page
        after = page[-1].position


class _Keys:
    """The keys the log itself names: the server's (store.opened) and each terminal's."""

    def __init__(self) -> None:
        self.server_public_key = ""
        self.currency = ""
        self.terminals: dict[str, dict[str, Any]] = {}

    def add(self, entry: StoredEntry) -> None:
        if entry.terminal_id != SERVER_TERMINAL_ID:
            return
        body = msgspec.json.decode(entry.body.encode())
        kind, data = body.get("type"), body.get("data") or {}
        if kind == "store.opened":
            self.server_public_key, self.currency = data.get("server_public_key", ""), data.get("currency", "")
        elif kind == "terminal.registered":
            self.terminals[data["terminal_id"]] = {"terminal_id": data["terminal_id"],
                                                   "public_key": data["public_key"], "label": data.get("label", ""),
                                                   "registered_position": entry.position, "revoked_position": None}
        elif kind == "terminal.revoked" and data.get("terminal_id") in self.terminals:
            self.terminals[data["terminal_id"]]["revoked_position"] = entry.position

    def document(self, store_id: str) -> bytes:
        return msgspec.json.format(_ROW_ENCODER.encode({
            "store_id": store_id, "server_public_key": self.server_public_key,
            "terminals": list(self.terminals.values())}), indent=2) + b"\n"


def write_export(ledger: Ledger, store_id: str, out: Path, first: int = 1, last: int | None = None,
                 on_progress: Callable[[int], None] = lambda n: None) -> dict[str, Any]:
    """Write the export of positions first..last (default: to the head); the manifest as written.

    It reads the stored rows only (never the folded state), so a log that no longer replays can
    still be taken away and shown to be broken.
    """
    length = ledger.index.select_last_position(store_id)
    if length == 0 or not ledger.read_entries(store_id, 0, 1):
        raise StoreNotFound(f"no store {store_id!r}")
    last = length if last is None else last
    if first < 1 or last < first or last > length:
        raise InvalidInput(f"the range must satisfy 1 <= from <= to <= {length} (the log's length), "
                           f"got from {first} to {last}")
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise InvalidInput(f"{out} is not empty: export into a new directory")
    tail = ledger.read_entries(store_id, length - 1, 1)
    head = tail[0].hash if tail else ZERO_HASH
    keys = _Keys()
    for entry in _entries(ledger, store_id, 1, first - 1):
        keys.add(entry)
    previous = ZERO_HASH if first == 1 else ledger.read_entries(store_id, first - 2, 1)[0].hash
    events = _Hashed(out / EVENTS_FILE)
    journals = _Journals(out)
    last_hash, count = previous, 0
    for entry in _entries(ledger, store_id, first, last):
        row = ExportRow(entry.position, entry.terminal_id, entry.body, base64.b64encode(entry.sig).decode(),
                        entry.hash.hex(), entry.postings)
        events.write(_ROW_ENCODER.encode(row) + b"\n")
        events.rows += 1
        journals.add(entry)
        keys.add(entry)
        last_hash, count = entry.hash, count + 1
        if count % READ_EVENTS_MAX == 0:
            on_progress(READ_EVENTS_MAX)
    on_progress(count % READ_EVENTS_MAX)
    if count != last - first + 1:
        raise InvalidInput(f"the log ends before position {last}")
    keys_file = _Hashed(out / KEYS_FILE)
    keys_file.write(keys.document(store_id))
    files = [events.close(), keys_file.close(), *journals.close()]
    if first == 1 and last == length:
        balances = _Csv(out / BALANCES_FILE, BALANCES_HEADER)
        for account, code, debit, credit in ledger.index.select_balances(store_id):
            balances.row([account, code, debit, credit, debit - credit, _decimal(debit - credit, code)])
        files.append(balances.close())
    files.append(_write_index(out, files))
    manifest = {
        "format": EXPORT_FORMAT,
        "store_id": store_id,
        "currency": keys.currency,
        "range": {"unit": "position", "from": first, "to": last},
        "first_position": first,
        "last_position": last,
        "events": count,
        "previous_hash": previous.hex(),
        "chain_head": last_hash.hex(),
        "log_length": length,
        "log_head": head.hex(),
        "created_at": datetime.now(UTC).isoformat(),
        "server_public_key": base64.b64encode(ledger.server_public_key).decode(),
        "signature_file": SIGNATURE_FILE,
        "files": files,
    }
    _write_signed(out, manifest, ledger.server_seed)
    return manifest


def _write_index(out: Path, files: list[dict[str, Any]]) -> dict[str, Any]:
    index = _Csv(out / INDEX_FILE, ["file", "description", "rows"])
    descriptions = {name: text for name, (text, _) in JOURNALS.items()}
    descriptions[BALANCES_FILE] = "balances per account and currency as the server serves them"
    for item in files:
        if item["name"] in descriptions:
            index.row([item["name"], descriptions[item["name"]], item["rows"]])
    return index.close()


def _write_signed(out: Path, manifest: dict[str, Any], server_seed: bytes) -> None:
    """manifest.json, and beside it the server's signature of its exact bytes."""
    raw = msgspec.json.format(_ROW_ENCODER.encode(manifest), indent=2) + b"\n"
    (out / MANIFEST_FILE).write_bytes(raw)
    signature = _core.ed25519_sign(server_seed, raw)
    (out / SIGNATURE_FILE).write_text(base64.b64encode(signature).decode() + "\n")


__all__ = ["EVENTS_FILE", "EXPORT_FORMAT", "ExportRow", "write_export"]
