"""The Ledger application: signed, hash-chained, per-store event logs on `eventsourcing`.

Each store's log is one chain of entries. An entry is stored as one
`LedgerEntryRecorded` domain event in a bounded "chain segment" stream
(`SEGMENT_EVENTS_MAX` entries each, so no stream grows without bound), next to an
index row and balance deltas written in the same transaction (`storage.py`).

Writes to a store are serialised by a per-store lock in this process and by the
database across processes: the (store, position) primary key admits one entry
per position, so a writer that lost a race gets an IntegrityError, drops its
cached state, reloads it from the log and decides again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

import msgspec
from eventsourcing.application import Application
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.utils import get_topic

from pos_ledger import _core, catalog
from pos_ledger.bounds import account_totals
from pos_ledger.errors import (
    AlreadyExists,
    BatchTooLarge,
    ConcurrentWriteRetriesExhausted,
    EventRefused,
    InvalidInput,
    PosLedgerError,
    StoreNotFound,
    TerminalNotFound,
    WeakPublicKey,
)
from pos_ledger.events import (
    SERVER_TERMINAL_ID,
    EntryMeta,
    EventBody,
    EventRejected,
    EventType,
    Posting,
    check_balanced,
    decode_body,
    decode_data,
    decode_postings,
    encode_postings,
)
from pos_ledger.state import StoreState
from pos_ledger.storage import BalanceDelta, IndexedEntry, IndexRow, LedgerIndex, persistence_env

SEGMENT_EVENTS_MAX: Final = 10_000
BATCH_EVENTS_MAX: Final = 1_000
#: Events one group commit takes from the batches waiting for a store (one transaction).
GROUP_EVENTS_MAX: Final = 8_000
BATCH_BYTES_MAX: Final = 1 << 20
READ_EVENTS_MAX: Final = 1_000
#: Attempts at appending when another writer keeps taking the chain tip first.
APPEND_ATTEMPTS_MAX: Final = 5
SIGNATURE_BYTES: Final = 64
LEDGER_NAMESPACE: Final = uuid5(NAMESPACE_URL, "https://pos-ledger.dev/chain-segment")

_ENCODER: Final = msgspec.json.Encoder()


class LedgerEntryRecorded(DomainEvent):
    """One entry of a store's chain, exactly as the terminal (or server) signed it."""

    store_id: str
    position: int
    terminal_id: str
    event_id: str
    seq: int
    type: str
    #: The exact UTF-8 body text that was signed.
    body: str
    #: Hex of the 64-byte Ed25519 signature and of the 32-byte chain hash after this entry.
    sig: str
    hash: str
    #: Postings as compact JSON, `[[account, currency, amount_minor], ...]`.
    postings: str


class _EntryState(msgspec.Struct, frozen=True):
    """The stored state of a `LedgerEntryRecorded`, encoded by msgspec on the hot path.

    It is the JSON `eventsourcing`'s own transcoder writes for that event (the
    timestamp in its `datetime_iso` form), so the standard mapper reads it back;
    msgspec only replaces the per-event `Application.save` + JSON transcoding,
    which profiling showed to cost more than everything else in ingest together.
    """

    timestamp: dict[str, str]
    store_id: str
    position: int
    terminal_id: str
    event_id: str
    seq: int
    type: str
    body: str
    sig: str
    hash: str
    postings: str


_ENTRY_TOPIC: Final = get_topic(LedgerEntryRecorded)
_STATE_ENCODER: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class SignedEvent:
    body: bytes
    sig: bytes


@dataclass(frozen=True, slots=True)
class IngestResult:
    id: str | None
    status: str
    reason: str | None = None
    position: int | None = None


@dataclass(frozen=True, slots=True)
class StoredEntry:
    position: int
    terminal_id: str
    body: str
    sig: bytes
    hash: bytes
    postings: str


@dataclass(slots=True)
class _Candidate:
    """An event that passed the stateless checks, waiting for the store's rules."""

    index: int
    body: EventBody
    event_id: str
    raw: bytes
    sig: bytes
    digest: bytes
    event_type: EventType | None = None
    data: Any = None
    rejection: EventRejected | None = None


