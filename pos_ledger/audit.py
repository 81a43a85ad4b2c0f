"""The auditor: replay a store's whole log and check everything that can be checked.

1. The hash chain, recomputed from the stored bytes (Rust `LedgerFolder`).
2. Every signature, against the key the signer had at that point of the log
   (terminal keys come from the log's own `terminal.registered` events; the
   server key from `store.opened`), in Rust batches.
3. Every event's postings: the stored postings balance per currency (Rust), and
   re-running the domain rules on the replayed state gives the same postings
   (Python: the rules exist once, in `pos_ledger.catalog`).
4. The folded balances equal the balances table the server maintains.
5. Order: the server numbers its own events 1, 2, 3, ... and a terminal's `seq` only
   grows, so a removed or moved event is named where the numbering breaks.

And against anchors kept outside the database (`pos_ledger.anchors`): the server key the
auditor was given must be the log's, and a signed checkpoint (witness) must be extended by
the log (same head at its position), so a cut tail or a rewritten, re-chained log fails.
`audit_export` runs the same checks offline over an export directory and its signed manifest.

Streaming, in pages: memory stays bounded by the page size and the account count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import IO, Any, Final

import msgspec

from pos_ledger import _core
from pos_ledger.anchors import Checkpoint
from pos_ledger.errors import InvalidInput, StoreNotFound
from pos_ledger.events import (
    SERVER_TERMINAL_ID,
    EntryMeta,
    EventRejected,
    check_balanced,
    decode_body,
    decode_data,
    decode_postings,
)
from pos_ledger.ledger import READ_EVENTS_MAX, Ledger, StoredEntry
from pos_ledger.state import ZERO_HASH, StoreState


@dataclass
class AuditReport:
    store_id: str
    length: int = 0
    head: str = ""
    signatures_checked: int = 0
    #: (position, reason) of the first problem found, or None when the log is sound.
    first_error: tuple[int, str] | None = None
    balances_match: bool = False
    #: False when there was nothing to compare the refold with (an export of part of a log).
    balances_compared: bool = True
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Problems not tied to a position: a manifest or witness that does not verify, a wrong key.
    problems: list[str] = field(default_factory=list)
    #: What was proven against anchors, for the report ("witness at 120", "manifest").
    anchors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_error is None and self.balances_match and not self.problems

    def fail_at(self, position: int, reason: str) -> None:
        """Keep the earliest position that does not match."""
        if self.first_error is None or position < self.first_error[0]:
            self.first_error = (position, reason)


class _Auditor:
    """Folds pages of stored entries: chain, postings, order, signatures and (optionally) the rules."""

    def __init__(self, report: AuditReport, *, server_key: bytes | None, witness: Checkpoint | None,
                 head: bytes = ZERO_HASH, position: int = 0, replay: bool = True,
                 keys: dict[str, bytes] | None = None, signatures: bool = True) -> None:
        self.report = report
        self.server_key = server_key
        self.witness = witness
        self.folder = _core.LedgerFolder(head, position)
        #: The chain head before the next entry checked without the rules (`feed_rows`, `_check_page`).
        self.chunk_head = head
        self.state = StoreState(report.store_id)
        self.replay = replay
        self.signatures = signatures
        #: Without replay (an export of part of a log): the keys of keys.json.
        self.keys = keys or {}
        self.last_position: dict[str, int] = {}
        self.last_seq: dict[str, int] = {}
        self.witness_hash: bytes | None = ZERO_HASH if witness is not None and witness.position == 0 else None

    @property
    def stopped(self) -> bool:
        return self.report.first_error is not None

    def feed(self, page: list[StoredEntry]) -> None:
        self.folder.feed([e.body.encode() for e in page], [e.sig for e in page], [e.hash for e in page],
                         [e.postings.encode() for e in page])
        checked = page
        if self.folder.first_error is not None:
            self.report.fail_at(*self.folder.first_error)
            checked = [e for e in page if e.position < self.folder.first_error[0]]
        if self.replay:
            self._replay_page(checked)
        else:
            self._check_page(checked)
        if self.witness is not None:
            for entry in checked:
                if entry.position == self.witness.position:
                    self.witness_hash = entry.hash

    def feed_rows(self, rows: list[_FastRow]) -> None:
        """The fast path (no signatures, no rules): chain, postings, order, straight from decoded rows."""
        bodies = [row.body.encode() for row in rows]
        try:
            hashes = [bytes.fromhex(row.hash) for row in rows]
        except ValueError:
            hashes = [_unhex(row.hash) for row in rows]
        self.folder.feed(bodies, [row.sig for row in rows], hashes, [row.postings.encode() for row in rows])
        sound = len(rows)
        if self.folder.first_error is not None:
            self.report.fail_at(*self.folder.first_error)
            sound = self.folder.first_error[0] - rows[0].position
        try:  # every stored body is a JSON object (ingest decoded it strictly): one call for all
            seqs = [item.seq for item in _SEQS.decode(b"[" + b",".join(bodies[:sound]) + b"]")]
        except msgspec.DecodeError:
            seqs = []
            for row, body in zip(rows[:sound], bodies, strict=False):
                try:
                    seqs.append(_SEQ.decode(body).seq)
                except msgspec.DecodeError as error:
                    self.report.fail_at(row.position, f"malformed_body: {error}")
                    sound = len(seqs)
                    break
        for index, (row, seq) in enumerate(zip(rows, seqs, strict=False)):
            if not self._order(row, seq):
                return
            if row.terminal_id == SERVER_TERMINAL_ID and b'"checkpoint.recorded"' in bodies[index]:
                previous = hashes[index - 1] if index else self.chunk_head
                if not self._checkpoint_holds(row, bodies[index], row.position - 1, previous):
                    return
        self.chunk_head = hashes[sound - 1] if sound else self.chunk_head
        if self.witness is not None and rows[0].position <= self.witness.position < rows[0].position + sound:
            self.witness_hash = hashes[self.witness.position - rows[0].position]

    def _checkpoint_holds(self, row: StoredEntry | _FastRow, body: bytes, position: int, head: bytes) -> bool:
        """A server checkpoint in the log pins the entry before it (its rule, without the rest of the state)."""
        try:
            data = msgspec.json.decode(body).get("data", {})
            holds = bool(data.get("position") == position and data.get("chain_head") == head.hex())
        except (msgspec.DecodeError, AttributeError):
            holds = False
        if not holds:
            self.report.fail_at(row.position, "checkpoint_mismatch: the in-log checkpoint no longer pins the "
                                              "entry before it (the log was rewritten before this position)")
        return holds

    def _order(self, entry: StoredEntry | _FastRow, seq: int) -> bool:
        """False (and the position recorded) when the numbering shows a removed or moved event."""
        terminal = entry.terminal_id
        last = self.last_seq.get(terminal)
        if terminal == SERVER_TERMINAL_ID and last is not None and seq != last + 1:
            # The log matches up to the server's previous event; the change is after it, at or before here.
            since = self.last_position[terminal] + 1
            self.report.fail_at(since, f"server_seq_gap: the server's seq {seq} at position {entry.position} "
                                       f"follows {last}: an event between positions {since} and "
                                       f"{entry.position} was removed, inserted or moved")
            return False
        if terminal != SERVER_TERMINAL_ID and last is not None and seq <= last:
            # The same seq again is a copy put in here; a smaller one, an event moved down past the last.
            where = entry.position if seq == last else self.last_position[terminal]
            self.report.fail_at(where, f"seq_not_increasing: terminal {terminal!r} seq {seq} at position "
                                       f"{entry.position} follows {last} (an event was inserted or moved)")
            return False
        self.last_seq[terminal] = seq
        self.last_position[terminal] = entry.position
        return True

    def _replay_page(self, page: list[StoredEntry]) -> None:
        """Re-run the rules entry by entry; signatures of the page are checked in one batch."""
        state, report = self.state, self.report
        keys: list[bytes] = []
        for entry in page:
            try:
                body = decode_body(entry.body.encode())
                event_type, data = decode_data(body, entry.terminal_id)
                if not self._order(entry, body.seq):
                    break
                postings = event_type.decide(data, state, entry.terminal_id)
            except EventRejected as rejected:
                report.fail_at(entry.position, f"rules_refuse_stored_event: {rejected}")
                break
            except Exception as error:  # a rewritten log can hold what no rule ever let through
                report.fail_at(entry.position, f"replay_failed: {type(error).__name__}: {error}")
                break
            if sorted(postings) != sorted(decode_postings(entry.postings)):
                report.fail_at(entry.position, "postings_differ_from_rules")
                break
            check_balanced(postings)
            signer_key = _signer_key(state, entry.terminal_id)
            meta = EntryMeta(entry.position, entry.terminal_id, body.id, body.seq, body.at)
            try:
                state.apply(event_type, data, meta, entry.hash)
            except Exception as error:  # a rewritten log can hold what no rule ever let through
                report.fail_at(entry.position, f"replay_failed: {type(error).__name__}: {error}")
                break
            if entry.position == 1 and self.server_key is not None and state.server_public_key != self.server_key:
                keys.append(state.server_public_key)
                report.fail_at(1, "server_key_differs: store.opened names server key "
                                  f"{base64.b64encode(state.server_public_key).decode()}, not the one given")
                break
            # The first entry, store.opened, names the server key that signed it.
            keys.append(state.server_public_key if entry.position == 1 else signer_key)
        self._verify(page[: len(keys)], keys)

    def _check_page(self, page: list[StoredEntry]) -> None:
        """Without the log's beginning: order, and signatures with the keys the export names."""
        keys: list[bytes] = []
        for entry in page:
            try:
                seq = decode_body(entry.body.encode()).seq
            except EventRejected as rejected:
                self.report.fail_at(entry.position, f"malformed_body: {rejected}")
                break
            if not self._order(entry, seq):
                break
            body = entry.body.encode()
            if entry.terminal_id == SERVER_TERMINAL_ID and b'"checkpoint.recorded"' in body \
                    and not self._checkpoint_holds(entry, body, entry.position - 1, self.chunk_head):
                break
            self.chunk_head = entry.hash
            keys.append(self.keys.get(entry.terminal_id, b""))
        if self.signatures:
            self._verify(page[: len(keys)], keys)

    def _verify(self, entries: list[StoredEntry], keys: list[bytes]) -> None:
        verdicts = _core.ed25519_verify_batch(keys, [e.body.encode() for e in entries], [e.sig for e in entries])
        self.report.signatures_checked += len(verdicts)
        for entry, valid in zip(entries, verdicts, strict=True):
            if not valid:
                self.report.fail_at(entry.position, "bad_signature")
                return

    def finish(self) -> None:
        report = self.report
        report.length = self.folder.position
        report.head = self.folder.head.hex()
        report.balances = self.folder.balances()
        if self.witness is not None:
            self._check_witness(self.witness)

    def _check_witness(self, witness: Checkpoint) -> None:
        report = self.report
        key = self.server_key or self.state.server_public_key or self.keys.get(SERVER_TERMINAL_ID, b"")
        if witness.store_id != report.store_id:
            report.problems.append(f"the witness is for store {witness.store_id!r}, not {report.store_id!r}")
        elif not witness.verifies_with(key):
            report.problems.append("the witness's signature does not verify with the server key")
        if report.first_error is not None and report.first_error[0] <= witness.position:
            return  # the log already differs before the witness's position
        if self.witness_hash is None:
            report.fail_at(self.folder.position + 1,
                           f"log_cut: the log ends at position {self.folder.position} but the witness pins "
                           f"position {witness.position} (events were removed)")
        elif self.witness_hash.hex() != witness.chain_head:
            report.fail_at(witness.position,
                           f"differs_from_witness: chain head {self.witness_hash.hex()} at position "
                           f"{witness.position}, the witness has {witness.chain_head} (the log was "
                           "rewritten at or before this position)")
        else:
            report.anchors.append(f"extends the witness at position {witness.position}")


