"""Tamper evidence against anchors outside the database: a witness checkpoint, the server key, an export.

Each edit an attacker with database access can make (a row edited, deleted, inserted, moved, the
tail cut, the chain recomputed, the server key replaced) is caught and named by position, on
SQLite and on PostgreSQL, against a witness taken before the edit and against an export made after.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos_ledger import _core
from pos_ledger.anchors import Checkpoint, parse_checkpoint, read_server_key, sign_checkpoint
from pos_ledger.audit import AuditReport, audit_export, audit_store
from pos_ledger.export import write_export
from pos_ledger.ledger import Ledger, SignedEvent
from pos_ledger.payments.drawer import Shifts
from tests.conftest import SERVER_SEED
from tests.tamper_support import Entry, LogRewriter, resign

STORE = "s"
TERMINAL_SEED = bytes([9]) * 32
ATTACKER_SEED = bytes([66]) * 32
SERVER_KEY = _core.ed25519_public_key(SERVER_SEED)


def sale(seq: int, total: int = 1200) -> SignedEvent:
    body = json.dumps({"id": str(uuid.uuid4()), "seq": seq, "type": "sale.completed",
                       "at": "2026-11-23T09:00:00+08:00",
                       "data": {"order_id": str(uuid.uuid4()), "currency": "CNY",
                                "lines": [{"sku": "T", "name": "Tea", "qty": 1, "unit_price_minor": total}],
                                "discount_minor": 0, "total_minor": total,
                                "tenders": [{"method": "alipay", "amount_minor": total}]}}).encode()
    return SignedEvent(body, _core.ed25519_sign(TERMINAL_SEED, body))


def fill(ledger: Ledger) -> None:
    """1 store.opened, 2 terminal.registered, 3 shift.opened, 4-13 sales (seq 1-10), 14 shift.closed,
    15 checkpoint.recorded, 16-20 sales (seq 11-15)."""
    ledger.open_store(STORE, "S", "CNY", "Asia/Shanghai")
    ledger.register_terminal(STORE, "t", _core.ed25519_public_key(TERMINAL_SEED), "")
    shifts = Shifts(ledger)
    shift = shifts.open(STORE, "t", 500, "shift-1")
    ledger.ingest(STORE, "t", [sale(seq) for seq in range(1, 11)])
    shifts.close(STORE, shift.shift_id, 500)
    ledger.ingest(STORE, "t", [sale(seq) for seq in range(11, 16)])
    assert ledger.chain(STORE)[1] == 20


@pytest.fixture
def filled(database: str) -> tuple[str, Checkpoint]:
    ledger = Ledger(database, SERVER_SEED)
    try:
        fill(ledger)
        head, length = ledger.chain(STORE)
        return database, sign_checkpoint(SERVER_SEED, STORE, length, head)
    finally:
        ledger.close()


def _audit(database: str, witness: Checkpoint | None = None, server_key: bytes | None = None) -> AuditReport:
    ledger = Ledger(database, SERVER_SEED)
    try:
        return audit_store(ledger, STORE, witness=witness, server_key=server_key)
    finally:
        ledger.close()


def _edit_body(entries: list[Entry], position: int) -> None:
    entry = entries[position - 1]
    entries[position - 1] = dict(entry, body=entry["body"].replace("1200", "1100"))


def _delete(position: int) -> Callable[[list[Entry]], None]:
    return lambda entries: entries.pop(position - 1) and None


def _swap(entries: list[Entry]) -> None:
    entries[7], entries[8] = entries[8], entries[7]


def _insert_copy(entries: list[Entry]) -> None:
    entries.insert(8, dict(entries[7]))


def _insert_forged(entries: list[Entry]) -> None:
    entries.insert(7, resign(dict(entries[7]), ATTACKER_SEED, order_id=str(uuid.uuid4())))


def _cut(entries: list[Entry]) -> None:
    del entries[17:]


def _sequence_change(edit: Callable[[list[Entry]], None]) -> Callable[[list[Entry]], None]:
    return edit


#: name -> (edit, recompute the chain, expected first position, or a range when the change can only
#: be bounded: a removed terminal event leaves no gap in any numbering, so the first anchor that no
#: longer matches – the in-log checkpoint at 14 – names it).
TAMPERS: dict[str, tuple[Callable[[list[Entry]], None], bool, tuple[int, int]]] = {
    "row_edited": (lambda e: _edit_body(e, 8), False, (8, 8)),
    "row_edited_chain_recomputed": (lambda e: _edit_body(e, 8), True, (8, 8)),
    "server_row_deleted": (_delete(3), True, (3, 3)),
    "terminal_row_deleted": (_delete(8), True, (8, 14)),
    "row_inserted_copy": (_insert_copy, True, (9, 9)),
    "row_inserted_forged": (_insert_forged, True, (8, 8)),
    "rows_reordered": (_swap, True, (8, 8)),
    "rows_reordered_chain_kept": (_swap, False, (8, 8)),
    "tail_cut": (_cut, True, (18, 18)),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_each_edit_is_named_against_a_witness(filled: tuple[str, Checkpoint], name: str) -> None:
    database, witness = filled
    edit, rechain, (low, high) = TAMPERS[name]
    rewriter = LogRewriter(database, STORE)
    entries = rewriter.entries()
    edit(entries)
    rewriter.write(entries, rechain=rechain)
    report = _audit(database, witness=witness, server_key=SERVER_KEY)
    assert not report.ok
    assert report.first_error is not None and low <= report.first_error[0] <= high, report.first_error


def test_a_sound_log_extends_its_witness_and_a_later_one(filled: tuple[str, Checkpoint]) -> None:
    database, witness = filled
    report = _audit(database, witness=witness, server_key=SERVER_KEY)
    assert report.ok, report
    assert report.anchors == ["extends the witness at position 20"]
    early = sign_checkpoint(SERVER_SEED, STORE, 14, Ledger(database, SERVER_SEED).read_entries(STORE, 13, 1)[0].hash)
    assert _audit(database, witness=early).ok


def test_a_cut_tail_passes_without_anchors_but_not_with_a_witness(filled: tuple[str, Checkpoint]) -> None:
    """Today's hole: the chain recomputed from the rows alone cannot see a cut tail."""
    database, witness = filled
    rewriter = LogRewriter(database, STORE)
    entries = rewriter.entries()
    _cut(entries)
    rewriter.write(entries, rechain=True)
    assert _audit(database).ok
    report = _audit(database, witness=witness)
    assert report.first_error is not None and report.first_error[0] == 18
    assert "log_cut" in report.first_error[1]