@dataclass(slots=True)
class _Batch:
    """One request's events waiting for its store's writer (group commit).

    The writer is whichever request takes the store's lock first: it takes every batch
    waiting for that store, decides them in one loop, commits them in one transaction and
    fills in each batch's answers; the others find their batch done when they get the lock.
    """

    terminal_id: str
    public_key: bytes
    candidates: list[_Candidate]
    results: list[IngestResult | None]
    done: bool = False
    error: BaseException | None = None
    head: bytes = b""


@dataclass(slots=True)
class _Accepted:
    """An accepted entry of the group being written, with its chain hash."""

    candidate: _Candidate
    terminal_id: str
    meta: EntryMeta
    postings: list[Posting]
    hash: bytes


class _ReactionRefused(Exception):
    """An accepted event's follow-up server event was refused: the event must be refused too."""

    def __init__(self, candidate: _Candidate, rejected: EventRejected) -> None:
        super().__init__(str(rejected))
        self.candidate = candidate
        self.rejected = rejected


def segment_id(store_id: str, position: int) -> UUID:
    return _segment_id(store_id, (position - 1) // SEGMENT_EVENTS_MAX)


@lru_cache(maxsize=4096)
def _segment_id(store_id: str, segment: int) -> UUID:
    return uuid5(LEDGER_NAMESPACE, f"{store_id}/{segment}")


def segment_version(position: int) -> int:
    return (position - 1) % SEGMENT_EVENTS_MAX + 1


def chain_hash(head: bytes, body: bytes, sig: bytes) -> bytes:
    return hashlib.sha256(head + body + sig).digest()


class Ledger(Application[UUID]):
    """Load, decide, save: every command runs under the store's lock."""

    name = "pos_ledger"
    # The stored event state is JSON text either way; snapshots are not needed
    # because no stream is ever reconstituted (segments are bounded and read by range).
    is_snapshotting_enabled = False

    def __init__(self, database: str, server_seed: bytes) -> None:
        if len(server_seed) != 32:
            raise InvalidInput("the server key seed must be 32 bytes")
        super().__init__(env=persistence_env(database))
        self.database = database
        self.server_seed = server_seed
        self.server_public_key = _core.ed25519_public_key(server_seed)
        self._states: dict[str, StoreState] = {}
        #: Called as listener(store_id, position, head) after each commit that appended entries
        #: (live fan-out, wake-ups). A listener's failure never fails the write: the log is the truth.
        self.listeners: list[Callable[[str, int, bytes], None]] = []
        #: Re-entrant: a command holding its store's lock may read the store again.
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        #: Batches verified and waiting for their store's writer (guarded by `_locks_guard`).
        self._waiting: dict[str, list[_Batch]] = {}

    @property
    def index(self) -> LedgerIndex:
        return self.recorder  # type: ignore[return-value]

    # ---- store set-up (server-originated, server-signed events) ----

    def open_store(self, store_id: str, name: str, currency: str, timezone: str) -> StoreState:
        data = {
            "store_id": store_id,
            "name": name,
            "currency": currency,
            "timezone": timezone,
            "server_public_key": base64.b64encode(self.server_public_key).decode(),
        }
        with self._lock(store_id):
            state = self._state(store_id)
            if state.opened:
                raise AlreadyExists(f"store {store_id!r} already exists")
            self._append_server_locked(store_id, [("store.opened", data)])
            return self._state(store_id)

    def register_terminal(self, store_id: str, terminal_id: str, public_key: bytes, label: str) -> None:
        if _core.ed25519_public_key_is_weak(public_key):
            raise WeakPublicKey("public_key must be a valid 32-byte Ed25519 key of large order")
        if terminal_id == SERVER_TERMINAL_ID:
            raise InvalidInput(f"terminal id {SERVER_TERMINAL_ID!r} is reserved for the server")
        data = {
            "terminal_id": terminal_id,
            "public_key": base64.b64encode(public_key).decode(),
            "label": label,
        }
        with self._lock(store_id):
            state = self.store(store_id)
            if terminal_id in state.terminals:
                raise AlreadyExists(f"terminal {terminal_id!r} is already registered")
            self._append_server_locked(store_id, [("terminal.registered", data)])

    def revoke_terminal(self, store_id: str, terminal_id: str) -> None:
        with self._lock(store_id):
            state = self.store(store_id)
            terminal = state.terminals.get(terminal_id)
            if terminal is None or terminal.revoked:
                raise TerminalNotFound(f"no active terminal {terminal_id!r} in store {store_id!r}")
            self._append_server_locked(store_id, [("terminal.revoked", {"terminal_id": terminal_id})])

    def append_server_events(
        self, store_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[IngestResult]:
        """Append events the server decides itself (signed with the server key)."""
        with self._lock(store_id):
            self.store(store_id)
            return self._append_server_locked(store_id, events)

    # ---- terminal ingest ----

    def ingest(
        self, store_id: str, terminal_id: str, events: Sequence[SignedEvent]
    ) -> tuple[list[IngestResult], bytes]:
        """Verify, decide and append a terminal's batch; one result per event, in order."""
        answer = self.ingest_group(store_id, [(terminal_id, events)])[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def ingest_group(
        self, store_id: str, requests: Sequence[tuple[str, Sequence[SignedEvent]]]
    ) -> list[tuple[list[IngestResult], bytes] | PosLedgerError]:
        """Several terminals' batches for one store at once (an HTTP server's group commit).

        Every signature of every batch is verified in one Rust call, then the batches join the
        store's group commit. One answer per request, in order: its results and the chain head
        after its commit, or the error that refused the whole request (unknown terminal, too
        large); an error of the store itself (the database) is raised.
        """
        answers: list[tuple[list[IngestResult], bytes] | PosLedgerError] = []
        keys: list[bytes | None] = []
        for terminal_id, events in requests:
            try:
                keys.append(self._terminal_key(store_id, terminal_id, events))
            except (BatchTooLarge, TerminalNotFound, StoreNotFound) as error:
                keys.append(None)
                answers.append(error)
                continue
            answers.append(([], b""))
        # The keys are read without waiting for a batch in flight, so these signatures are
        # verified (both cores, GIL released) while the previous group commits; each key is
        # checked against the committed state under the lock before anything is decided.
        signed = [(key, event) for key, (_, events) in zip(keys, requests, strict=True)
                  if key is not None for event in events]
        valid = iter(_core.ed25519_verify_batch(
            [key for key, _ in signed], [e.body for _, e in signed], [e.sig for _, e in signed]
        ))
        batches: list[_Batch | None] = []
        for key, (terminal_id, events) in zip(keys, requests, strict=True):
            if key is None:
                batches.append(None)
                continue
            results: list[IngestResult | None] = [None] * len(events)
            candidates = self._prepare(terminal_id, events, [next(valid) for _ in events], results)
            batches.append(_Batch(terminal_id, key, candidates, results))
        waiting = [batch for batch in batches if batch is not None]
        with self._locks_guard:
            self._waiting.setdefault(store_id, []).extend(waiting)
        with self._lock(store_id):
            # Another writer may have committed ours already; a group holds at most
            # GROUP_EVENTS_MAX events, so commit until all of ours are in.
            while not all(batch.done for batch in waiting):
                if not self._commit_waiting(store_id):
                    raise AssertionError("a batch waiting for its commit left the queue unanswered")
        for index, batch in enumerate(batches):
            if batch is None:
                continue
            if isinstance(batch.error, PosLedgerError):
                answers[index] = batch.error
            elif batch.error is not None:
                raise batch.error
            else:
                answers[index] = ([r for r in batch.results if r is not None], batch.head)
        return answers

    def _terminal_key(self, store_id: str, terminal_id: str, events: Sequence[SignedEvent]) -> bytes:
        if len(events) > BATCH_EVENTS_MAX:
            raise BatchTooLarge(f"at most {BATCH_EVENTS_MAX} events per request, got {len(events)}")
        cached = self._states.get(store_id)
        terminal = cached.terminals.get(terminal_id) if cached is not None else None
        if terminal is None:
            terminal = self.store(store_id).terminals.get(terminal_id)
        if terminal is None:
            raise TerminalNotFound(f"no terminal {terminal_id!r} in store {store_id!r}")
        return terminal.public_key

    def _commit_waiting(self, store_id: str) -> int:
        """Group commit, under the store's lock: every waiting batch (up to a limit) at once.

        Returns how many batches it answered (each is done, with its results or its error)."""
        with self._locks_guard:
            waiting = self._waiting.get(store_id, [])
            group: list[_Batch] = []
            events = 0
            while waiting and (not group or events + len(waiting[0].candidates) <= GROUP_EVENTS_MAX):
                group.append(waiting.pop(0))
                events += len(group[-1].candidates)
        try:
            state = self._state(store_id)
            live = []
            for batch in group:
                # The key was read before the lock: check it against the committed state.
                committed = state.terminals.get(batch.terminal_id)
                if committed is None or committed.public_key != batch.public_key:
                    batch.error = TerminalNotFound(f"no terminal {batch.terminal_id!r} in store {store_id!r}")
                else:
                    live.append(batch)
            self._append_with_retries(store_id, live)
            head = self._state(store_id).head
            for batch in live:
                batch.head = head
        except BaseException as error:
            for batch in group:
                if batch.error is None:
                    batch.error = error
        finally:
            for batch in group:
                batch.done = True
        return len(group)

    def _prepare(
        self,
        terminal_id: str,
        events: Sequence[SignedEvent],
        valid: Sequence[bool],
        results: list[IngestResult | None],
    ) -> list[_Candidate]:
        """Stateless checks outside the lock, the signatures already verified: schemas."""
        candidates = []
        for index, (event, ok) in enumerate(zip(events, valid, strict=True)):
            try:
                body = decode_body(event.body)
            except EventRejected as rejected:
                results[index] = IngestResult(None, "rejected", rejected.reason)
                continue
            if not ok:
                results[index] = IngestResult(str(body.id), "rejected", "bad_signature")
                continue
            candidate = _Candidate(index, body, str(body.id), event.body, event.sig,
                                   hashlib.sha256(event.body).digest())
            try:
                candidate.event_type, candidate.data = decode_data(body, terminal_id)
            except EventRejected as rejected:
                candidate.rejection = rejected
            candidates.append(candidate)
        return candidates

    def _append_with_retries(self, store_id: str, batches: list[_Batch]) -> None:
        attempts = 0
        while attempts < APPEND_ATTEMPTS_MAX:
            try:
                self._decide_and_save(store_id, batches)
                return
            except IntegrityError:
                # Another process took the tip (or the same id) first: reload and decide again.
                self._states.pop(store_id, None)
                attempts += 1
            except _ReactionRefused as refused:
                # The state took part of the batch: reload it and decide again without that event
                # (at most once per event, so this ends).
                self._states.pop(store_id, None)
                refused.candidate.rejection = refused.rejected
            except BaseException:
                self._states.pop(store_id, None)
                raise
        raise ConcurrentWriteRetriesExhausted(
            f"store {store_id!r} is being written by others too fast; retry the same request"
        )

    def _decide_and_save(self, store_id: str, batches: list[_Batch], all_or_nothing: bool = False) -> None:
        """Decide every batch in order against the store's state, then write them in one transaction."""
        state = self._state(store_id)
        indexed = self.index.select_indexed(
            store_id, [c.event_id for batch in batches for c in batch.candidates]
        )
        accepted: list[_Accepted] = []
        deltas: dict[tuple[str, str], list[int]] = {}
        for batch in batches:
            terminal_id, results = batch.terminal_id, batch.results
            terminal = state.terminals.get(terminal_id)
            revoked = terminal.revoked if terminal is not None else False
            for candidate in batch.candidates:
                event_id = candidate.event_id
                earlier = indexed.get(event_id)
                if earlier is not None:
                    same = earlier.body_sha256 == candidate.digest and earlier.terminal_id == terminal_id
                    results[candidate.index] = (
                        IngestResult(event_id, "duplicate", None, earlier.position)
                        if same
                        else IngestResult(event_id, "rejected", "id_reused")
                    )
                    continue
                try:
                    postings = self._decide(state, terminal_id, candidate, revoked)
                except EventRejected as rejected:
                    candidate.rejection = rejected
                    results[candidate.index] = IngestResult(event_id, "rejected", rejected.reason)
                    continue
                position = self._accept(state, terminal_id, candidate, postings, accepted, deltas)
                indexed[event_id] = IndexedEntry(position, terminal_id, candidate.digest)
                results[candidate.index] = IngestResult(event_id, "accepted", None, position)
        if all_or_nothing and any(
            r is not None and r.status != "accepted" for batch in batches for r in batch.results
        ):
            # A server command is one decision: write none of it (the state took the others: drop it).
            self._states.pop(store_id, None)
            return
        if accepted:
            appended, rows = self._entries(state, accepted)
            balance_deltas = [
                BalanceDelta(store_id, account, currency_code, debit, credit)
                for (account, currency_code), (debit, credit) in deltas.items()
            ]
            # One transaction: the stored events, their index rows and the balance deltas.
            self.recorder.insert_events(appended, ledger_rows=rows, balance_deltas=balance_deltas)
            self._announce(state)

    def _accept(
        self,
        state: StoreState,
        terminal_id: str,
        candidate: _Candidate,
        postings: list[Posting],
        accepted: list[_Accepted],
        deltas: dict[tuple[str, str], list[int]],
    ) -> int:
        """Apply an accepted event to the state, then the server events its type reacts with."""
        assert candidate.event_type is not None
        body = candidate.body
        meta = EntryMeta(state.position + 1, terminal_id, body.id, body.seq, body.at)
        # The head moves with every entry: a rule may pin it mid-group (a checkpoint after a Z), and
        # one SHA-256 per entry costs far less than the rest of deciding it.
        entry_hash = chain_hash(state.head, candidate.raw, candidate.sig)
        state.apply(candidate.event_type, candidate.data, meta, entry_hash)
        account_totals(state).add(postings)
        accepted.append(_Accepted(candidate, terminal_id, meta, postings, entry_hash))
        for account, currency_code, amount in postings:
            sums = deltas.setdefault((account, currency_code), [0, 0])
            sums[0 if amount > 0 else 1] += abs(amount)
        for event_type, data in candidate.event_type.react(candidate.data, state, meta):
            follow = self._server_candidate(state, event_type, data)
            try:
                follow_postings = self._decide(state, SERVER_TERMINAL_ID, follow, revoked=False)
            except EventRejected as rejected:
                # The event cannot have its consequences (a member's records are full, say):
                # refuse the event itself, with the reason, rather than write half of it.
                raise _ReactionRefused(candidate, rejected) from None
            self._accept(state, SERVER_TERMINAL_ID, follow, follow_postings, accepted, deltas)
        return meta.position

    def _server_candidate(
        self, state: StoreState, event_type: str, data: dict[str, Any], offset: int = 0
    ) -> _Candidate:
        """A server event built from its typed parts and signed once (never verified or re-parsed)."""
        body, signed = self._sign(state, offset, event_type, data)
        candidate = _Candidate(-1, body, str(body.id), signed.body, signed.sig,
                               hashlib.sha256(signed.body).digest())
        try:
            candidate.event_type, candidate.data = decode_data(body, SERVER_TERMINAL_ID)
        except EventRejected as rejected:
            candidate.rejection = rejected
        return candidate

    def _announce(self, state: StoreState) -> None:
        for listener in self.listeners:
            try:
                listener(state.store_id, state.position, state.head)
            except Exception:  # a lost wake-up is caught up from the log
                logging.getLogger(__name__).exception("listener %r failed", listener)

    def _decide(
        self, state: StoreState, terminal_id: str, candidate: _Candidate, revoked: bool
    ) -> list[Posting]:
        if revoked:
            raise EventRejected("terminal_revoked", f"terminal {terminal_id!r} was revoked")
        if candidate.rejection is not None:
            raise candidate.rejection
        last_seq = state.last_seq.get(terminal_id, -1)
        if candidate.body.seq <= last_seq:
            raise EventRejected("seq_not_increasing", f"seq {candidate.body.seq} <= {last_seq}")
        assert candidate.event_type is not None
        postings = candidate.event_type.decide(candidate.data, state, terminal_id)
        check_balanced(postings)
        account_totals(state).check(postings)
        return postings

    def _entries(
        self, state: StoreState, accepted: list[_Accepted]
    ) -> tuple[list[StoredEvent], list[IndexRow]]:
        """The stored events and index rows of a decided group."""
        timestamp = {"_type_": "datetime_iso", "_data_": datetime.now(UTC).isoformat()}
        store_id = state.store_id
        appended: list[StoredEvent] = []
        rows: list[IndexRow] = []
        for entry in accepted:
            candidate, meta, entry_hash = entry.candidate, entry.meta, entry.hash
            position = meta.position
            state_json = _STATE_ENCODER.encode(_EntryState(
                timestamp=timestamp,
                store_id=store_id,
                position=position,
                terminal_id=entry.terminal_id,
                event_id=candidate.event_id,
                seq=meta.seq,
                type=candidate.body.type,
                body=candidate.raw.decode(),
                sig=candidate.sig.hex(),
                hash=entry_hash.hex(),
                postings=encode_postings(entry.postings),
            ))
            appended.append(StoredEvent(
                originator_id=segment_id(store_id, position),
                originator_version=segment_version(position),
                topic=_ENTRY_TOPIC,
                state=state_json,
            ))
            rows.append(IndexRow(store_id, position, candidate.event_id, entry.terminal_id,
                                 meta.seq, candidate.body.type, candidate.digest))
        return appended, rows

    def _append_server_locked(
        self, store_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[IngestResult]:
        for _ in range(APPEND_ATTEMPTS_MAX):
            state = self._state(store_id)
            results: list[IngestResult | None] = [None] * len(events)
            candidates = []
            for index, (event_type, data) in enumerate(events):
                candidate = self._server_candidate(state, event_type, data, offset=index)
                candidate.index = index
                candidates.append(candidate)
            batch = _Batch(SERVER_TERMINAL_ID, self.server_public_key, candidates, results)
            try:
                self._decide_and_save(store_id, [batch], all_or_nothing=True)
            except IntegrityError:
                self._states.pop(store_id, None)
                continue
            except _ReactionRefused as refused:
                self._states.pop(store_id, None)
                raise EventRefused(refused.rejected.reason, refused.rejected.detail) from None
            except BaseException:
                self._states.pop(store_id, None)
                raise
            if not any(r is not None and r.reason == "seq_not_increasing" for r in results):
                break
            # Another process appended server events between signing and deciding: sign again.
        else:
            raise ConcurrentWriteRetriesExhausted(f"store {store_id!r} is contended; retry")
        final = [r for r in results if r is not None]
        for candidate, result in zip(candidates, final, strict=True):
            if result.status == "rejected":
                detail = candidate.rejection.detail if candidate.rejection else ""
                raise EventRefused(result.reason or "rejected", detail)
        return final

    def _sign(
        self, state: StoreState, offset: int, event_type: str, data: dict[str, Any]
    ) -> tuple[EventBody, SignedEvent]:
        """The server event's body as typed value and as the exact bytes signed, signed once."""
        event_id = uuid4()
        seq = state.next_seq(SERVER_TERMINAL_ID) + offset
        at = datetime.now(UTC)
        data_json = msgspec.Raw(_ENCODER.encode(data))
        raw = _ENCODER.encode(
            {"id": str(event_id), "seq": seq, "type": event_type, "at": at.isoformat(), "data": data_json}
        )
        body = EventBody(id=event_id, seq=seq, type=event_type, at=at, data=data_json)
        return body, SignedEvent(raw, _core.ed25519_sign(self.server_seed, raw))

    # ---- state ----

    def _lock(self, store_id: str) -> threading.RLock:
        with self._locks_guard:
            lock = self._locks.get(store_id)
            if lock is None:
                lock = self._locks[store_id] = threading.RLock()
            return lock

    def store(self, store_id: str) -> StoreState:
        """The store's committed state; StoreNotFound when it was never opened.

        A command applies its events to the cached state before its transaction
        commits (and drops the state if the commit fails), so reading takes the
        store's lock: a reader never sees an event that is not yet in the log.
        """
        with self._lock(store_id):
            state = self._state(store_id)
        if not state.opened:
            raise StoreNotFound(f"no store {store_id!r}")
        return state

    def _state(self, store_id: str) -> StoreState:
        """The cached state, caught up with entries other processes appended since."""
        state = self._states.get(store_id)
        if state is None:
            state = self._states[store_id] = StoreState(store_id)
        try:
            self._catch_up(state)
        except BaseException:
            self._states.pop(store_id, None)
            raise
        return state

    def _catch_up(self, state: StoreState) -> None:
        """Fold the entries after the state's position (all of them for a new state)."""
        for entry in self.iter_entries(state.store_id, after=state.position):
            body = decode_body(entry.body.encode())
            event_type, data = decode_data(body, entry.terminal_id)
            meta = EntryMeta(entry.position, entry.terminal_id, body.id, body.seq, body.at)
            state.apply(event_type, data, meta, entry.hash)
            account_totals(state).add(postings_of(entry))

    def invalidate(self, store_id: str) -> None:
        """Forget the cached state; the next command reloads it from the log."""
        with self._lock(store_id):
            self._states.pop(store_id, None)

    # ---- reading ----

    def read_entries(self, store_id: str, after: int, limit: int) -> list[StoredEntry]:
        """Entries with position > after, in order, at most `limit` of them."""
        if after < 0 or limit < 1:
            raise InvalidInput("after must be >= 0 and limit >= 1")
        limit = min(limit, READ_EVENTS_MAX)
        entries: list[StoredEntry] = []
        position = after + 1
        while len(entries) < limit:
            version = segment_version(position)
            last_version = min(SEGMENT_EVENTS_MAX, version + limit - len(entries) - 1)
            found = 0
            for event in self.events.get(
                segment_id(store_id, position), gt=version - 1, lte=last_version
            ):
                assert isinstance(event, LedgerEntryRecorded)
                entries.append(
                    StoredEntry(event.position, event.terminal_id, event.body,
                                bytes.fromhex(event.sig), bytes.fromhex(event.hash), event.postings)
                )
                found += 1
            if found < last_version - version + 1:
                break
            position += found
        return entries

    def iter_entries(self, store_id: str, after: int = 0) -> Iterator[StoredEntry]:
        while True:
            page = self.read_entries(store_id, after, READ_EVENTS_MAX)
            yield from page
            if len(page) < READ_EVENTS_MAX:
                return
            after = page[-1].position

    def chain(self, store_id: str) -> tuple[bytes, int]:
        state = self.store(store_id)
        return state.head, state.position

    def balances(self, store_id: str) -> list[tuple[str, str, int, int]]:
        """(account, currency, debit_minor, credit_minor) for every account that moved."""
        self.store(store_id)
        return self.index.select_balances(store_id)

    def store_ids(self) -> list[str]:
        return self.index.select_store_ids()


def postings_of(entry: StoredEntry) -> list[Posting]:
    return decode_postings(entry.postings)


__all__ = [
    "BATCH_BYTES_MAX",
    "BATCH_EVENTS_MAX",
    "IngestResult",
    "Ledger",
    "LedgerEntryRecorded",
    "SignedEvent",
    "StoredEntry",
    "catalog",
    "chain_hash",
    "postings_of",
]
