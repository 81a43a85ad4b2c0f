"""The auditor: replay a store's whole log and check everything that can be checked.

1. The hash chain, recomputed from the stored bytes (Rust `LedgerFolder`).
2. Every signature, against the key the signer had at that point of the log
   (terminal keys come from the log's own `terminal.registered` events; the
   server key from `store.opened`), in Rust batches.
3. Every event's postings: the stored postings balance per currency (Rust), and
   re-running the domain rules on the replayed state gives the same postings
   (Python: the rules exist once, in `pos_ledger.catalog`).
4. The folded balances equal the balances table the server maintains.

Streaming, in pages: memory stays bounded by the page size and the account count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pos_ledger import _core
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
from pos_ledger.state import StoreState


@dataclass
class AuditReport:
    store_id: str
    length: int = 0
    head: str = ""
    signatures_checked: int = 0
    #: (position, reason) of the first problem found, or None when the log is sound.
    first_error: tuple[int, str] | None = None
    balances_match: bool = False
    balances: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.first_error is None and self.balances_match


def _signer_key(state: StoreState, terminal_id: str) -> bytes:
    if terminal_id == SERVER_TERMINAL_ID:
        return state.server_public_key
    terminal = state.terminals.get(terminal_id)
    return terminal.public_key if terminal and not terminal.revoked else b""


def _replay_page(state: StoreState, page: list[StoredEntry], report: AuditReport) -> None:
    """Re-run the rules entry by entry; signatures of the page are checked in one batch."""
    keys: list[bytes] = []
    for entry in page:
        try:
            body = decode_body(entry.body.encode())
            event_type, data = decode_data(body, entry.terminal_id)
            postings = event_type.decide(data, state, entry.terminal_id)
        except EventRejected as rejected:
            report.first_error = (entry.position, f"rules_refuse_stored_event: {rejected}")
            break
        if sorted(postings) != sorted(decode_postings(entry.postings)):
            report.first_error = (entry.position, "postings_differ_from_rules")
            break
        check_balanced(postings)
        signer_key = _signer_key(state, entry.terminal_id)
        meta = EntryMeta(entry.position, entry.terminal_id, body.id, body.seq, body.at)
        state.apply(event_type, data, meta, entry.hash)
        # The first entry, store.opened, names the server key that signed it.
        keys.append(state.server_public_key if entry.position == 1 else signer_key)
    verdicts = _core.ed25519_verify_batch(keys, [e.body.encode() for e in page[: len(keys)]],
                                          [e.sig for e in page[: len(keys)]])
    report.signatures_checked += len(verdicts)
    for entry, valid in zip(page, verdicts, strict=False):
        if not valid:
            if report.first_error is None or entry.position < report.first_error[0]:
                report.first_error = (entry.position, "bad_signature")
            return


def audit_store(ledger: Ledger, store_id: str, on_progress: Callable[[int], None] = lambda n: None) -> AuditReport:
    ledger.store(store_id)  # StoreNotFound for an unknown store
    report = AuditReport(store_id)
    folder = _core.LedgerFolder()
    state = StoreState(store_id)
    after = 0
    while report.first_error is None:
        page = ledger.read_entries(store_id, after, READ_EVENTS_MAX)
        if not page:
            break
        folder.feed([e.body.encode() for e in page], [e.sig for e in page], [e.hash for e in page],
                    [e.postings.encode() for e in page])
        if folder.first_error is not None:
            report.first_error = folder.first_error
            break
        _replay_page(state, page, report)
        after = page[-1].position
        on_progress(len(page))
    report.length = folder.position
    report.head = folder.head.hex()
    report.balances = folder.balances()
    served = {(account, currency): debit - credit
              for account, currency, debit, credit in ledger.balances(store_id) if debit != credit}
    report.balances_match = served == {key: value for key, value in report.balances.items() if value}
    return report