def _signer_key(state: StoreState, terminal_id: str) -> bytes:
    if terminal_id == SERVER_TERMINAL_ID:
        return state.server_public_key
    terminal = state.terminals.get(terminal_id)
    return terminal.public_key if terminal and not terminal.revoked else b""


def audit_store(ledger: Ledger, store_id: str, on_progress: Callable[[int], None] = lambda n: None, *,
                server_key: bytes | None = None, witness: Checkpoint | None = None) -> AuditReport:
    # Not `ledger.store()`: a tampered log may not even load; the auditor reads the rows itself.
    if not ledger.read_entries(store_id, 0, 1):
        raise StoreNotFound(f"no store {store_id!r}")
    report = AuditReport(store_id)
    auditor = _Auditor(report, server_key=server_key, witness=witness)
    after = 0
    while not auditor.stopped:
        page = ledger.read_entries(store_id, after, READ_EVENTS_MAX)
        if not page:
            break
        auditor.feed(page)
        _compare_index(ledger, store_id, after + 1, page, report)
        after = page[-1].position
        on_progress(len(page))
    if not auditor.stopped:
        extra = ledger.index.select_index_range(store_id, after + 1, after + 1)
        if extra:
            report.fail_at(after + 1, "index_has_more: the index table records an entry the log no longer has "
                                      "(removed)")
    auditor.finish()
    served = {(account, currency): debit - credit
              for account, currency, debit, credit in ledger.index.select_balances(store_id) if debit != credit}
    report.balances_match = served == {key: value for key, value in report.balances.items() if value}
    return report


