"""Given / when / then for the domain rules, with no database and no HTTP.

A store's state is built from events through each event type's own `decide` and
`evolve` (and its reactions, as ingest applies them); the command under test is
then decided against that state. So a test pins the rule where it lives, in
`pos_ledger.catalog`, not what a route happens to answer.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import msgspec
from hypothesis import settings

from pos_ledger import _core, catalog
from pos_ledger.events import (
    SERVER_TERMINAL_ID,
    EntryMeta,
    EventBody,
    EventRejected,
    EventType,
    Posting,
    check_balanced,
    decode_data,
)
from pos_ledger.state import StoreState

STORE = "s1"
SERVER = SERVER_TERMINAL_ID
AT = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SERVER_PUBLIC_KEY = _core.ed25519_public_key(bytes(32))
assert catalog.EVENT_TYPES  # every event type registers on import

if "MUTANT_UNDER_TEST" in os.environ:
    # Under mutmut every mutant reruns the properties: fewer examples each keeps `make mutation` in
    # its time budget (the worked examples pin the edges; the full count runs in the test suite).
    settings.register_profile("mutation", max_examples=25, deadline=None)
    settings.load_profile("mutation")


def terminal_key(terminal_id: str) -> bytes:
    """A fixed, valid Ed25519 public key per terminal id."""
    return _core.ed25519_public_key(terminal_id.encode().ljust(32, b"\0")[:32])


class Store:
    """One store's state, fed event by event."""

    def __init__(self, currency: str = "CNY") -> None:
        self.state = StoreState(STORE)
        self.given("store.opened", {"store_id": STORE, "name": "Rules Shop", "currency": currency,
                                    "timezone": "UTC",
                                    "server_public_key": base64.b64encode(SERVER_PUBLIC_KEY).decode()})

    def _decode(self, event_type: str, data: dict[str, Any], terminal: str,
                at: datetime) -> tuple[EventType, Any]:
        body = EventBody(uuid4(), self.state.next_seq(terminal), event_type, at,
                         msgspec.Raw(msgspec.json.encode(data)))
        return decode_data(body, terminal)

    def decide(self, event_type: str, data: dict[str, Any], terminal: str = SERVER,
               at: datetime = AT) -> list[Posting]:
        """When: the postings the rules give for this event now (nothing is applied)."""
        kind, decoded = self._decode(event_type, data, terminal, at)
        postings = kind.decide(decoded, self.state, terminal)
        check_balanced(postings)
        return postings

    def refused(self, event_type: str, data: dict[str, Any], terminal: str = SERVER,
                at: datetime = AT) -> str:
        """When: the stable reason the rules refuse this event with (AssertionError if accepted)."""
        try:
            self.decide(event_type, data, terminal, at)
        except EventRejected as rejected:
            return rejected.reason
        raise AssertionError(f"{event_type} {data} was accepted")

    def rejection(self, event_type: str, data: dict[str, Any], terminal: str = SERVER,
                  at: datetime = AT) -> tuple[str, str]:
        """When: (reason, detail) of the refusal; the detail is what the cashier reads."""
        try:
            self.decide(event_type, data, terminal, at)
        except EventRejected as rejected:
            return rejected.reason, rejected.detail
        raise AssertionError(f"{event_type} {data} was accepted")

    def given(self, event_type: str, data: dict[str, Any], terminal: str = SERVER,
              at: datetime = AT) -> list[Posting]:
        """Given: decide, apply and react, as ingest does; returns the event's own postings."""
        kind, decoded = self._decode(event_type, data, terminal, at)
        postings = kind.decide(decoded, self.state, terminal)
        check_balanced(postings)
        meta = EntryMeta(self.state.position + 1, terminal, uuid4(), self.state.next_seq(terminal), at)
        self.state.apply(kind, decoded, meta, bytes(32))
        for follow_type, follow_data in kind.react(decoded, self.state, meta):
            self.given(follow_type, follow_data, SERVER, at)
        return postings

    def terminal(self, terminal_id: str) -> None:
        self.given("terminal.registered", {"terminal_id": terminal_id, "label": terminal_id,
                                           "public_key": base64.b64encode(terminal_key(terminal_id)).decode()})


def net(postings: list[Posting]) -> dict[str, int]:
    """Postings summed per account (one currency), zero sums dropped."""
    sums: dict[str, int] = {}
    for account, _, amount in postings:
        sums[account] = sums.get(account, 0) + amount
    return {account: amount for account, amount in sums.items() if amount}
