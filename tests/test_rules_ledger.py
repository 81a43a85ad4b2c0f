"""Ingest's key rule (pos_ledger/ledger.py): a batch is verified with the key read from the cached state
without waiting for the store's lock, then, under the lock, that key must still be the terminal's key
in the committed state. A registration that lost a race to another process (its commit failed) left
a key in the cache that the log never had: events signed with it must not be accepted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pos_ledger import _core
from pos_ledger.errors import BatchTooLarge, TerminalNotFound
from pos_ledger.ledger import BATCH_EVENTS_MAX, Ledger, SignedEvent
from pos_ledger.state import Terminal
from tests.conftest import SERVER_SEED

CACHED_SEED = bytes([1]) * 32      # the key of the registration that lost the race
COMMITTED_SEED = bytes([2]) * 32   # the key another process committed for the same terminal id


def sale(seed: bytes, seq: int) -> SignedEvent:
    body = json.dumps({"id": str(uuid.uuid4()), "seq": seq, "type": "sale.completed",
                       "at": "2026-11-23T09:00:00+08:00",
                       "data": {"order_id": str(uuid.uuid4()), "currency": "CNY",
                                "lines": [{"sku": "T", "name": "Tea", "qty": 1, "unit_price_minor": 800}],
                                "discount_minor": 0, "total_minor": 800,
                                "tenders": [{"method": "card", "amount_minor": 800}]}}).encode()
    return SignedEvent(body, _core.ed25519_sign(seed, body))


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[Ledger, Ledger]]:
    database = str(tmp_path / "race.sqlite3")
    here, there = Ledger(database, SERVER_SEED), Ledger(database, SERVER_SEED)
    try:
        yield here, there
    finally:
        here.close()
        there.close()


def lost_race(here: Ledger, there: Ledger) -> None:
    """`here` caches t1 with CACHED_SEED's key (applied before its commit); `there` committed t1 first."""
    here.open_store("s", "S", "CNY", "UTC")
    there.register_terminal("s", "t1", _core.ed25519_public_key(COMMITTED_SEED), "committed")
    cached = here._states["s"]
    cached.terminals["t1"] = Terminal("t1", _core.ed25519_public_key(CACHED_SEED), "lost the race")


def test_a_key_only_the_cache_had_accepts_nothing(two_processes: tuple[Ledger, Ledger]) -> None:
    here, there = two_processes
    lost_race(here, there)
    length = there.chain("s")[1]
    with pytest.raises(TerminalNotFound) as refused:
        here.ingest("s", "t1", [sale(CACHED_SEED, 1)])
    assert str(refused.value) == "no terminal 't1' in store 's'"
    assert there.chain("s")[1] == length  # nothing appended
    assert here.read_entries("s", length, 10) == []


def test_the_committed_key_is_the_terminals_key(two_processes: tuple[Ledger, Ledger]) -> None:
    here, there = two_processes
    lost_race(here, there)
    with pytest.raises(TerminalNotFound):
        here.ingest("s", "t1", [sale(CACHED_SEED, 1)])
    # The cache was caught up from the log under the lock: the committed key verifies from then on.
    results, _ = here.ingest("s", "t1", [sale(COMMITTED_SEED, 1)])
    assert [r.status for r in results] == ["accepted"]
    assert here.store("s").terminals["t1"].public_key == _core.ed25519_public_key(COMMITTED_SEED)
    results, _ = here.ingest("s", "t1", [sale(CACHED_SEED, 2)])
    assert [(r.status, r.reason) for r in results] == [("rejected", "bad_signature")]


def test_an_unknown_terminal_is_not_found(two_processes: tuple[Ledger, Ledger]) -> None:
    here, _ = two_processes
    here.open_store("s", "S", "CNY", "UTC")
    with pytest.raises(TerminalNotFound) as refused:
        here.ingest("s", "t9", [sale(CACHED_SEED, 1)])
    assert str(refused.value) == "no terminal 't9' in store 's'"


def test_a_batch_holds_at_most_a_thousand_events(two_processes: tuple[Ledger, Ledger]) -> None:
    here, _ = two_processes
    assert BATCH_EVENTS_MAX == 1_000  # README: "1,000 events and 1 MiB per request"
    here.open_store("s", "S", "CNY", "UTC")
    here.register_terminal("s", "t1", _core.ed25519_public_key(COMMITTED_SEED), "")
    events = [sale(COMMITTED_SEED, seq) for seq in range(1, BATCH_EVENTS_MAX + 2)]
    length = here.chain("s")[1]
    with pytest.raises(BatchTooLarge) as refused:
        here.ingest("s", "t1", events)
    assert str(refused.value) == "at most 1000 events per request, got 1001"
    assert here.chain("s")[1] == length
    results, head = here.ingest("s", "t1", events[:BATCH_EVENTS_MAX])
    assert [r.status for r in results] == ["accepted"] * BATCH_EVENTS_MAX
    assert [r.position for r in results] == list(range(length + 1, length + BATCH_EVENTS_MAX + 1))
    assert (head, length + BATCH_EVENTS_MAX) == here.chain("s")


def test_a_process_with_nothing_cached_reads_the_terminal_from_the_log(two_processes: tuple[Ledger, Ledger]) -> None:
    here, there = two_processes
    there.open_store("s", "S", "CNY", "UTC")
    there.register_terminal("s", "t1", _core.ed25519_public_key(COMMITTED_SEED), "")
    assert "s" not in here._states
    results, _ = here.ingest("s", "t1", [sale(COMMITTED_SEED, 1)])
    assert [r.status for r in results] == ["accepted"]
    with pytest.raises(TerminalNotFound):
        Ledger(here.database, SERVER_SEED).ingest("s", "t2", [sale(COMMITTED_SEED, 2)])