def test_a_replaced_server_key_is_caught(filled: tuple[str, Checkpoint]) -> None:
    database, witness = filled
    rewriter = LogRewriter(database, STORE)
    entries = rewriter.entries()
    attacker = base64.b64encode(_core.ed25519_public_key(ATTACKER_SEED)).decode()
    for index, entry in enumerate(entries):
        if entry["terminal_id"] == "server":
            changes = {"server_public_key": attacker} if index == 0 else {}
            entries[index] = resign(entry, ATTACKER_SEED, **changes)
    rewriter.write(entries, rechain=True, checkpoints_seed=ATTACKER_SEED)
    assert _audit(database).ok  # self-consistent: only an anchor can tell
    report = _audit(database, server_key=SERVER_KEY)
    assert report.first_error is not None and report.first_error[0] == 1
    assert "server_key_differs" in report.first_error[1]
    report = _audit(database, witness=witness)
    assert not report.ok
    assert any("witness's signature" in problem for problem in report.problems)


def test_a_forged_or_foreign_witness_fails(filled: tuple[str, Checkpoint]) -> None:
    database, witness = filled
    forged = sign_checkpoint(ATTACKER_SEED, STORE, witness.position, witness.chain_head, witness.at)
    assert any("signature" in p for p in _audit(database, witness=forged).problems)
    other = sign_checkpoint(SERVER_SEED, "other", witness.position, witness.chain_head)
    assert any("store" in p for p in _audit(database, witness=other).problems)


# ---- exports ----


def _export(database: str, out: Path, first: int = 1, last: int | None = None) -> dict[str, object]:
    ledger = Ledger(database, SERVER_SEED)
    try:
        return write_export(ledger, STORE, out, first, last)
    finally:
        ledger.close()


