"""Pure-Python twin of `core_rs/src/fold.rs`: the streaming auditor fold (chain, balanced postings, balances).

Postings are compact JSON `[[account, currency, amount_minor], ...]`; see `fold.rs` for the
grammar and the order of the checks, which this module applies in the same order:
`hash_mismatch`, `postings_malformed`, `amount_overflow` (an amount outside i64),
`postings_unbalanced`, `amount_overflow` (a running balance would leave i64).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence

from pos_ledger.reference.chain import HASH_BYTES, bytes_items, check_head, link

ACCOUNT_BYTES_MAX = 256
POSTINGS_PER_EVENT_MAX = 1024
FEED_EVENTS_MAX = 1_000_000
INTEGER_DIGITS_MAX = 20
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
_CURRENCY = re.compile(r"[A-Z]{3}")


class _OutOfRange:
    """An integer literal too long to be an i64, whatever its digits."""


_OUT_OF_RANGE = _OutOfRange()


class Malformed(Exception):
    pass


def _parse_int(text: str) -> int | _OutOfRange:
    return _OUT_OF_RANGE if len(text.lstrip("-")) > INTEGER_DIGITS_MAX else int(text)


def _refuse_constant(name: str) -> object:
    raise Malformed(name)


def parse_postings(text: bytes) -> list[tuple[str, str, int | _OutOfRange]]:
    """The postings of one event, or `Malformed`."""
    try:
        value = json.loads(text.decode("utf-8"), parse_int=_parse_int, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError, Malformed) as error:
        raise Malformed(str(error)) from None
    if type(value) is not list or len(value) > POSTINGS_PER_EVENT_MAX:
        raise Malformed("not a list of postings")
    postings = []
    for item in value:
        if type(item) is not list or len(item) != 3:
            raise Malformed("a posting is [account, currency, amount_minor]")
        account, currency, amount = item
        if type(account) is not str or type(currency) is not str:
            raise Malformed("account and currency are strings")
        if type(amount) is not int and amount is not _OUT_OF_RANGE:
            raise Malformed("amount_minor is an integer")
        try:
            account_bytes = account.encode("utf-8")
        except UnicodeEncodeError:
            raise Malformed("account is not UTF-8") from None
        if not 1 <= len(account_bytes) <= ACCOUNT_BYTES_MAX or not _CURRENCY.fullmatch(currency):
            raise Malformed("bad account or currency")
        postings.append((account, currency, amount))
    return postings


class LedgerFolder:
    """Folds stored events chunk by chunk; keeps only the head, counters and balances.

    `threads` is accepted for parity with the Rust class and ignored: the twin is serial.
    """

    def __init__(self, head: bytes = bytes(HASH_BYTES), position: int = 0, *, threads: int | None = None) -> None:
        check_head(head)
        if position < 0:
            raise OverflowError("position is a non-negative integer")
        self._head = head
        self._position = position
        self._first_error: tuple[int, str] | None = None
        self._balances: dict[tuple[str, str], int] = {}

    @property
    def head(self) -> bytes:
        return self._head

    @property
    def position(self) -> int:
        return self._position

    @property
    def first_error(self) -> tuple[int, str] | None:
        return self._first_error

    def balances(self) -> dict[tuple[str, str], int]:
        return dict(self._balances)

    def feed(
        self, bodies: Sequence[bytes], sigs: Sequence[bytes], hashes: Sequence[bytes], postings: Sequence[bytes]
    ) -> None:
        columns = [
            bytes_items(items, name)
            for items, name in ((bodies, "bodies"), (sigs, "sigs"), (hashes, "hashes"), (postings, "postings"))
        ]
        if len({len(column) for column in columns}) != 1:
            raise ValueError("bodies, sigs, hashes and postings must have the same length")
        if len(columns[0]) > FEED_EVENTS_MAX:
            raise ValueError(f"at most {FEED_EVENTS_MAX} events per feed, got {len(columns[0])}")
        for body, sig, stored, text in zip(*columns, strict=True):
            if not self._step(body, sig, stored, text):
                break

    def feed_packed(self, buffer: bytes) -> None:
        """Records `body_len: u32le | body | sig_len: u8 | sig | hash (32) | postings_len: u32le | postings`."""
        records: list[tuple[bytes, bytes, bytes, bytes]] = []
        at = 0
        try:
            while at < len(buffer):
                if len(records) == FEED_EVENTS_MAX:
                    raise ValueError(f"at most {FEED_EVENTS_MAX} events per feed")
                (body_len,) = struct.unpack_from("<I", buffer, at)
                body = buffer[at + 4 : at + 4 + body_len]
                at += 4 + body_len
                sig_len = buffer[at]
                sig = buffer[at + 1 : at + 1 + sig_len]
                stored = buffer[at + 1 + sig_len : at + 1 + sig_len + HASH_BYTES]
                at += 1 + sig_len + HASH_BYTES
                (postings_len,) = struct.unpack_from("<I", buffer, at)
                text = buffer[at + 4 : at + 4 + postings_len]
                at += 4 + postings_len
                if at > len(buffer) or len(body) != body_len:
                    raise ValueError("packed buffer is truncated")
                records.append((body, sig, stored, text))
        except (struct.error, IndexError):
            raise ValueError("packed buffer is truncated") from None
        for record in records:
            if not self._step(*record):
                break

    def _step(self, body: bytes, sig: bytes, stored: bytes, text: bytes) -> bool:
        if self._first_error is not None:
            return False
        position = self._position + 1
        following = link(self._head, body, sig)
        reason = "hash_mismatch" if following != stored else self._add(text)
        if reason is not None:
            self._first_error = (position, reason)
            return False
        self._head, self._position = following, position
        return True

    def _add(self, text: bytes) -> str | None:
        try:
            postings = parse_postings(text)
        except Malformed:
            return "postings_malformed"
        amounts: list[int] = []
        for _, _, amount in postings:
            if not isinstance(amount, int) or not I64_MIN <= amount <= I64_MAX:
                return "amount_overflow"
            amounts.append(amount)
        sums: dict[str, int] = {}
        for (_, currency, _), amount in zip(postings, amounts, strict=True):
            sums[currency] = sums.get(currency, 0) + amount
        if any(sums.values()):
            return "postings_unbalanced"
        updated: dict[tuple[str, str], int] = {}
        for (account, currency, _), amount in zip(postings, amounts, strict=True):
            key = (account, currency)
            after = updated.get(key, self._balances.get(key, 0)) + amount
            if not I64_MIN <= after <= I64_MAX:
                return "amount_overflow"
            updated[key] = after
        self._balances.update(updated)
        return None
