"""`checkpoint.recorded`: the server pins the chain in the log at every shift close (Z).

A checkpoint event names a position and the chain head after that position's
entry; it is server-signed and chained like every event. Its rule checks that it
pins the entry right before it, so a replay (the auditor) refuses a log where
the pinned entry was changed, removed or moved, even with the chain recomputed.
The same (store, position, head) is what a detached checkpoint file holds
(`pos_ledger.anchors`), so `GET .../checkpoints` answers signed witnesses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec

from pos_ledger.catalog import shifts
from pos_ledger.events import EntryMeta, EventRejected, EventType, Identifier, Posting, register
from pos_ledger.state import StoreState

TYPE: Final = "checkpoint.recorded"
HeadHex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class CheckpointRecorded(msgspec.Struct, frozen=True):
    #: The entry pinned (the one right before this event) and the chain head after it.
    position: Annotated[int, msgspec.Meta(ge=1)]
    chain_head: HeadHex
    reason: Literal["shift_closed"] = "shift_closed"
    shift_id: Identifier | None = None


def _decide(data: CheckpointRecorded, state: StoreState, terminal_id: str) -> list[Posting]:
    if data.position != state.position or data.chain_head != state.head.hex():
        raise EventRejected("checkpoint_mismatch",
                            f"the log has head {state.head.hex()} at position {state.position}, "
                            f"the checkpoint pins {data.chain_head} at {data.position}")
    return []


@dataclass(frozen=True, slots=True)
class RecordedCheckpoint:
    event_position: int
    position: int
    chain_head: str
    #: The event's `at` (the server's clock when it pinned the chain), RFC 3339.
    at: str
    reason: str
    shift_id: str | None


def checkpoints_of(state: StoreState) -> list[RecordedCheckpoint]:
    return state.feature("checkpoints", list)


def _evolve(data: CheckpointRecorded, state: StoreState, meta: EntryMeta) -> None:
    checkpoints_of(state).append(RecordedCheckpoint(meta.position, data.position, data.chain_head,
                                                    meta.at.isoformat(), data.reason, data.shift_id))


def react_shift_closed(data: Any, state: StoreState, meta: EntryMeta) -> list[tuple[str, dict[str, Any]]]:
    """After a Z (shift.closed) the server pins the chain at that entry."""
    return [(TYPE, {"position": meta.position, "chain_head": state.head.hex(), "reason": "shift_closed",
                    "shift_id": data.shift_id})]


CHECKPOINT_RECORDED = register(EventType(TYPE, CheckpointRecorded, _decide, _evolve, origin="server"))
shifts.SHIFT_CLOSED_REACTIONS.append(react_shift_closed)