def _compare_index(ledger: Ledger, store_id: str, first: int, page: list[StoredEntry],
                   report: AuditReport) -> None:
    """The index table written in the same transaction must describe the same entries."""
    rows = {row.position: row for row in ledger.index.select_index_range(store_id, first, page[-1].position)}
    for entry in page:
        row = rows.get(entry.position)
        digest = hashlib.sha256(entry.body.encode()).digest()
        if row is None or row.body_sha256 != digest or row.terminal_id != entry.terminal_id:
            report.fail_at(entry.position, "index_differs: the index table records another entry at this "
                                           "position (removed, inserted, moved or edited)")
            return


# ---- offline: an export directory (pos_ledger.export) ----

class _Row(msgspec.Struct):
    position: int
    terminal_id: str
    body: str
    sig: str
    hash: str
    postings: str = "[]"


class _FastRow(msgspec.Struct):
    """A line of events.jsonl; msgspec decodes the base64 `sig` itself."""

    position: int
    terminal_id: str
    body: str
    sig: bytes
    hash: str
    postings: str = "[]"


class _Seq(msgspec.Struct):
    seq: int


_FAST_ROWS: Final = msgspec.json.Decoder(list[_FastRow])
_ROW: Final = msgspec.json.Decoder(_Row)
_SEQ: Final = msgspec.json.Decoder(_Seq)
_SEQS: Final = msgspec.json.Decoder(list[_Seq])
#: Bytes of events.jsonl read (and hashed) at a time.
EXPORT_READ_BYTES: Final = 8 << 20


