"""Pure-Python twin of `core_rs/src/token.rs`: compact signed tokens for coupon, member-card and store QR codes.

Binary layout (integers big-endian): `version (1) = 1 | kind (1) | expires_at (4, unix seconds) |
id (16) | payload length (1) | payload (0..=32) | Ed25519 signature (64)` over every byte before
it. Text: `PL1` + RFC 4648 base32, upper case, no padding (a QR's alphanumeric mode).
"""

from __future__ import annotations

import struct

from pos_ledger.reference.ed25519 import ed25519_sign, ed25519_verify_batch

PREFIX = "PL1"
VERSION = 1
ID_BYTES = 16
PAYLOAD_BYTES_MAX = 32
KIND_COUPON, KIND_MEMBER_CARD, KIND_STORE = 1, 2, 3
_HEADER_BYTES = 1 + 1 + 4 + ID_BYTES + 1
_SIGNATURE_BYTES = 64
TEXT_CHARS_MAX = len(PREFIX) + -(-((_HEADER_BYTES + PAYLOAD_BYTES_MAX + _SIGNATURE_BYTES) * 8) // 5)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class TokenError(ValueError):
    """A signed token was refused (mirrors `pos_ledger._core.TokenError`)."""


def _base32_encode(data: bytes) -> str:
    value, bits, out = 0, 0, []
    for byte in data:
        value, bits = (value << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            out.append(_ALPHABET[(value >> bits) & 31])
    if bits:
        out.append(_ALPHABET[(value << (5 - bits)) & 31])
    return "".join(out)


def _base32_decode(text: str) -> bytes:
    value, bits, out = 0, 0, bytearray()
    for index, char in enumerate(text):
        digit = _ALPHABET.find(char)
        if digit < 0:
            raise TokenError(f"token is not base32 (A-Z, 2-7) at character {len(PREFIX) + index}")
        value, bits = (value << 5) | digit, bits + 5
        if bits >= 8:
            bits -= 8
            out.append((value >> bits) & 0xFF)
    if bits >= 5 or value & ((1 << bits) - 1):
        raise TokenError("token is truncated or altered (bad base32 tail)")
    return bytes(out)


def token_sign(seed32: bytes, kind: int, expires_at: int, token_id: bytes, payload: bytes = b"") -> str:
    """The text form of a token signed with the key of `seed32`."""
    if not 0 <= kind <= 255:
        raise ValueError(f"token kind is 1..=255, got {kind}")
    if not 0 <= expires_at <= 0xFFFFFFFF:
        raise ValueError(f"expires_at is 0..=4294967295 unix seconds, got {expires_at}")
    if len(token_id) != ID_BYTES:
        raise ValueError(f"token_id has {ID_BYTES} bytes, got {len(token_id)}")
    if kind == 0:
        raise ValueError("token kind 0 is reserved (1 coupon, 2 member card, 3 store QR)")
    if len(payload) > PAYLOAD_BYTES_MAX:
        raise ValueError(f"a token payload holds at most {PAYLOAD_BYTES_MAX} bytes")
    signed = struct.pack(">BBI", VERSION, kind, expires_at) + token_id + bytes([len(payload)]) + payload
    return PREFIX + _base32_encode(signed + ed25519_sign(seed32, signed))


def token_verify(public_key: bytes, token: str, now: int) -> tuple[int, int, bytes, bytes]:
    """(kind, expires_at, token_id, payload) of a valid token, else `TokenError`."""
    if not token.startswith(PREFIX):
        raise TokenError(f"token must start with {PREFIX}")
    if len(token.encode("utf-8")) > TEXT_CHARS_MAX:
        raise TokenError(f"token is longer than {TEXT_CHARS_MAX} characters")
    data = _base32_decode(token[len(PREFIX) :])
    if len(data) < _HEADER_BYTES + _SIGNATURE_BYTES:
        raise TokenError("token is truncated")
    if data[0] != VERSION:
        raise TokenError(f"unknown token version {data[0]}")
    payload_len = data[_HEADER_BYTES - 1]
    if payload_len > PAYLOAD_BYTES_MAX or len(data) != _HEADER_BYTES + payload_len + _SIGNATURE_BYTES:
        raise TokenError("token length does not match its header (truncated or altered)")
    signed, signature = data[:-_SIGNATURE_BYTES], data[-_SIGNATURE_BYTES:]
    if not ed25519_verify_batch([public_key], [signed], [signature])[0]:
        raise TokenError("token signature does not verify (altered, or another key)")
    if data[1] == 0:
        raise TokenError("token kind 0 is reserved")
    (expires_at,) = struct.unpack(">I", data[2:6])
    if now >= expires_at:
        raise TokenError(f"token expired at {expires_at}")
    return data[1], expires_at, data[6 : 6 + ID_BYTES], signed[_HEADER_BYTES:]
