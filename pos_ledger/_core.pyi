"""Stubs for `pos_ledger._core`, the compiled hot path (core_rs). Checked with `python -m mypy.stubtest pos_ledger._core`.

Every function has a pure-Python twin under `pos_ledger/reference/` that gives the same answers.
"""

from collections.abc import Sequence
from typing import final

# What the module exports at runtime (PyO3 fills `__all__`); stubtest compares the two.
__all__ = [
    "LedgerFolder",
    "TokenError",
    "__version__",
    "chain_extend",
    "chain_verify",
    "ed25519_public_key",
    "ed25519_public_key_is_weak",
    "ed25519_sign",
    "ed25519_verify_batch",
    "token_sign",
    "token_verify",
]

__version__: str

# --- Ed25519 (core_rs/src/sig.rs; twin pos_ledger/reference/ed25519.py) -----------------------

def ed25519_verify_batch(
    public_keys: Sequence[bytes],
    messages: Sequence[bytes],
    signatures: Sequence[bytes],
    *,
    threads: int | None = None,
) -> list[bool]:
    """One answer per signature, in order; the GIL is released while verifying.

    Strict RFC 8032 semantics, identical for every batch size: key 32 bytes and signature 64
    bytes; A and R canonical encodings of points not of small order; S < L; the cofactored
    equation [8](S·B − R − k·A) = 0. Anything malformed is False, never an exception.
    Batches use one random linear combination per chunk (keys decoded once per distinct key)
    and fall back to single checks only to pinpoint failures. `threads` (default: every core)
    splits batches of 64 or more into that many chunks; pass 1 to stay on one core.
    Raises ValueError if the three sequences differ in length or hold more than 1,000,000
    items; TypeError if an item is not `bytes`.
    """

def ed25519_public_key_is_weak(public_key: bytes) -> bool:
    """True if the key must be refused: not 32 bytes, not a canonical point encoding, or of small order."""

def ed25519_sign(seed32: bytes, message: bytes) -> bytes:
    """The deterministic 64-byte RFC 8032 signature of `message`; ValueError unless the seed has 32 bytes."""

def ed25519_public_key(seed32: bytes) -> bytes:
    """The 32-byte public key of a 32-byte seed (RFC 8032 section 5.1.5)."""

# --- Hash chain (core_rs/src/chain.rs; twin pos_ledger/reference/chain.py) -----------------

def chain_extend(head: bytes, bodies: Sequence[bytes], sigs: Sequence[bytes]) -> list[bytes]:
    """The successive hashes h_n = SHA-256(h_{n-1} || body_n || sig_n), starting from `head`.

    ValueError unless `head` has 32 bytes, every sig 64 bytes, the sequences the same length
    and at most 1,000,000 entries.
    """

def chain_verify(
    head: bytes, bodies: Sequence[bytes], sigs: Sequence[bytes], hashes: Sequence[bytes]
) -> tuple[bytes, int | None]:
    """Recompute from `head`: (last head, None) if every stored hash matches, else
    (head before the first mismatch, 0-based index of that entry). Same limits as `chain_extend`;
    a stored hash of the wrong length is a mismatch.
    """

# --- Auditor fold (core_rs/src/fold.rs; twin pos_ledger/reference/fold.py) -----------------

@final
class LedgerFolder:
    """Streaming auditor fold: the chain, balanced postings per event, and account balances.

    Postings are compact JSON `[[account, currency, amount_minor], ...]` (account 1..=256 UTF-8
    bytes, currency three letters A-Z, amount an integer; debits positive; at most 1024 per
    event). Memory holds the head, counters and one entry per (account, currency) only.
    """

    def __new__(cls, head: bytes = ..., position: int = 0) -> LedgerFolder:
        """Start after `position` events whose chain head is `head` (default: 32 zero bytes, 0)."""

    def feed(
        self, bodies: Sequence[bytes], sigs: Sequence[bytes], hashes: Sequence[bytes], postings: Sequence[bytes]
    ) -> None:
        """Fold one chunk (at most 1,000,000 events) with the GIL released; stops at the first error."""

    def feed_packed(self, buffer: bytes) -> None:
        """Fold records packed one after another, lengths little-endian:
        `body_len: u32 | body | sig_len: u8 | sig | hash (32 bytes) | postings_len: u32 | postings`.
        Same semantics as `feed`; ValueError if the buffer is truncated.
        """

    @property
    def head(self) -> bytes:
        """The chain head after the last event folded without error."""

    @property
    def position(self) -> int:
        """The number of events folded, counting from the initial position."""

    @property
    def first_error(self) -> tuple[int, str] | None:
        """(1-based absolute position, reason) of the first bad event, or None. Reasons:
        "hash_mismatch", "postings_malformed", "amount_overflow", "postings_unbalanced".
        Once set, later feeds do nothing."""

    def balances(self) -> dict[tuple[str, str], int]:
        """(account, currency) -> sum of amount_minor over the events folded (zero balances included)."""

# --- Signed tokens (core_rs/src/token.rs; twin pos_ledger/reference/token.py) --------------

class TokenError(ValueError):
    """A signed token was refused: bad prefix or encoding, truncated, unknown version, bad signature or wrong key, expired."""

def token_sign(seed32: bytes, kind: int, expires_at: int, token_id: bytes, payload: bytes = ...) -> str:
    """A server-signed token as text: "PL1" + base32 (RFC 4648, upper case, no padding) of

    `version (1) = 1 | kind (1) | expires_at (u32 big-endian unix seconds) | id (16) |
    payload length (1) | payload (0..=32 bytes) | Ed25519 signature (64) of all bytes before it`.
    Kinds: 1 coupon, 2 member card, 3 store claim/join QR; 4..=255 carried opaquely; 0 reserved.
    ValueError for a kind outside 1..=255, expires_at outside u32, an id not of 16 bytes, a payload
    over 32 bytes or a seed not of 32 bytes.
    """

def token_verify(public_key: bytes, token: str, now: int) -> tuple[int, int, bytes, bytes]:
    """(kind, expires_at, token_id, payload) of a token signed by `public_key`'s key and valid at `now`
    (unix seconds; valid while now < expires_at); otherwise TokenError saying why."""