def _unhex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _stored(row: _FastRow) -> StoredEntry:
    return StoredEntry(row.position, row.terminal_id, row.body, row.sig, _unhex(row.hash), row.postings)


def _row_chunks(file: IO[bytes], digest: Any, read_bytes: int) -> Iterator[list[_FastRow]]:
    """events.jsonl in blocks of whole lines, hashing every byte read (checked against the manifest after)."""
    rest = b""
    while data := file.read(read_bytes):
        digest.update(data)
        data = rest + data
        end = data.rfind(b"\n")
        if end < 0:
            rest = data
            continue
        rest = data[end + 1:]
        yield _decode_rows(data[:end])
    if rest.strip():
        yield _decode_rows(rest)


def _decode_rows(block: bytes) -> list[_FastRow]:
    try:  # lines hold no raw newline (JSON escapes it), so the block is one array away
        return _FAST_ROWS.decode(b"[" + block.strip(b"\n").replace(b"\n", b",") + b"]")
    except msgspec.DecodeError:
        pass
    rows = []  # blank lines, or a line that is not a stored event: one by one, to say which
    for line in block.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = _ROW.decode(line)
        except msgspec.DecodeError as error:
            raise InvalidInput(f"events.jsonl has a line that is not a stored event ({error}): "
                               f"{line[:80]!r}") from None
        try:
            sig = base64.b64decode(row.sig, validate=True)
        except (binascii.Error, ValueError):
            sig = b""
        rows.append(_FastRow(row.position, row.terminal_id, row.body, sig, row.hash, row.postings))
    return rows


