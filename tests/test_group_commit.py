"""Group commit: concurrent batches for one store are decided together and written in one
transaction, and still answer exactly as one batch at a time would (SQLite and PostgreSQL).

The first batch's commit is held open (a listener waits) so the others pile up behind the
store's lock; the next writer then takes them all at once."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pos_ledger import _core, ingest_queue
from pos_ledger.errors import ConcurrentWriteRetriesExhausted, TerminalNotFound
from pos_ledger.ingest_queue import IngestQueue
from pos_ledger.ledger import IngestResult, Ledger, SignedEvent
from pos_ledger.simulate import Client, Terminal, TerminalKey
from tests.conftest import ADMIN_TOKEN, SERVER_SEED, LiveServer

TERMINALS = 4
BATCHES = 3
BATCH = 10
#: In each batch this event's totals do not add up: it is rejected, the others must commit.
BAD_OFFSET = 4


def seed_for(index: int) -> bytes:
    return bytes([index + 11]) * 32


def sale(seq: int, total_minor: int = 100) -> bytes:
    return json.dumps({"id": str(uuid.uuid4()), "seq": seq, "type": "sale.completed",
                       "at": "2026-11-23T09:00:00Z",
                       "data": {"order_id": str(uuid.uuid4()), "currency": "CNY",
                                "lines": [{"sku": "A", "name": "A", "qty": 1, "unit_price_minor": 100}],
                                "discount_minor": 0, "total_minor": total_minor,
                                "tenders": [{"method": "cash", "amount_minor": total_minor}]}}).encode()


def batch_for(terminal: int, number: int) -> list[SignedEvent]:
    events = []
    for offset in range(BATCH):
        body = sale(number * BATCH + offset + 1, total_minor=99 if offset == BAD_OFFSET else 100)
        events.append(SignedEvent(body, _core.ed25519_sign(seed_for(terminal), body)))
    return events


def counting_transactions(ledger: Ledger) -> list[int]:
    """Wrap the recorder's insert (it still writes): one item per transaction, its event count."""
    counts: list[int] = []
    insert: Callable[..., Any] = ledger.recorder.insert_events

    def counted(stored_events: Any, **kwargs: Any) -> Any:
        counts.append(len(stored_events))
        return insert(stored_events, **kwargs)

    ledger.recorder.insert_events = counted  # type: ignore[method-assign]
    return counts


