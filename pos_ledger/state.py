"""A store's current state: the fold of its chain, kept in memory beside the log.

Everything here is derived from the store's events (`apply`); the log stays the
truth. After a failed or contended write the cached state is dropped and rebuilt
from the log, so it never drifts from what was committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pos_ledger.events import EntryMeta, EventType

ZERO_HASH = bytes(32)
T = TypeVar("T")


@dataclass(slots=True)
class Terminal:
    terminal_id: str
    public_key: bytes
    label: str
    revoked: bool = False


@dataclass(slots=True)
class StoreState:
    store_id: str
    name: str = ""
    currency: str = ""
    timezone: str = ""
    opened: bool = False
    server_public_key: bytes = b""
    #: Position of the last entry (1-based; 0 = empty log) and the chain head after it.
    position: int = 0
    head: bytes = ZERO_HASH
    terminals: dict[str, Terminal] = field(default_factory=dict)
    #: Highest accepted `seq` per terminal id (the server counts as a terminal).
    last_seq: dict[str, int] = field(default_factory=dict)
    #: State owned by feature modules (payments, members, coupons), keyed by module.
    features: dict[str, Any] = field(default_factory=dict)

    def apply(self, event_type: EventType, data: Any, meta: EntryMeta, entry_hash: bytes) -> None:
        event_type.evolve(data, self, meta)
        self.last_seq[meta.terminal_id] = meta.seq
        self.position = meta.position
        self.head = entry_hash

    def feature(self, name: str, factory: Callable[[], T]) -> T:
        """A feature module's part of the state, created on first use (not on every call)."""
        found = self.features.get(name)
        if found is None:
            found = self.features[name] = factory()
        return found

    def next_seq(self, terminal_id: str) -> int:
        return self.last_seq.get(terminal_id, 0) + 1