def read_manifest(directory: Path, server_key: bytes | None, report: AuditReport) -> dict[str, Any] | None:
    """The manifest, its signature checked with the server key; problems go into the report
    (None when it cannot be used at all: edited out of shape, or its signature file gone)."""
    try:
        raw = (directory / "manifest.json").read_bytes()
    except OSError as error:
        raise InvalidInput(f"{directory} is not an export: {error.strerror}: {error.filename}") from None
    try:
        signature = base64.b64decode((directory / "manifest.json.sig").read_text().strip(), validate=True)
    except (OSError, UnicodeDecodeError, binascii.Error, ValueError):
        signature = b""
        report.problems.append("manifest.json.sig is missing or not base64: the manifest is not signed")
    try:
        manifest = msgspec.json.decode(raw)
        manifest_key = base64.b64decode(manifest["server_public_key"], validate=True)
        int(manifest["first_position"]), int(manifest["last_position"]), bytes.fromhex(manifest["previous_hash"])
        report.store_id = str(manifest["store_id"])
    except (msgspec.DecodeError, binascii.Error, ValueError, KeyError, TypeError) as error:
        report.problems.append(f"manifest.json is malformed (edited?): {error}")
        return None
    if server_key is not None and manifest_key != server_key:
        report.problems.append("the manifest names another server key than the one given")
    if signature and not _core.ed25519_verify_batch([server_key or manifest_key], [raw], [signature])[0]:
        report.problems.append("manifest.json's signature (manifest.json.sig) does not verify with the server key")
    return dict(manifest)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_files(directory: Path, manifest: dict[str, Any], report: AuditReport) -> dict[str, str]:
    """SHA-256 of every listed file but events.jsonl (hashed while it is read); name -> expected."""
    listed = {str(item["name"]): str(item["sha256"]) for item in manifest.get("files", [])}
    if "events.jsonl" not in listed:
        report.problems.append("the manifest lists no events.jsonl")
    for name, expected in listed.items():
        path = directory / name
        if "/" in name or name.startswith("."):
            report.problems.append(f"the manifest lists a file outside the export: {name!r}")
        elif not path.is_file():
            report.problems.append(f"{name} is missing from the export")
        elif name != "events.jsonl" and _file_digest(path) != expected:
            report.problems.append(f"{name} does not match its SHA-256 in the manifest (edited)")
    return listed


def _export_keys(directory: Path, manifest: dict[str, Any]) -> dict[str, bytes]:
    try:
        document = msgspec.json.decode((directory / "keys.json").read_bytes())
        keys = {str(t["terminal_id"]): base64.b64decode(t["public_key"]) for t in document["terminals"]}
        keys[SERVER_TERMINAL_ID] = base64.b64decode(document["server_public_key"])
    except (OSError, msgspec.DecodeError, KeyError, TypeError, binascii.Error, ValueError) as error:
        raise InvalidInput(f"the export's keys.json is unreadable: {error}") from None
    return keys