def test_concurrent_batches_group_commit_gap_free_in_seq_order(database: str) -> None:
    ledger = Ledger(database, SERVER_SEED)
    try:
        ledger.open_store("s", "S", "CNY", "UTC")
        for index in range(TERMINALS):
            ledger.register_terminal("s", f"t{index}", _core.ed25519_public_key(seed_for(index)), "")
        first_commit_done, release = threading.Event(), threading.Event()

        def hold_first_commit(store_id: str, position: int, head: bytes) -> None:
            if not first_commit_done.is_set():
                first_commit_done.set()
                release.wait(10)

        ledger.listeners.append(hold_first_commit)
        transactions = counting_transactions(ledger)
        batches = {(i, n): batch_for(i, n) for i in range(TERMINALS) for n in range(BATCHES)}
        answers: dict[tuple[int, int], list[IngestResult]] = {}
        failures: list[BaseException] = []

        def post(index: int) -> None:
            try:
                for number in range(BATCHES):
                    results, _ = ledger.ingest("s", f"t{index}", batches[index, number])
                    answers[index, number] = results
            except BaseException as error:  # surfaced in the main thread
                failures.append(error)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(TERMINALS)]
        for thread in threads:
            thread.start()
        assert first_commit_done.wait(30)
        # Let the other terminals' first batches queue behind the held commit.
        deadline = threading.Event()
        while sum(len(q) for q in ledger._waiting.values()) < TERMINALS - 1 and not deadline.wait(0.01):
            pass
        release.set()
        for thread in threads:
            thread.join()
        assert not failures, failures

        # Fewer transactions than batches: waiting batches were committed together.
        assert len(transactions) < TERMINALS * BATCHES
        assert max(transactions) >= 2 * (BATCH - 1)

        # Each batch: the bad event rejected, every other one accepted exactly once.
        positions = []
        for results in answers.values():
            assert len(results) == BATCH
            for offset, result in enumerate(results):
                if offset == BAD_OFFSET:
                    assert (result.status, result.reason, result.position) == ("rejected", "totals_mismatch", None)
                else:
                    assert result.status == "accepted" and result.position is not None
                    positions.append(result.position)
        assert len(positions) == len(set(positions)) == TERMINALS * BATCHES * (BATCH - 1)

        entries = list(ledger.iter_entries("s"))
        assert [e.position for e in entries] == list(range(1, len(entries) + 1))  # gap-free
        sales = [e for e in entries if e.terminal_id != "server"]
        assert sorted(e.position for e in sales) == sorted(positions)
        last_seq: dict[str, int] = {}
        for entry in sales:  # in log order, each terminal's seq only moves forward
            seq = json.loads(entry.body)["seq"]
            assert seq > last_seq.get(entry.terminal_id, 0)
            last_seq[entry.terminal_id] = seq
        assert ledger.chain("s") == (entries[-1].hash, len(entries))
        cash = {(a, d - c) for a, _, d, c in ledger.balances("s") if a.startswith("asset:cash")}
        assert cash == {(f"asset:cash:t{i}", BATCHES * (BATCH - 1) * 100) for i in range(TERMINALS)}

        # A retry of a batch with a rejected event: the same positions, nothing written again.
        again, _ = ledger.ingest("s", "t0", batches[0, 0])
        for offset, (first, second) in enumerate(zip(answers[0, 0], again, strict=True)):
            if offset == BAD_OFFSET:
                assert second.status == "rejected"
            else:
                assert (second.status, second.position) == ("duplicate", first.position)
        assert ledger.chain("s")[1] == len(entries)
    finally:
        ledger.close()


