"""The signed event envelope and the registry of event types.

A terminal signs the exact bytes of a body
`{"id": uuid, "seq": int, "type": str, "at": RFC 3339, "data": {...}}`.
Each event type is declared once (`EventType`): its `data` schema, the rule
that decides whether it may be appended and which postings it produces, the
state change it makes, and who may originate it. Ingest, replay and the auditor
all go through this one declaration, so no business rule is written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from uuid import UUID

import msgspec

from pos_ledger import money
from pos_ledger.values import JSON_DEPTH_MAX, json_too_deep
from pos_ledger.values import Identifier as Identifier  # re-exported: the catalog names it from here

if TYPE_CHECKING:
    from pos_ledger.state import StoreState

#: A posting: (account, ISO 4217 currency, amount in minor units); debit > 0, credit < 0.
Posting = tuple[str, str, int]

#: Terminal id under which the server's own (server-signed) events are chained.
SERVER_TERMINAL_ID: Final = "server"

SEQ_MAX: Final = 2**63 - 1
Amount = Annotated[int, msgspec.Meta(ge=0, le=money.AMOUNT_MINOR_MAX)]
PositiveCount = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


class EventRejected(Exception):
    """An event breaks a rule: it is answered `rejected` with a stable `reason`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class EventBody(msgspec.Struct, frozen=True):
    """The signed body, decoded from the exact bytes the terminal signed."""

    id: UUID
    seq: Annotated[int, msgspec.Meta(ge=0, le=SEQ_MAX)]
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    at: datetime
    data: msgspec.Raw


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """Facts about an accepted entry that rules and state changes may read."""

    position: int
    terminal_id: str
    event_id: UUID
    seq: int
    at: datetime


Decide = Callable[[Any, "StoreState", str], list[Posting]]
Evolve = Callable[[Any, "StoreState", EntryMeta], None]
#: Server events that follow an accepted event in the same transaction (a conflict
#: record, a coupon issued after a payment, points earned): (type, data) pairs.
React = Callable[[Any, "StoreState", EntryMeta], list[tuple[str, dict[str, Any]]]]


def no_postings(data: Any, state: StoreState, terminal_id: str) -> list[Posting]:
    return []


def no_change(data: Any, state: StoreState, meta: EntryMeta) -> None:
    return None


def no_reaction(data: Any, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    return []


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    schema: type[msgspec.Struct]
    #: Checks the rules against the store's state and returns the postings; raises EventRejected.
    decide: Decide = no_postings
    #: Changes the store's state; runs on ingest and on every replay, so it only assigns.
    evolve: Evolve = no_change
    origin: Literal["terminal", "server", "any"] = "terminal"
    #: Runs after `evolve` on ingest only (never on replay: its events are in the log).
    react: React = no_reaction


EVENT_TYPES: dict[str, EventType] = {}
_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}
_BODY_DECODER: Final = msgspec.json.Decoder(EventBody)


def register(event_type: EventType) -> EventType:
    if event_type.name in EVENT_TYPES:
        raise ValueError(f"event type {event_type.name!r} registered twice")
    EVENT_TYPES[event_type.name] = event_type
    _DECODERS[event_type.name] = msgspec.json.Decoder(event_type.schema)
    return event_type


def decode_body(body: bytes) -> EventBody:
    """Parse the envelope body; EventRejected('malformed_body') says what is wrong."""
    if json_too_deep(body):
        raise EventRejected("malformed_body", f"JSON nested deeper than {JSON_DEPTH_MAX}")
    try:
        parsed = _BODY_DECODER.decode(body)
    except msgspec.ValidationError as error:
        raise EventRejected("malformed_body", str(error)) from None
    except msgspec.DecodeError as error:
        raise EventRejected("malformed_body", f"not JSON: {error}") from None
    except RecursionError:
        raise EventRejected("malformed_body", "JSON nested too deep") from None
    if parsed.at.tzinfo is None:
        raise EventRejected("malformed_body", "`at` must be RFC 3339 with a UTC offset")
    return parsed


def decode_data(body: EventBody, terminal_id: str) -> tuple[EventType, Any]:
    """Look up the body's type and validate `data` against its schema."""
    event_type = EVENT_TYPES.get(body.type)
    if event_type is None:
        raise EventRejected("unknown_type", f"no event type {body.type!r}")
    from_server = terminal_id == SERVER_TERMINAL_ID
    if (event_type.origin == "server" and not from_server) or (
        event_type.origin == "terminal" and from_server
    ):
        raise EventRejected("type_not_allowed", f"{body.type!r} is a {event_type.origin} event")
    try:
        data = _DECODERS[body.type].decode(body.data)
    except msgspec.ValidationError as error:
        raise EventRejected("invalid_data", str(error)) from None
    except msgspec.DecodeError as error:
        raise EventRejected("invalid_data", str(error)) from None
    except RecursionError:
        raise EventRejected("invalid_data", "JSON nested too deep") from None
    return event_type, data


def encode_postings(postings: list[Posting]) -> str:
    """Postings as stored beside each event: compact JSON the Rust fold reads."""
    return msgspec.json.encode([list(p) for p in postings]).decode()


def decode_postings(text: str) -> list[Posting]:
    return [(str(a), str(c), int(n)) for a, c, n in msgspec.json.decode(text.encode())]


def check_balanced(postings: list[Posting]) -> None:
    """Debits equal credits per currency; a rule that breaks this is a bug, not bad input."""
    sums: dict[str, int] = {}
    for _, currency_code, amount in postings:
        sums[currency_code] = sums.get(currency_code, 0) + amount
    unbalanced = {c: s for c, s in sums.items() if s != 0}
    if unbalanced:
        raise AssertionError(f"postings do not balance: {unbalanced} in {postings}")


def require_currency(currency_code: str, state: StoreState) -> None:
    if currency_code != state.currency:
        raise EventRejected(
            "currency_mismatch",
            f"store {state.store_id!r} keeps its books in {state.currency}, not {currency_code}",
        )
