"""Who was given access to the store's back office (the audit trail; the accounts live in a table).

A staff account's password hash and session rows are secrets and personal data,
so they stay out of the log (`pos_ledger.staff_table`); the log records only that
`username` was given `role` (and when it was taken away).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from pos_ledger.events import EntryMeta, EventRejected, EventType, Posting, register
from pos_ledger.state import StoreState

#: The roles of api/auth.py ROLE_CAPABILITIES (the domain does not import the API).
Role = Literal["owner", "manager", "viewer", "auditor"]
ROLES: Final = ("owner", "manager", "viewer", "auditor")
USERNAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_.@-]{0,63}$"
Username = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=USERNAME_PATTERN)]
STAFF_MAX: Final = 1_000


class StaffAdded(msgspec.Struct, frozen=True):
    username: Username
    role: Role


class StaffRemoved(msgspec.Struct, frozen=True):
    username: Username


def staff_of(state: StoreState) -> dict[str, str]:
    """username -> role, as the log says (the table is the authority for logging in)."""
    return state.feature("staff", dict[str, str])


def _decide_added(data: StaffAdded, state: StoreState, terminal_id: str) -> list[Posting]:
    staff = staff_of(state)
    if data.username not in staff and len(staff) >= STAFF_MAX:
        raise EventRejected("staff_full", f"a store has at most {STAFF_MAX} staff accounts")
    return []


def _evolve_added(data: StaffAdded, state: StoreState, meta: EntryMeta) -> None:
    staff_of(state)[data.username] = data.role


def _decide_removed(data: StaffRemoved, state: StoreState, terminal_id: str) -> list[Posting]:
    if data.username not in staff_of(state):
        raise EventRejected("staff_unknown", f"no staff member {data.username!r}")
    return []


def _evolve_removed(data: StaffRemoved, state: StoreState, meta: EntryMeta) -> None:
    staff_of(state).pop(data.username, None)


STAFF_ADDED = register(EventType("staff.added", StaffAdded, _decide_added, _evolve_added, origin="server"))
STAFF_REMOVED = register(EventType("staff.removed", StaffRemoved, _decide_removed, _evolve_removed, origin="server"))
