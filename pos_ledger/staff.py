"""Back-office staff: accounts per store, argon2 passwords, sessions and the slow-down after failures.

Decisions, written down once:

* **A username is unique in its store** (lower-cased on the way in). The login
  form asks for the username and password only: the store is found from the
  account. Only when the same username *and* password open accounts in several
  stores is the store asked for (`StoreRequired`). `admin` is reserved: logging
  in as `admin` with the admin token as the password opens an admin session
  (every store).
* **Passwords**: at least `PASSWORD_CHARS_MIN` characters, hashed with argon2id
  (argon2-cffi's defaults: RFC 9106 low-memory profile); never stored, logged or
  echoed. A hash made with older parameters is rehashed at the next login.
* **The log records who was given access** (`staff.added`: username and role,
  no password); the account itself lives in `staff_accounts`.
* **Sessions** are random 256-bit tokens kept server-side as their SHA-256, valid
  `SESSION_TTL_S` and revocable (logout, removing the account). Each session has
  its own CSRF token.
* **Slow-down**: `FAILURES_PER_USERNAME_MAX` failed logins for one username, or
  `FAILURES_PER_ADDRESS_MAX` from one client address, within
  `FAILURE_WINDOW_S`, lock further attempts for that key until the window ends
  (`LoginThrottled`, HTTP 429 with Retry-After). A correct password does not
  open a locked username; a success clears the username's count.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pos_ledger.catalog.staff import ROLES, USERNAME_PATTERN
from pos_ledger.errors import InvalidInput, NotFound, PosLedgerError, Unauthorized

ADMIN_USERNAME: Final = "admin"
PASSWORD_CHARS_MIN: Final = 8
PASSWORD_CHARS_MAX: Final = 1_024
SESSION_TTL_S: Final = 12 * 3600
FAILURE_WINDOW_S: Final = 15 * 60
FAILURES_PER_USERNAME_MAX: Final = 5
FAILURES_PER_ADDRESS_MAX: Final = 20
#: Accounts of one username a login tries (one argon2 verification each) when no store is given.
LOGIN_CANDIDATES_MAX: Final = 5
_USERNAME: Final = re.compile(USERNAME_PATTERN)
_HASHER: Final = PasswordHasher()
#: Verified against when the username is unknown, so both answers take as long.
_DUMMY_HASH: Final = _HASHER.hash("pos-ledger: no such user")


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    store_id: str
    role: str
    password_hash: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    #: None for an admin-token session (every store).
    store_id: str | None
    role: str
    csrf_token: str
    #: For an admin session, the SHA-256 of the admin token it was opened with ("" for staff).
    proof: str
    expires_at: int



class LoginThrottled(PosLedgerError):
    slug = "too-many-login-failures"
    status = 429


class StaffNotFound(NotFound):
    slug = "staff-not-found"


class StoreRequired(InvalidInput):
    """The username and password open accounts in several stores: which one?"""

    slug = "store-required"


class StaffRepository(Protocol):
    """What the service needs from the table (pos_ledger.staff_table.StaffTable)."""

    def insert_account(self, account: Account) -> None: ...
    def delete_account(self, store_id: str, username: str) -> None: ...
    def account(self, store_id: str, username: str) -> Account | None: ...
    def accounts_named(self, username: str, limit: int) -> list[Account]: ...
    def accounts(self, store_id: str) -> list[Account]: ...
    def update_password_hash(self, store_id: str, username: str, password_hash: str) -> None: ...
    def insert_session(self, token_sha256: str, session: Session, now: int) -> None: ...
    def session(self, token_sha256: str, now: int) -> Session | None: ...
    def revoke_session(self, token_sha256: str, now: int) -> None: ...
    def revoke_sessions_of(self, store_id: str, username: str, now: int) -> int: ...
    def purge_sessions(self, now: int) -> None: ...
    def failures(self, key: str, window_s: int, now: int) -> tuple[int, int]: ...
    def record_failure(self, key: str, window_s: int, now: int) -> int: ...
    def clear_failures(self, key: str) -> None: ...


class EventAppender(Protocol):
    """The ledger's server-event append (pos_ledger.ledger.Ledger.append_server_events)."""

    def append_server_events(self, store_id: str, events: list[tuple[str, dict[str, object]]]) -> object: ...


def normalise_username(username: str) -> str:
    """The stored form of a username; InvalidInput when it breaks the rule."""
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise InvalidInput("a username is 1-64 characters: letters, digits and _ . @ -, starting with a "
                           "letter or digit")
    if name == ADMIN_USERNAME:
        raise InvalidInput(f"the username {ADMIN_USERNAME!r} is reserved for the admin token")
    return name