def test_retried_batch_with_rejected_event_commits_the_others_once(database: str) -> None:
    ledger = Ledger(database, SERVER_SEED)
    try:
        ledger.open_store("s", "S", "CNY", "UTC")
        ledger.register_terminal("s", "t0", _core.ed25519_public_key(seed_for(0)), "")
        batch = batch_for(0, 0)
        barrier = threading.Barrier(3)
        answers: list[list[IngestResult]] = []

        def post() -> None:
            barrier.wait()
            answers.append(ledger.ingest("s", "t0", batch)[0])

        threads = [threading.Thread(target=post) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(answers) == 3
        for results in answers:
            assert results[BAD_OFFSET].status == "rejected"
            assert results[BAD_OFFSET].reason in {"totals_mismatch", "seq_not_increasing"}
        # The same batch three times at once (a retry racing the original): one copy in the log,
        # one answer "accepted" per event and "duplicate" with the same position otherwise.
        for offset in (o for o in range(BATCH) if o != BAD_OFFSET):
            statuses = sorted(r[offset].status for r in answers)
            assert statuses == ["accepted", "duplicate", "duplicate"]
            assert len({r[offset].position for r in answers}) == 1
        sales = [e for e in ledger.iter_entries("s") if e.terminal_id != "server"]
        assert len(sales) == BATCH - 1
    finally:
        ledger.close()


def test_ingest_group_answers_each_request_and_an_unknown_terminal_fails_only_its_own(database: str) -> None:
    ledger = Ledger(database, SERVER_SEED)
    try:
        ledger.open_store("s", "S", "CNY", "UTC")
        for index in range(2):
            ledger.register_terminal("s", f"t{index}", _core.ed25519_public_key(seed_for(index)), "")
        first, second = batch_for(0, 0), batch_for(1, 0)
        tampered = [SignedEvent(e.body, bytes(64)) if i == 0 else e for i, e in enumerate(second)]
        answers = ledger.ingest_group("s", [("t0", first), ("nobody", first), ("t1", tampered)])
        assert isinstance(answers[1], TerminalNotFound)
        ok_first, ok_second = answers[0], answers[2]
        assert not isinstance(ok_first, BaseException) and not isinstance(ok_second, BaseException)
        assert [r.status for r in ok_first[0]].count("accepted") == BATCH - 1
        assert ok_second[0][0].reason == "bad_signature"  # one Rust call verified both batches
        assert [r.status for r in ok_second[0]].count("accepted") == BATCH - 2
        # Both batches were committed together: one head, the chain's.
        assert ok_first[1] == ok_second[1] == ledger.chain("s")[0]
        assert ledger.chain("s")[1] == 3 + (BATCH - 1) + (BATCH - 2)
    finally:
        ledger.close()


def test_ingest_queue_commits_waiting_requests_together(database: str) -> None:
    ledger = Ledger(database, SERVER_SEED)
    calls: list[int] = []
    group = ledger.ingest_group

    def counted(store_id: str, requests: Any) -> Any:
        calls.append(len(requests))
        return group(store_id, requests)

    ledger.ingest_group = counted  # type: ignore[method-assign]
    try:
        ledger.open_store("s", "S", "CNY", "UTC")
        for index in range(TERMINALS):
            ledger.register_terminal("s", f"t{index}", _core.ed25519_public_key(seed_for(index)), "")
        singles = {index: [[event] for event in batch_for(index, 0)] for index in range(TERMINALS)}
        queue = IngestQueue(ledger)

        async def till(index: int) -> list[IngestResult]:
            answers = []
            for request in singles[index]:
                results, _ = await queue.ingest("s", f"t{index}", request)
                answers += results
            return answers

        async def all_tills() -> list[list[IngestResult]]:
            return await asyncio.gather(*(till(i) for i in range(TERMINALS)))

        try:
            answers = asyncio.run(all_tills())
        finally:
            queue.close()
        for results in answers:
            assert [r.status for r in results] == [
                "rejected" if offset == BAD_OFFSET else "accepted" for offset in range(BATCH)
            ]
        assert len(calls) < TERMINALS * BATCH and max(calls) > 1
        entries = list(ledger.iter_entries("s"))
        assert [e.position for e in entries] == list(range(1, len(entries) + 1))
        assert len(entries) == 1 + TERMINALS + TERMINALS * (BATCH - 1)
    finally:
        ledger.close()


def test_concurrent_single_event_requests_over_http(live_server: LiveServer) -> None:
    client = Client(live_server.url, ADMIN_TOKEN)
    client.open_store("s", "S", "CNY", "UTC")
    terminals = [Terminal(TerminalKey.generate(f"t{i}"), seq=0) for i in range(8)]
    for terminal in terminals:
        client.register_terminal("s", terminal.key, "")
    client.close()
    sale_data = {"order_id": str(uuid.uuid4()), "currency": "CNY",
                 "lines": [{"sku": "A", "name": "A", "qty": 1, "unit_price_minor": 100}],
                 "discount_minor": 0, "total_minor": 100, "tenders": [{"method": "card", "amount_minor": 100}]}
    positions: list[int] = []
    failures: list[BaseException] = []

    def till(terminal: Terminal) -> None:
        try:
            with httpx.Client(base_url=live_server.url, timeout=30) as http:
                for _ in range(5):
                    event = terminal.sign("sale.completed", dict(sale_data, order_id=str(uuid.uuid4())),
                                          datetime.now(UTC))
                    answer = http.post(f"/v1/stores/s/terminals/{terminal.key.terminal_id}/events",
                                       json={"events": [event]})
                    assert answer.status_code == 200, answer.text
                    (result,) = answer.json()["results"]
                    assert result["status"] == "accepted", result
                    positions.append(result["position"])
        except BaseException as error:  # surfaced in the main thread
            failures.append(error)

    threads = [threading.Thread(target=till, args=(t,)) for t in terminals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    first = 1 + len(terminals) + 1
    assert sorted(positions) == list(range(first, first + 40))
    assert live_server.ledger.chain("s")[1] == first + 39


@st.composite
def requests_and_groups(draw: st.DrawFn) -> tuple[list[tuple[int, list[SignedEvent]]], list[int]]:
    """Requests of two tills (fresh events, retries of earlier ones, bad totals and bad signatures)
    and a split of them into consecutive groups."""
    pool: list[tuple[int, SignedEvent]] = []
    seqs = [0, 0]
    requests: list[tuple[int, list[SignedEvent]]] = []
    for _ in range(draw(st.integers(1, 8))):
        terminal = draw(st.integers(0, 1))
        events: list[SignedEvent] = []
        for _ in range(draw(st.integers(1, 5))):
            kind = draw(st.sampled_from(["fresh", "fresh", "retry", "bad_total", "bad_sig", "old_seq"]))
            earlier = [e for t, e in pool if t == terminal]
            if kind == "retry" and earlier:
                events.append(draw(st.sampled_from(earlier)))
                continue
            seqs[terminal] += 1
            seq = seqs[terminal] - 3 if kind == "old_seq" else seqs[terminal]
            body = sale(max(seq, 1), total_minor=99 if kind == "bad_total" else 100)
            signature = bytes(64) if kind == "bad_sig" else _core.ed25519_sign(seed_for(terminal), body)
            events.append(SignedEvent(body, signature))
            pool.append((terminal, events[-1]))
        requests.append((terminal, events))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(requests)), max_size=len(requests)))))
    return requests, cuts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=requests_and_groups())