def test_export_round_trip_audits_clean_offline(filled: tuple[str, Checkpoint], tmp_path: Path) -> None:
    database, witness = filled
    manifest = _export(database, tmp_path / "x")
    report = audit_export(tmp_path / "x", server_key=SERVER_KEY, witness=witness)
    assert report.ok, report
    assert (report.store_id, report.length, report.head) == (STORE, 20, witness.chain_head)
    assert report.signatures_checked == 20 and report.balances_compared
    assert manifest["chain_head"] == witness.chain_head
    lines = (tmp_path / "x" / "events.jsonl").read_text().splitlines()
    stored = Ledger(database, SERVER_SEED).read_entries(STORE, 0, 100)
    for line, entry in zip(lines, stored, strict=True):
        row = json.loads(line)
        assert (row["position"], row["terminal_id"], row["body"], base64.b64decode(row["sig"]),
                bytes.fromhex(row["hash"])) == (entry.position, entry.terminal_id, entry.body, entry.sig, entry.hash)
    quick = audit_export(tmp_path / "x", signatures=False)
    assert quick.ok and quick.signatures_checked == 0


def test_a_partial_export_carries_the_hash_before_it(filled: tuple[str, Checkpoint], tmp_path: Path) -> None:
    database, _ = filled
    manifest = _export(database, tmp_path / "x", 5, 16)
    before = Ledger(database, SERVER_SEED).read_entries(STORE, 3, 1)[0].hash.hex()
    assert (manifest["previous_hash"], manifest["events"]) == (before, 12)
    report = audit_export(tmp_path / "x", server_key=SERVER_KEY)
    assert report.ok, report
    assert not report.balances_compared and report.length == 16
    assert report.signatures_checked == 12
    assert audit_export(tmp_path / "x", signatures=False).ok
    assert not (tmp_path / "x" / "balances.csv").exists()


@pytest.mark.parametrize("quick", [False, True])
@pytest.mark.parametrize("name", ["row_edited", "terminal_row_deleted", "rows_reordered", "tail_cut",
                                  "server_row_deleted", "row_inserted_copy"])
def test_an_export_of_a_rewritten_log_fails_the_witness(filled: tuple[str, Checkpoint], tmp_path: Path,
                                                         name: str, quick: bool) -> None:
    database, witness = filled
    edit, rechain, (low, high) = TAMPERS[name]
    rewriter = LogRewriter(database, STORE)
    entries = rewriter.entries()
    edit(entries)
    rewriter.write(entries, rechain=rechain)
    _export(database, tmp_path / "x")
    report = audit_export(tmp_path / "x", server_key=SERVER_KEY, witness=witness, signatures=not quick)
    assert report.first_error is not None and low <= report.first_error[0] <= high, report.first_error