def check_password(password: str) -> None:
    if not PASSWORD_CHARS_MIN <= len(password) <= PASSWORD_CHARS_MAX:
        raise InvalidInput(f"a password has {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Opened:
    """A new session: the cookie value (shown once) and the session it opens."""

    token: str
    session: Session


class StaffService:
    """Accounts, logins and sessions; the ledger only hears `staff.added` / `staff.removed`."""

    def __init__(self, table: StaffRepository, ledger: EventAppender) -> None:
        self.table = table
        self.ledger = ledger

    def add(self, store_id: str, username: str, password: str, role: str, now: int | None = None) -> Account:
        name = normalise_username(username)
        check_role(role)
        check_password(password)
        account = Account(name, store_id, role, _HASHER.hash(password), int(now or time.time()))
        self.table.insert_account(account)
        try:
            self.ledger.append_server_events(store_id, [("staff.added", {"username": name, "role": role})])
        except BaseException:
            # The log is the audit trail: no account without its staff.added.
            self.table.delete_account(store_id, name)
            raise
        return account

    def remove(self, store_id: str, username: str) -> None:
        account = self.table.account(store_id, username.strip().lower())
        if account is None:
            raise StaffNotFound(f"no staff member {username!r} in store {store_id!r}")
        self.ledger.append_server_events(store_id, [("staff.removed", {"username": account.username})])
        self.table.delete_account(store_id, account.username)

    def accounts(self, store_id: str) -> list[Account]:
        return self.table.accounts(store_id)

    def login(self, username: str, password: str, address: str, admin_token: str,
              now: int | None = None, store_id: str = "") -> Opened:
        """A new session for a correct password; Unauthorized / LoginThrottled / StoreRequired otherwise.

        `store_id` is optional: without it every account of that username is tried.
        """
        moment = int(now or time.time())
        name = username.strip().lower()[:PASSWORD_CHARS_MAX]
        keys = (f"user:{name}", f"addr:{address}")
        self._refuse_when_throttled(keys, moment)
        session = self._verify(name, password, admin_token, moment, store_id.strip()[:64])
        if session is None:
            for key in keys:
                self.table.record_failure(key, FAILURE_WINDOW_S, moment)
            raise Unauthorized("wrong username or password")
        self.table.clear_failures(keys[0])
        self.table.purge_sessions(moment)
        token = secrets.token_urlsafe(32)
        self.table.insert_session(token_digest(token), session, moment)
        return Opened(token, session)

    def _refuse_when_throttled(self, keys: tuple[str, str], now: int) -> None:
        for key, limit in zip(keys, (FAILURES_PER_USERNAME_MAX, FAILURES_PER_ADDRESS_MAX), strict=True):
            failures, started = self.table.failures(key, FAILURE_WINDOW_S, now)
            if failures >= limit:
                retry_after_s = max(1, started + FAILURE_WINDOW_S - now)
                raise LoginThrottled(f"too many failed logins; try again in {retry_after_s} s",
                                     retry_after_s=retry_after_s)

    def _verify(self, name: str, password: str, admin_token: str, now: int, store_id: str) -> Session | None:
        csrf = secrets.token_urlsafe(32)
        expires = now + SESSION_TTL_S
        if name == ADMIN_USERNAME:
            if admin_token and hmac.compare_digest(password.encode(), admin_token.encode()):
                return Session(ADMIN_USERNAME, None, "admin", csrf, token_digest(admin_token), expires)
            return None
        candidates = self.table.accounts_named(name, LOGIN_CANDIDATES_MAX)
        if store_id:
            candidates = [a for a in candidates if a.store_id == store_id]
        matched = [a for a in candidates if _password_matches(a.password_hash, password)]
        if not candidates:
            _password_matches(_DUMMY_HASH, password)  # as slow as a real account
        if not matched:
            return None
        if len(matched) > 1:
            raise StoreRequired("this username and password open accounts in several stores: give the store",
                                stores=[a.store_id for a in matched])
        account = matched[0]
        if _HASHER.check_needs_rehash(account.password_hash):
            self.table.update_password_hash(account.store_id, account.username, _HASHER.hash(password))
        return Session(account.username, account.store_id, account.role, csrf, "", expires)

    def session(self, token: str, admin_token: str, now: int | None = None) -> Session | None:
        """The live session a cookie names; None when it is unknown, expired, revoked or stale."""
        if not token or len(token) > 200:
            return None
        found = self.table.session(token_digest(token), int(now or time.time()))
        if found is None:
            return None
        if found.store_id is None and not hmac.compare_digest(found.proof, token_digest(admin_token)):
            return None  # the admin token changed since: its sessions end with it
        return found

    def logout(self, token: str, now: int | None = None) -> None:
        self.table.revoke_session(token_digest(token), int(now or time.time()))