def test_any_grouping_answers_and_writes_as_one_request_at_a_time(
    case: tuple[list[tuple[int, list[SignedEvent]]], list[int]], tmp_path: Path
) -> None:
    requests, cuts = case
    base = tmp_path / f"base-{uuid.uuid4().hex}.sqlite3"
    with closing(Ledger(str(base), SERVER_SEED)) as ledger:
        ledger.open_store("s", "S", "CNY", "UTC")
        for index in range(2):
            ledger.register_terminal("s", f"t{index}", _core.ed25519_public_key(seed_for(index)), "")
    alone_path, grouped_path = base.with_suffix(".alone"), base.with_suffix(".grouped")
    shutil.copy(base, alone_path)
    shutil.copy(base, grouped_path)
    with closing(Ledger(str(alone_path), SERVER_SEED)) as alone, \
            closing(Ledger(str(grouped_path), SERVER_SEED)) as grouped:
        expected = [alone.ingest("s", f"t{t}", events)[0] for t, events in requests]
        answers: list[list[IngestResult]] = []
        for start, end in zip([0, *cuts], [*cuts, len(requests)], strict=True):
            if start == end:
                continue
            group = grouped.ingest_group("s", [(f"t{t}", events) for t, events in requests[start:end]])
            for answer in group:
                assert not isinstance(answer, BaseException)
                answers.append(answer[0])
        assert answers == expected
        assert grouped.chain("s") == alone.chain("s")
        assert grouped.balances("s") == alone.balances("s")
        assert [(e.position, e.body, e.hash) for e in grouped.iter_entries("s")] == [
            (e.position, e.body, e.hash) for e in alone.iter_entries("s")
        ]


def test_ingest_queue_refuses_beyond_its_limit_and_commits_the_rest(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_queue, "QUEUE_REQUESTS_MAX", 2)
    ledger.open_store("s", "S", "CNY", "UTC")
    ledger.register_terminal("s", "t0", _core.ed25519_public_key(seed_for(0)), "")
    singles = [[event] for event in batch_for(0, 0)][:4]
    queue = IngestQueue(ledger)

    async def burst() -> list[Any]:
        return await asyncio.gather(*(queue.ingest("s", "t0", s) for s in singles), return_exceptions=True)

    try:
        answers = asyncio.run(burst())
    finally:
        queue.close()
    refused = [a for a in answers if isinstance(a, ConcurrentWriteRetriesExhausted)]
    accepted = [a for a in answers if not isinstance(a, BaseException)]
    assert len(refused) == 2 and len(accepted) == 2
    assert all(results[0].status == "accepted" for results, _ in accepted)
    assert ledger.chain("s")[1] == 2 + 2