def _edit_line(path: Path, number: int, change: Callable[[dict[str, object]], None]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    row = json.loads(lines[number - 1])
    change(row)
    lines[number - 1] = json.dumps(row, separators=(",", ":")) + "\n"
    path.write_text("".join(lines))


def test_an_edited_or_cut_export_fails_its_manifest(filled: tuple[str, Checkpoint], tmp_path: Path) -> None:
    database, _ = filled
    _export(database, tmp_path / "x")
    events = tmp_path / "x" / "events.jsonl"
    original = events.read_text()

    _edit_line(events, 10, lambda row: row.update(body=str(row["body"]).replace("1200", "1100")))
    report = audit_export(tmp_path / "x")
    assert any("events.jsonl does not match" in p for p in report.problems)
    assert report.first_error is not None and report.first_error[0] == 10

    events.write_text("".join(original.splitlines(keepends=True)[:15]))
    report = audit_export(tmp_path / "x")
    assert any("events.jsonl does not match" in p for p in report.problems)
    assert report.first_error is not None and report.first_error[0] == 16 and "export_cut" in report.first_error[1]

    for quick in (True, False):  # a line cut out of the middle: the positions no longer follow
        events.write_text("".join(line for number, line in enumerate(original.splitlines(keepends=True), 1)
                                  if number != 7))
        report = audit_export(tmp_path / "x", signatures=not quick, read_bytes=1000)
        assert report.first_error is not None and report.first_error[0] == 7, report.first_error

    events.write_text(original)
    assert audit_export(tmp_path / "x").ok
    assert audit_export(tmp_path / "x", signatures=False, read_bytes=700).ok  # lines split across reads
    (tmp_path / "x" / "lines.csv").write_text("position\n")
    assert any("lines.csv" in p for p in audit_export(tmp_path / "x").problems)
    events.unlink()
    assert any("events.jsonl is missing" in p for p in audit_export(tmp_path / "x").problems)
    (tmp_path / "x" / "manifest.json.sig").unlink()
    assert any("not signed" in p for p in audit_export(tmp_path / "x").problems)
    (tmp_path / "x" / "manifest.json").write_text("{")
    report = audit_export(tmp_path / "x")
    assert not report.ok and any("malformed" in p for p in report.problems)


def test_a_re_signed_manifest_fails_the_real_server_key(filled: tuple[str, Checkpoint], tmp_path: Path) -> None:
    database, _ = filled
    _export(database, tmp_path / "x")
    manifest = tmp_path / "x" / "manifest.json"
    raw = manifest.read_bytes().replace(b'"events": 20', b'"events": 19')
    manifest.write_bytes(raw)
    (tmp_path / "x" / "manifest.json.sig").write_text(
        base64.b64encode(_core.ed25519_sign(ATTACKER_SEED, raw)).decode())
    report = audit_export(tmp_path / "x", server_key=SERVER_KEY)
    assert any("signature" in p for p in report.problems)


def test_checkpoint_and_key_files_parse_and_refuse_garbage(tmp_path: Path) -> None:
    signed = sign_checkpoint(SERVER_SEED, STORE, 3, bytes(range(32)))
    assert parse_checkpoint(json.dumps(signed.as_dict()).encode()).verifies_with(SERVER_KEY)
    assert not signed.verifies_with(_core.ed25519_public_key(ATTACKER_SEED))
    # What an auditor's own tool checks (README): Ed25519 over the RFC 8785 JSON of the other members.
    fields = {k: v for k, v in signed.as_dict().items() if k != "signature"}
    message = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    assert _core.ed25519_verify_batch([SERVER_KEY], [message], [base64.b64decode(signed.signature)]) == [True]
    for path, text in [("pub", base64.b64encode(SERVER_KEY).decode()),
                       ("seed", "seed:" + base64.b64encode(SERVER_SEED).decode())]:
        (tmp_path / path).write_text(text + "\n")
        assert read_server_key(tmp_path / path) == SERVER_KEY
    (tmp_path / "raw").write_bytes(SERVER_SEED)
    assert read_server_key(tmp_path / "raw") == SERVER_KEY
    from pos_ledger.errors import InvalidInput

    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(InvalidInput):
        read_server_key(tmp_path / "bad")
    with pytest.raises(InvalidInput):
        parse_checkpoint(b'{"store_id": "s", "position": "3"}')


_EXPORT_CACHE: dict[str, Path] = {}


def _sound_export() -> Path:
    """One small export, made once for the property below (hypothesis does not take fixtures)."""
    if "dir" not in _EXPORT_CACHE:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="anchors-property-"))
        ledger = Ledger(str(root / "ledger.sqlite3"), SERVER_SEED)
        try:
            fill(ledger)
            write_export(ledger, STORE, root / "x")
        finally:
            ledger.close()
        _EXPORT_CACHE["dir"] = root / "x"
    return _EXPORT_CACHE["dir"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(1, 20), offset=st.integers(0, 10_000), quick=st.booleans())
def test_any_changed_byte_of_an_event_is_named_at_its_position(tmp_path: Path, position: int, offset: int,
                                                               quick: bool) -> None:
    """Whatever byte of an exported event's body changes, the export fails its manifest and the
    audit names that event's position (its chain hash, and without --quick its signature)."""
    import shutil

    target = tmp_path / f"x{position}-{offset}-{quick}"
    shutil.copytree(_sound_export(), target)
    events = target / "events.jsonl"
    lines = events.read_text().splitlines(keepends=True)
    row = json.loads(lines[position - 1])
    body = str(row["body"])
    index = offset % len(body)
    row["body"] = body[:index] + ("x" if body[index] != "x" else "y") + body[index + 1:]
    lines[position - 1] = json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n"
    events.write_text("".join(lines))
    report = audit_export(target, signatures=not quick)
    assert any("events.jsonl does not match" in p for p in report.problems)
    assert report.first_error is not None and report.first_error[0] == position, report.first_error


@pytest.mark.parametrize("quick", [False, True])
def test_a_partial_export_of_a_rewritten_log_fails_its_in_log_checkpoint(filled: tuple[str, Checkpoint],
                                                                         tmp_path: Path, quick: bool) -> None:
    database, _ = filled
    rewriter = LogRewriter(database, STORE)
    entries = rewriter.entries()
    _delete(8)(entries)  # a sale gone, everything recomputed; the Z's checkpoint now at 14 pins 13
    rewriter.write(entries, rechain=True)
    _export(database, tmp_path / "x", 10, 19)
    report = audit_export(tmp_path / "x", signatures=not quick)
    assert report.first_error is not None and report.first_error[0] == 14
    assert "checkpoint_mismatch" in report.first_error[1]
