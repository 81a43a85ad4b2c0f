"""Signed tokens: round trip, every tampered character, truncation, wrong key, expiry; Rust agrees with its twin."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos_ledger import _core
from pos_ledger.reference import ed25519 as ed25519_twin
from pos_ledger.reference import token as twin

SEED = bytes(range(32))
PUBLIC = _core.ed25519_public_key(SEED)
OTHER_PUBLIC = _core.ed25519_public_key(bytes(32))
TOKEN_ID = uuid.UUID("12345678-1234-5678-1234-567812345678").bytes
EXPIRES_AT = 2_000_000_000
NOW = 1_900_000_000
ALPHANUMERIC = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
IMPLEMENTATIONS = pytest.mark.parametrize(
    ("implementation", "error"), [(_core, _core.TokenError), (twin, twin.TokenError)], ids=["rust", "twin"]
)


def refused(implementation: Any, error: type[Exception], token: str, public: bytes = PUBLIC, now: int = NOW) -> str:
    with pytest.raises(error) as caught:
        implementation.token_verify(public, token, now)
    assert isinstance(caught.value, ValueError)
    return str(caught.value)


@IMPLEMENTATIONS
@pytest.mark.parametrize("payload", [b"", b"\x00store01", bytes(range(32))])
@pytest.mark.parametrize("kind", [1, 2, 3, 200])
def test_round_trip(implementation: Any, error: type[Exception], payload: bytes, kind: int) -> None:
    token = implementation.token_sign(SEED, kind, EXPIRES_AT, TOKEN_ID, payload)
    assert token == _core.token_sign(SEED, kind, EXPIRES_AT, TOKEN_ID, payload)
    assert token.startswith("PL1") and set(token) <= ALPHANUMERIC and "=" not in token
    assert implementation.token_verify(PUBLIC, token, NOW) == (kind, EXPIRES_AT, TOKEN_ID, payload)


def test_default_payload_is_empty() -> None:
    token = _core.token_sign(SEED, 1, EXPIRES_AT, TOKEN_ID)
    assert token == twin.token_sign(SEED, 1, EXPIRES_AT, TOKEN_ID)
    assert len(token) == 3 + 140  # 23 header bytes + 64 signature bytes = 87 bytes, ceil(87 * 8 / 5) = 140
    assert _core.token_verify(PUBLIC, token, NOW)[3] == b""


@pytest.mark.parametrize("implementation", [_core, twin], ids=["rust", "twin"])
def test_every_tampered_character_is_refused(implementation: Any) -> None:
    token = _core.token_sign(SEED, 1, EXPIRES_AT, TOKEN_ID, b"payload")
    for position in range(len(token)):
        for replacement in {"A", "7", "a", "="} - {token[position]}:
            altered = token[:position] + replacement + token[position + 1 :]
            with pytest.raises(ValueError):
                implementation.token_verify(PUBLIC, altered, NOW)


@IMPLEMENTATIONS
def test_truncation_extension_wrong_key_expiry(implementation: Any, error: type[Exception]) -> None:
    token = _core.token_sign(SEED, 2, EXPIRES_AT, TOKEN_ID, b"card")
    for cut in range(1, len(token) + 1):
        refused(implementation, error, token[:-cut])
    assert "truncated" in refused(implementation, error, token[:-16])
    refused(implementation, error, token + "A")
    refused(implementation, error, token + "AAAAAAAA")
    assert "signature" in refused(implementation, error, token, OTHER_PUBLIC)
    assert "signature" in refused(implementation, error, token, bytes(31))
    assert "expired" in refused(implementation, error, token, now=EXPIRES_AT)
    assert implementation.token_verify(PUBLIC, token, EXPIRES_AT - 1)[0] == 2
    assert "PL1" in refused(implementation, error, "PL2" + token[3:])
    assert "base32" in refused(implementation, error, token.lower().replace("pl1", "PL1"))
    refused(implementation, error, "")
    refused(implementation, error, "PL1")
    refused(implementation, error, "PL1" + "A" * 10_000)


@IMPLEMENTATIONS
def test_unknown_version_is_named(implementation: Any, error: type[Exception]) -> None:
    # A well-signed token of another version: build it with the twin's pieces.
    signed = bytes([2, 1]) + EXPIRES_AT.to_bytes(4, "big") + TOKEN_ID + b"\x00"
    token = "PL1" + twin._base32_encode(signed + ed25519_twin.ed25519_sign(SEED, signed))
    assert "version" in refused(implementation, error, token)


@pytest.mark.parametrize("implementation", [_core, twin], ids=["rust", "twin"])
def test_sign_limits(implementation: Any) -> None:
    for kind, expires_at, token_id, payload, seed in [
        (0, EXPIRES_AT, TOKEN_ID, b"", SEED),
        (256, EXPIRES_AT, TOKEN_ID, b"", SEED),
        (-1, EXPIRES_AT, TOKEN_ID, b"", SEED),
        (1, 2**32, TOKEN_ID, b"", SEED),
        (1, -1, TOKEN_ID, b"", SEED),
        (1, EXPIRES_AT, TOKEN_ID[:15], b"", SEED),
        (1, EXPIRES_AT, TOKEN_ID, bytes(33), SEED),
        (1, EXPIRES_AT, TOKEN_ID, b"", SEED[:31]),
    ]:
        with pytest.raises(ValueError):
            implementation.token_sign(seed, kind, expires_at, token_id, payload)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 255),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=16, max_size=16),
    st.binary(max_size=32),
    st.integers(0, 2**32 + 5),
    st.integers(0, 200),
    st.sampled_from("A2Z7Q=a"),
)
def test_rust_and_twin_agree(
    kind: int, expires_at: int, token_id: bytes, payload: bytes, now: int, position: int, replacement: str
) -> None:
    token = twin.token_sign(SEED, kind, expires_at, token_id, payload)
    assert token == _core.token_sign(SEED, kind, expires_at, token_id, payload)
    for candidate in (token, token[: position + 3], token[:position] + replacement + token[position + 1 :]):
        outcomes = []
        for implementation, error in ((_core, _core.TokenError), (twin, twin.TokenError)):
            try:
                outcomes.append(implementation.token_verify(PUBLIC, candidate, now))
            except error as refusal:
                outcomes.append(str(refusal))
        assert outcomes[0] == outcomes[1]
