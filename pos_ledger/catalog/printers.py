"""`print.completed` / `print.failed`: a hardware bridge reports each print job, signed with its
terminal's key, so the back office shows every printer's state. They move no money."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from pos_ledger.events import EntryMeta, EventRejected, EventType, Posting, register
from pos_ledger.state import StoreState

FEATURE: Final = "printers"
#: Printers remembered per store (a bridge per printer; a shop has a handful).
PRINTERS_MAX: Final = 1_000
PrinterName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
#: receipt, kitchen, kitchen:CATEGORY, or report:x|z:SHIFT-OR-DAY (an X/Z report printed on request).
Station = Annotated[str, msgspec.Meta(min_length=1, max_length=110,
                                      pattern=r"^(receipt|kitchen(:\S{1,100})?|report:[xz]:\S{1,100})$")]
FailureReason = Literal["printer_offline", "unknown_outcome", "render_failed"]


class PrintCompleted(msgspec.Struct, frozen=True):
    #: The printer URI the bridge drives (`tcp://10.0.0.5:9100`, `usb:04b8:0202`, ...).
    printer: PrinterName
    station: Station
    #: The log position the job printed (a sale, an accepted order, ...) and its copy (1 = original).
    position: Annotated[int, msgspec.Meta(ge=1)]
    copy: Annotated[int, msgspec.Meta(ge=1, le=1_000)] = 1


class PrintFailed(msgspec.Struct, frozen=True):
    printer: PrinterName
    station: Station
    position: Annotated[int, msgspec.Meta(ge=1)]
    reason: FailureReason
    copy: Annotated[int, msgspec.Meta(ge=1, le=1_000)] = 1
    detail: Annotated[str, msgspec.Meta(max_length=500)] = ""


@dataclass(slots=True)
class PrinterStatus:
    terminal_id: str
    printer: str
    #: "ok" after a completed job, the failure reason after a failed one.
    state: str
    station: str
    job_position: int
    copy: int
    detail: str
    at: datetime
    #: The log position of the report itself.
    reported_position: int


@dataclass(slots=True)
class PrintersState:
    printers: dict[tuple[str, str], PrinterStatus] = field(default_factory=dict)


def printers_of(state: StoreState) -> PrintersState:
    return state.feature(FEATURE, PrintersState)


def _record(terminal_id: str, data: PrintCompleted | PrintFailed, state: StoreState, meta: EntryMeta) -> None:
    book = printers_of(state).printers
    key = (terminal_id, data.printer)
    if key not in book and len(book) >= PRINTERS_MAX:
        return  # a flood of made-up printer names cannot grow the state without bound
    state_name, detail = (data.reason, data.detail) if isinstance(data, PrintFailed) else ("ok", "")
    book[key] = PrinterStatus(terminal_id, data.printer, state_name, data.station, data.position, data.copy,
                              detail, meta.at, meta.position)


def _evolve(data: PrintCompleted | PrintFailed, state: StoreState, meta: EntryMeta) -> None:
    _record(meta.terminal_id, data, state, meta)


class ReprintRequested(msgspec.Struct, frozen=True):
    """The back office asks a bridge to print a job again (it prints a "REPRINT n" copy)."""

    terminal_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    position: Annotated[int, msgspec.Meta(ge=1)]
    station: Station | None = None


def _decide_reprint(data: ReprintRequested, state: StoreState, terminal_id: str) -> list[Posting]:
    bridge = state.terminals.get(data.terminal_id)
    if bridge is None or bridge.revoked:
        raise EventRejected("terminal_unknown", f"no active terminal {data.terminal_id!r}")
    if data.position > state.position:
        raise EventRejected("position_unknown", f"the log has {state.position} entries, not {data.position}")
    return []


PRINT_REPRINT_REQUESTED = register(EventType("print.reprint_requested", ReprintRequested, _decide_reprint,
                                             origin="server"))
PRINT_COMPLETED = register(EventType("print.completed", PrintCompleted, evolve=_evolve))
PRINT_FAILED = register(EventType("print.failed", PrintFailed, evolve=_evolve))