def _exported_balances(path: Path) -> dict[tuple[str, str], int]:
    import csv

    try:
        with path.open(newline="", encoding="utf-8") as file:
            return {(row["account"], row["currency"]): int(row["balance_minor"])
                    for row in csv.DictReader(file) if int(row["balance_minor"])}
    except (OSError, UnicodeDecodeError, KeyError, TypeError, ValueError, csv.Error) as error:
        raise InvalidInput(f"the export's balances.csv is unreadable: {error}") from None


def audit_export(directory: Path, on_progress: Callable[[int], None] = lambda n: None, *,
                 server_key: bytes | None = None, witness: Checkpoint | None = None,
                 signatures: bool = True, read_bytes: int = EXPORT_READ_BYTES) -> AuditReport:
    """Audit an export offline: manifest and files, then the same checks as `audit_store`.

    An export from position 1 is replayed with the rules; one from a later position starts at
    its `previous_hash` and checks signatures with the keys of keys.json (no rules: the state
    before it is not in the export). `signatures=False` skips signatures and rules (chain,
    postings, order, manifest and anchors only: the fast path).
    """
    report = AuditReport("")
    manifest = read_manifest(directory, server_key, report)
    if manifest is None:
        report.balances_compared = False
        return report
    listed = _check_files(directory, manifest, report)
    if not (directory / "events.jsonl").is_file():
        report.balances_compared = False
        return report  # named by _check_files
    keys = _export_keys(directory, manifest)
    key = server_key or keys[SERVER_TERMINAL_ID]
    if keys[SERVER_TERMINAL_ID] != key:
        report.problems.append("keys.json names another server key than the manifest's")
    first, last = int(manifest["first_position"]), int(manifest["last_position"])
    auditor = _Auditor(report, server_key=key, witness=witness, head=bytes.fromhex(manifest["previous_hash"]),
                       position=first - 1, replay=signatures and first == 1, keys=keys, signatures=signatures)
    digest = hashlib.sha256()
    expected_position = first
    with (directory / "events.jsonl").open("rb") as file:
        for rows in _row_chunks(file, digest, read_bytes):
            if auditor.stopped or not rows:
                continue  # keep hashing: the manifest check covers the whole file
            wrong = next((p for row, p in zip(rows, count(expected_position)) if row.position != p), None)
            if wrong is not None:
                report.fail_at(wrong, f"export_out_of_order: the line for position {wrong} says otherwise")
                rows = rows[: wrong - expected_position]
            expected_position += len(rows)
            if not rows:
                continue
            if signatures:
                for start in range(0, len(rows), READ_EVENTS_MAX):
                    auditor.feed([_stored(row) for row in rows[start:start + READ_EVENTS_MAX]])
            else:
                auditor.feed_rows(rows)
            on_progress(len(rows))
    if digest.hexdigest() != listed.get("events.jsonl"):
        report.problems.append("events.jsonl does not match its SHA-256 in the manifest (cut or edited)")
    auditor.finish()
    if not auditor.stopped and report.length != last:
        report.fail_at(report.length + 1, f"export_cut: events.jsonl ends at position {report.length}, "
                                          f"the manifest says {last}")
    elif not auditor.stopped and report.head != manifest["chain_head"]:
        report.fail_at(last, "chain head differs from the manifest's")
    elif not auditor.stopped:
        report.anchors.append(f"manifest: positions {first}..{last}, head {report.head}")
    balances_path = directory / "balances.csv"
    if first == 1 and "balances.csv" in listed and balances_path.is_file():
        served = _exported_balances(balances_path)
        report.balances_match = served == {k: v for k, v in report.balances.items() if v}
    else:
        report.balances_match, report.balances_compared = True, False
    return report
