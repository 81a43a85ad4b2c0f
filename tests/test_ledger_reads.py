"""Reading a store waits for a command in flight: it never sees an event before it is committed."""

# The fixture is imported (not a plugin) so the ledger set-up is written once.
# ruff: noqa: F811
from __future__ import annotations

import threading
from typing import Any

import pytest

from pos_ledger.ledger import Ledger
from pos_ledger.simulate import MenuEntry, Terminal, TerminalKey, random_sale
from tests.test_ledger_reactions import ledger, signed  # noqa: F401


def test_a_read_never_sees_an_event_before_its_commit(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import random

    key = TerminalKey.generate("t1")
    ledger.register_terminal("s1", "t1", key.public_key, "till")
    _, length = ledger.chain("s1")
    entered, release = threading.Event(), threading.Event()
    insert = ledger.recorder.insert_events

    def slow_insert(*args: Any, **kwargs: Any) -> Any:
        entered.set()  # the batch is decided and applied to the cached state, not yet committed
        release.wait(10)
        return insert(*args, **kwargs)

    monkeypatch.setattr(ledger.recorder, "insert_events", slow_insert)
    sale = random_sale(random.Random(3), [MenuEntry("TEA", "Tea", 1_500)], "CNY")
    writer = threading.Thread(target=ledger.ingest, args=("s1", "t1", [signed(Terminal(key), sale)]))
    writer.start()
    assert entered.wait(10)
    seen: list[int] = []
    reader = threading.Thread(target=lambda: seen.append(ledger.store("s1").position))
    reader.start()
    reader.join(0.5)
    assert seen == []  # still waiting: the sale is not in the log yet
    release.set()
    writer.join(10)
    reader.join(10)
    assert seen == [length + 1]


def test_a_batch_is_verified_while_the_one_before_it_commits(ledger: Ledger,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest waits for the store only to decide and append; its signature check overlaps the commit."""
    import random

    from pos_ledger import _core

    key = TerminalKey.generate("t1")
    ledger.register_terminal("s1", "t1", key.public_key, "till")
    terminal = Terminal(key)
    menu = [MenuEntry("TEA", "Tea", 1_500)]
    first, second = (signed(terminal, random_sale(random.Random(n), menu, "CNY")) for n in (1, 2))
    entered, release, verified = threading.Event(), threading.Event(), threading.Event()
    insert, verify = ledger.recorder.insert_events, _core.ed25519_verify_batch

    def slow_insert(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10)
        return insert(*args, **kwargs)

    def watched_verify(*args: Any, **kwargs: Any) -> Any:
        if entered.is_set():
            verified.set()
        return verify(*args, **kwargs)

    monkeypatch.setattr(ledger.recorder, "insert_events", slow_insert)
    monkeypatch.setattr(_core, "ed25519_verify_batch", watched_verify)
    answers: list[str] = []
    one = threading.Thread(target=lambda: answers.extend(r.status for r in ledger.ingest("s1", "t1", [first])[0]))
    one.start()
    assert entered.wait(10)
    two = threading.Thread(target=lambda: answers.extend(r.status for r in ledger.ingest("s1", "t1", [second])[0]))
    two.start()
    assert verified.wait(5)  # the second batch was verified before the first one committed
    release.set()
    one.join(10)
    two.join(10)
    assert answers == ["accepted", "accepted"]
