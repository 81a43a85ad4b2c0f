"""A follow-up the rules refuse refuses the event that caused it: never a 500, never half an event."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pos_ledger import events
from pos_ledger.catalog import sales
from pos_ledger.errors import EventRefused
from pos_ledger.ledger import Ledger, SignedEvent
from pos_ledger.simulate import MenuEntry, Terminal, TerminalKey, random_sale
from tests.conftest import SERVER_SEED

MENU = [MenuEntry("TEA", "Tea", 1_500), MenuEntry("CAKE", "Cake", 2_800)]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(str(tmp_path / "ledger.sqlite3"), SERVER_SEED)
    ledger.open_store("s1", "Shop", "CNY", "Asia/Shanghai")
    yield ledger
    ledger.close()


def refuse_big_sales(sale: Any, state: Any, meta: Any) -> list[tuple[str, dict[str, Any]]]:
    """A reaction whose follow-up the rules refuse (points for a member nobody registered)."""
    if sale.total_minor < 3_000:
        return []
    return [("points.earned", {"member_id": "nobody", "order_ref": str(sale.order_id),
                               "base_minor": sale.total_minor, "points": 1})]


def signed(terminal: Terminal, data: dict[str, Any]) -> SignedEvent:
    import base64

    event = terminal.sign("sale.completed", data, datetime.now(UTC))
    return SignedEvent(event["body"].encode(), base64.b64decode(event["sig"]))


def test_an_event_whose_reaction_is_refused_is_rejected_alone(ledger: Ledger,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sales, "SALE_REACTIONS", [*sales.SALE_REACTIONS, refuse_big_sales])
    key = TerminalKey.generate("t1")
    ledger.register_terminal("s1", "t1", key.public_key, "till")
    terminal = Terminal(key)
    rng = random.Random(7)
    batch = [random_sale(rng, MENU, "CNY") for _ in range(30)]
    results, head = ledger.ingest("s1", "t1", [signed(terminal, data) for data in batch])
    big = [data["total_minor"] >= 3_000 for data in batch]
    assert any(big) and not all(big)
    for result, is_big in zip(results, big, strict=True):
        if is_big:
            assert (result.status, result.reason) == ("rejected", "member_unknown")
        else:
            assert result.status == "accepted"
    accepted = sum(not b for b in big)
    _, length = ledger.chain("s1")
    assert length == 2 + accepted  # store.opened, terminal.registered, the small sales
    # The cached state and a replay from the log agree (nothing of a refused event stayed behind).
    replayed = Ledger(ledger.database, SERVER_SEED)
    assert replayed.chain("s1") == (head, length) == ledger.chain("s1")
    assert replayed.balances("s1") == ledger.balances("s1")
    replayed.close()


def test_a_server_command_whose_reaction_is_refused_is_a_clear_refusal(ledger: Ledger,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    key = TerminalKey.generate("t1")
    ledger.register_terminal("s1", "t1", key.public_key, "till")
    revoked = events.EVENT_TYPES["terminal.revoked"]

    def points_for_nobody(data: Any, state: Any, meta: Any) -> list[tuple[str, dict[str, Any]]]:
        return [("points.earned", {"member_id": "nobody", "order_ref": "o1", "base_minor": 100, "points": 1})]

    monkeypatch.setitem(events.EVENT_TYPES, "terminal.revoked", dataclasses.replace(revoked, react=points_for_nobody))
    before = ledger.chain("s1")
    with pytest.raises(EventRefused) as refused:
        ledger.revoke_terminal("s1", "t1")
    assert refused.value.reason == "member_unknown"
    assert ledger.chain("s1") == before
    assert not ledger.store("s1").terminals["t1"].revoked
