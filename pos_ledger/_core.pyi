"""Stubs for `pos_ledger._core`, the compiled hot path (core_rs). Checked with `python -m mypy.stubtest pos_ledger._core`.

Every function has a pure-Python twin under `pos_ledger/reference/` that gives the same answers.
"""

from collections.abc import Sequence
from typing import final

# What the module exports at runtime (PyO3 fills `__all__`); stubtest compares the two.
__all__ = [
    "EmvError",
    "LedgerFolder",
    "TokenError",
    "__version__",
    "chain_extend",
    "chain_verify",
    "ed25519_public_key",
    "ed25519_public_key_is_weak",
    "ed25519_sign",
    "ed25519_verify_batch",
    "emv_decode",
    "emv_encode",
    "emv_payment_payload",
    "emv_validate",
    "qr_escpos_raster",
    "qr_matrix",
    "qr_png",
    "qr_svg",
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

    def __new__(cls, head: bytes = ..., position: int = 0, *, threads: int | None = None) -> LedgerFolder:
        """Start after `position` events whose chain head is `head` (default: 32 zero bytes, 0).

        Chunks of 4096 events or more are scanned on `threads` threads (default: every core) with
        the same answers as a serial fold; pass 1 to stay on one core. Passing tuples rather than
        lists to `feed` saves a copy of each sequence.
        """

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

# --- EMVCo merchant-presented payloads (core_rs/src/emv.rs; twin pos_ledger/reference/emv.py) --


class EmvError(ValueError):
    """An EMV payload or field list breaks the format or a scheme's rules. The message ends with
    "(at position N)"; `position` is that 0-based character position (None for a bad argument)."""

    position: int | None

def emv_decode(payload: str) -> list[tuple[str, str | list[tuple[str, str]]]]:
    """Strictly parse a merchant-presented payload into its fields, in order: (id, text), or for
    template ids (id, [(sub-id, text), ...]).

    Fields are `id (2 digits) | length (2 digits, counting characters) | value`; ids 26..=51, 62
    and 64 are always templates (one level of sub-fields, which must consume the value exactly);
    every other id (80..=99 included) stays text, so `emv_encode(emv_decode(p)) == p`. The CRC
    field ("63", "XXXX") is kept last: it must be present, last, of length 04, four upper-case hex
    digits equal to CRC-16/CCITT-FALSE over the UTF-8 bytes before them. Limits: 512 characters;
    lengths 01..=99; no control characters (Unicode Cc). EmvError names the first problem's position.
    A str with a lone surrogate raises UnicodeEncodeError (a ValueError) before any parsing.
    """

def emv_encode(fields: Sequence[tuple[str, str | Sequence[tuple[str, str]]]]) -> str:
    """The payload for `fields` (the shape `emv_decode` returns, fields and sub-fields as tuples)
    with the CRC appended. A trailing ("63", ...) is ignored and recomputed; a 63 elsewhere is an
    error. Template ids need sub-fields and other ids text (EmvError otherwise); ids are two
    digits, values 1..=99 characters without control characters, the payload at most 512
    characters. The error position is where the offending field or character would start in the
    output. TypeError if a field is not a (str, str | sequence of (str, str)) tuple.
    """

def emv_validate(fields: Sequence[tuple[str, str | Sequence[tuple[str, str]]]], scheme: str | None = None) -> None:
    """Check field syntax where present (01 is 11/12; 52 4 digits; 53 3 digits; 54 an amount of at
    most 13 characters, digits with an optional '.' and digits; 58 two upper-case letters), then the
    fields `scheme` requires; None checks syntax only. Schemes:

    * "emvco": 00 = "01" first; 52, 53, 58, 59, 60; a merchant account (an id in 02..=51).
    * "pix": a template 26..=51 with GUI (sub-field 00) br.gov.bcb.pix; 52, 59, 60; 53 = 986; 58 = BR.
    * "promptpay": template 29 with GUI A000000677010111 or 30 with A000000677010112; 53 = 764; 58 = TH.
    * "vietqr": template 38 with GUI A000000727; 53 = 704; 58 = VN.
    * "unionpay": "emvco" plus field 15/16 or a template 26..=51 whose GUI starts A000000333 or D156.

    EmvError's position is where the offending field starts in the encoded payload, or where the
    CRC field goes when a required field is missing. ValueError (not EmvError) for an unknown scheme.
    """

def emv_payment_payload(
    *,
    merchant_account: Sequence[tuple[str, str]],
    mcc: str,
    currency_numeric: str,
    amount_minor: int,
    currency_exponent: int,
    country: str,
    merchant_name: str,
    merchant_city: str,
    reference_label: str,
    merchant_account_tag: str = "26",
) -> str:
    """The dynamic payment payload a cashier shows: 00 = 01, 01 = 12 (dynamic), the template
    `merchant_account_tag` (26..=51) holding `merchant_account` (GUI in sub-field 00 first), 52 = mcc
    (4 digits), 53 = currency_numeric (ISO 4217, 3 digits), 54 = the amount, 58 = country (ISO 3166
    alpha-2), 59 = merchant_name (1..=25 characters), 60 = merchant_city (1..=15), 62 with sub-field
    05 = reference_label (1..=25), 63 = CRC; checked with the "emvco" scheme.

    The amount is `amount_minor` (>= 1) written with `currency_exponent` (0..=3) decimals, from
    integers only: 12345 with exponent 2 is "123.45", with 0 "12345"; at most 13 characters.
    EmvError (position None for an argument) otherwise; OverflowError outside 64-bit integers.
    """

# --- QR rendering (core_rs/src/qr.rs; twin pos_ledger/reference/qr.py) -------------------------
# The matrix is Nayuki's qrcodegen `encode_text` (mode chosen automatically, UTF-8 bytes for
# non-ASCII text, ecc boosted when free, automatic mask): identical to the PyPI `qrcodegen` twin.
# ValueError for an ecc other than "L", "M", "Q", "H", text too long for version 40 (over 7089
# UTF-8 bytes is refused before encoding), or a scale/border out of range. PNG rows repeated from
# the row above use filter "Up", zlib level 6. The GIL is released while rendering.

def qr_matrix(text: str, ecc: str = "M") -> tuple[int, bytes]:
    """(size, modules): `size` modules a side, `modules` size * size bytes row by row, 1 = dark, 0 = light."""

def qr_svg(text: str, ecc: str = "M", border: int = 4) -> str:
    """A scalable SVG (viewBox in modules, quiet zone `border` 0..=16): a white rect and one black path."""

def qr_png(text: str, ecc: str = "M", scale: int = 8, border: int = 4) -> bytes:
    """A 1-bit grayscale PNG, `scale` (1..=32) pixels per module, quiet zone `border` (0..=16) modules."""

def qr_escpos_raster(text: str, ecc: str = "M", scale: int = 6, border: int = 2) -> bytes:
    """ESC/POS `GS v 0` raster bit image: 1D 76 30 00 xL xH yL yH, then yH*256+yL rows of
    xH*256+xL bytes, most significant bit leftmost, bit set = black. `scale` 1..=16 dots per module,
    `border` 0..=16 modules; ValueError if wider than a 576-dot (80 mm) printhead.
    """
