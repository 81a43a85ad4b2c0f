"""Ed25519: every Wycheproof case and RFC 8032 vector through Rust and its Python twin; batches pinpoint failures."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos_ledger import _core
from pos_ledger.reference import ed25519 as twin
from tests.testdata import TESTDATA

SLOW_TWIN = settings(max_examples=40, deadline=None)
L = 2**252 + 27742317777372353535851937790883648493
SEED = bytes(range(32))


def wycheproof_cases() -> list[tuple[int, bytes, bytes, bytes, bool]]:
    data: dict[str, Any] = json.loads((TESTDATA / "wycheproof" / "ed25519_test.json").read_text())
    cases = []
    for group in data["testGroups"]:
        key = bytes.fromhex(group["publicKey"]["pk"])
        for case in group["tests"]:
            expected = case["result"] == "valid"
            cases.append((case["tcId"], key, bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"]), expected))
    return cases


def rfc8032_vectors() -> list[dict[str, str]]:
    vectors: list[dict[str, str]] = json.loads((TESTDATA / "rfc8032.json").read_text())["vectors"]
    return vectors


WYCHEPROOF = wycheproof_cases()


def test_wycheproof_is_complete() -> None:
    assert len(WYCHEPROOF) >= 150
    assert any(expected for *_, expected in WYCHEPROOF) and not all(expected for *_, expected in WYCHEPROOF)


@pytest.mark.parametrize("implementation", [_core, twin], ids=["rust", "twin"])
def test_every_wycheproof_case_one_by_one(implementation: Any) -> None:
    for tc_id, key, message, signature, expected in WYCHEPROOF:
        assert implementation.ed25519_verify_batch([key], [message], [signature]) == [expected], tc_id


@pytest.mark.parametrize("threads", [1, 2, None])
def test_every_wycheproof_case_in_one_rust_batch(threads: int | None) -> None:
    keys, messages, signatures, expected = (list(column) for column in zip(*(c[1:] for c in WYCHEPROOF), strict=True))
    # Repeat so the batch crosses the parallel threshold and mixes keys inside each chunk.
    answers = _core.ed25519_verify_batch(keys * 3, messages * 3, signatures * 3, threads=threads)
    assert answers == expected * 3


@pytest.mark.parametrize("implementation", [_core, twin], ids=["rust", "twin"])
def test_rfc8032_vectors_byte_for_byte(implementation: Any) -> None:
    for vector in rfc8032_vectors():
        seed, message = bytes.fromhex(vector["secret_key"]), bytes.fromhex(vector["message"])
        public, signature = bytes.fromhex(vector["public_key"]), bytes.fromhex(vector["signature"])
        assert implementation.ed25519_public_key(seed) == public, vector["name"]
        assert implementation.ed25519_sign(seed, message) == signature, vector["name"]
        assert implementation.ed25519_verify_batch([public], [message], [signature]) == [True]
        assert not implementation.ed25519_public_key_is_weak(public)


def signed_batch(count: int, seed: bytes = SEED) -> tuple[list[bytes], list[bytes], list[bytes]]:
    public = _core.ed25519_public_key(seed)
    messages = [f'{{"seq":{i},"type":"sale.completed"}}'.encode() for i in range(count)]
    return [public] * count, messages, [_core.ed25519_sign(seed, m) for m in messages]


def spoil(signature: bytes, how: int) -> bytes:
    if how == 0:
        return bytes([signature[0] ^ 1]) + signature[1:]  # R altered
    if how == 1:
        return signature[:40] + bytes([signature[40] ^ 4]) + signature[41:]  # S altered
    if how == 2:
        s = int.from_bytes(signature[32:], "little") + L  # same scalar, non-canonical
        return signature[:32] + s.to_bytes(32, "little")
    if how == 3:
        return signature[:63]  # truncated
    return bytes(64)  # R = 0 is not a point of large order


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_pinpoints_exactly_the_bad_signatures(threads: int) -> None:
    keys, messages, signatures = signed_batch(300)
    other_public = _core.ed25519_public_key(bytes(32))
    bad = {3: "R", 64: "S", 65: "L", 150: "short", 299: "zero"}
    for how, index in enumerate(sorted(bad)):
        signatures[index] = spoil(signatures[index], how)
    keys[200] = other_public  # valid signature, wrong key
    messages[201] = messages[201] + b" "  # altered message
    keys[202] = bytes(31)  # malformed key
    expected = [i not in bad and i not in (200, 201, 202) for i in range(300)]
    assert _core.ed25519_verify_batch(keys, messages, signatures, threads=threads) == expected
    assert twin.ed25519_verify_batch(keys[:70], messages[:70], signatures[:70]) == expected[:70]


def test_big_batch_agrees_with_single_verification() -> None:
    seeds = [bytes([i]) * 32 for i in range(4)]
    keys, messages, signatures = [], [], []
    for seed in seeds:
        k, m, s = signed_batch(1250, seed)
        keys += k
        messages += m
        signatures += s
    rng = random.Random(7)
    order = list(range(len(keys)))
    rng.shuffle(order)
    keys, messages, signatures = ([column[i] for i in order] for column in (keys, messages, signatures))
    for index in rng.sample(range(len(keys)), 40):
        signatures[index] = spoil(signatures[index], index % 5)
    batched = _core.ed25519_verify_batch(keys, messages, signatures)
    single = [_core.ed25519_verify_batch([k], [m], [s])[0] for k, m, s in zip(keys, messages, signatures, strict=True)]
    assert batched == single == _core.ed25519_verify_batch(keys, messages, signatures, threads=1)
    assert batched.count(False) == 40


@pytest.mark.parametrize("implementation", [_core, twin], ids=["rust", "twin"])
def test_lengths_and_types_are_checked(implementation: Any) -> None:
    with pytest.raises(ValueError):
        implementation.ed25519_verify_batch([b"k"], [b"m", b"n"], [b"s"])
    with pytest.raises(TypeError):
        implementation.ed25519_verify_batch(["k"], [b"m"], [b"s"])
    with pytest.raises(ValueError):
        implementation.ed25519_sign(bytes(31), b"m")
    with pytest.raises(ValueError):
        implementation.ed25519_public_key(bytes(33))
    assert implementation.ed25519_verify_batch([], [], []) == []


SMALL_ORDER_ENCODINGS = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
]


@pytest.mark.parametrize("implementation", [_core, twin], ids=["rust", "twin"])
def test_weak_keys(implementation: Any) -> None:
    for text in SMALL_ORDER_ENCODINGS:
        assert implementation.ed25519_public_key_is_weak(bytes.fromhex(text)), text
    p = 2**255 - 19
    for value in range(p, 2**255):  # non-canonical y, whatever point it would decode to
        assert implementation.ed25519_public_key_is_weak(value.to_bytes(32, "little"))
    assert implementation.ed25519_public_key_is_weak(b"")
    assert not implementation.ed25519_public_key_is_weak(implementation.ed25519_public_key(SEED))


@SLOW_TWIN
@given(st.binary(max_size=40), st.binary(max_size=70), st.binary(max_size=64))
def test_rust_and_twin_agree_on_garbage(key: bytes, signature: bytes, message: bytes) -> None:
    assert _core.ed25519_verify_batch([key], [message], [signature]) == twin.ed25519_verify_batch(
        [key], [message], [signature]
    )
    assert _core.ed25519_public_key_is_weak(key) == twin.ed25519_public_key_is_weak(key)


@SLOW_TWIN
@given(
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=64),
    st.integers(min_value=0, max_value=63),
    st.integers(min_value=0, max_value=7),
    st.booleans(),
)
def test_rust_and_twin_agree_on_near_valid_signatures(
    seed: bytes, message: bytes, byte: int, bit: int, flip: bool
) -> None:
    public = twin.ed25519_public_key(seed)
    signature = twin.ed25519_sign(seed, message)
    assert public == _core.ed25519_public_key(seed)
    assert signature == _core.ed25519_sign(seed, message)
    if flip:
        signature = signature[:byte] + bytes([signature[byte] ^ (1 << bit)]) + signature[byte + 1 :]
    rust = _core.ed25519_verify_batch([public], [message], [signature])
    assert rust == twin.ed25519_verify_batch([public], [message], [signature]) == [not flip]


@SLOW_TWIN
@given(st.binary(min_size=32, max_size=32))
def test_rust_and_twin_agree_on_point_encodings(encoding: bytes) -> None:
    assert _core.ed25519_public_key_is_weak(encoding) == twin.ed25519_public_key_is_weak(encoding)
