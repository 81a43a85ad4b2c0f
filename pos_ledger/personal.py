"""Members' personal data, kept out of the log.

A member's name, phone and birthday live in an erasable table (`PersonalDataStore`, adapter
`pos_ledger.personal_store`) keyed by (store, member id); the log's `member.registered` keeps
the member id and `phone_hash`, a keyed hash that finds a member by phone without holding it:

    key        = HMAC-SHA256(server seed, "pos-ledger phone-hash v1")
    phone_hash = hex(HMAC-SHA256(key, store_id || "\\n" || normalised phone))

with the phone normalised to its digits (a leading "+" kept). Without the server seed the hash
cannot be tested against guessed numbers. Erasure deletes the table row (and leaves a
tombstone, so a member registered in the old form, with the phone in the event, is no
longer shown either); the log, the chain and every balance stay as they were.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final, Protocol

PHONE_HASH_CONTEXT: Final = b"pos-ledger phone-hash v1"
_NOT_DIGITS: Final = re.compile(r"[^0-9]")


@dataclass(frozen=True, slots=True)
class PersonalData:
    name: str = ""
    phone: str = ""
    #: ISO 8601 date (YYYY-MM-DD) or "".
    birthday: str = ""
    #: True once erased: nothing is shown, whatever an old event holds.
    erased: bool = False


class PersonalDataStore(Protocol):
    """The erasable table (same database as the log)."""

    def get(self, store_id: str, member_id: str) -> PersonalData | None: ...

    def put(self, store_id: str, member_id: str, data: PersonalData) -> None: ...

    def erase(self, store_id: str, member_id: str) -> None: ...


def phone_hash_key(server_seed: bytes) -> bytes:
    return hmac.new(server_seed, PHONE_HASH_CONTEXT, hashlib.sha256).digest()


def normalise_phone(phone: str) -> str:
    digits = _NOT_DIGITS.sub("", phone)
    return ("+" + digits) if phone.strip().startswith("+") else digits


def phone_hash(key: bytes, store_id: str, phone: str) -> str:
    """"" for no phone."""
    normalised = normalise_phone(phone)
    if not normalised.strip("+"):
        return ""
    return hmac.new(key, f"{store_id}\n{normalised}".encode(), hashlib.sha256).hexdigest()


def mask_phone(phone: str) -> str:
    """13812345678 -> 138****5678: the first three and last four characters stay; short ones keep two."""
    if len(phone) >= 8:
        return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
    return "*" * max(0, len(phone) - 2) + phone[-2:]
