"""Hypothesis: the body depth scan, the signature parser and the identifier rule never crash and agree with
their definitions."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from pos_ledger import _core, httpsig
from pos_ledger.values import IDENTIFIER_LENGTH_MAX, Identifier, is_identifier, json_depth, json_too_deep

SEED = bytes(range(32))
PUBLIC_KEY = _core.ed25519_public_key(SEED)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=40,
)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@given(json_values, st.booleans())
def test_the_depth_scan_matches_the_decoded_depth(value: Any, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_depth(raw) == depth_of(value)
    assert json_too_deep(raw, 3) == (depth_of(value) > 3)


@given(st.binary(max_size=2_000))
def test_the_depth_scan_takes_any_bytes(raw: bytes) -> None:
    assert json_depth(raw) >= 0


@given(st.integers(min_value=1, max_value=5_000))
def test_deep_documents_are_measured_without_recursion(depth: int) -> None:
    assert json_depth(b"[" * depth + b"]" * depth) == depth
    assert json_depth(b'{"a":' * depth + b"1" + b"}" * depth) == depth


@given(st.text(max_size=80))
def test_identifiers_are_the_characters_and_never_dots_only(text: str) -> None:
    expected = (0 < len(text) <= IDENTIFIER_LENGTH_MAX and re.fullmatch(r"[A-Za-z0-9_.:-]+", text) is not None
                and set(text) != {"."})
    assert is_identifier(text) == expected
    decoded_ok = True
    try:
        msgspec.json.decode(json.dumps(text).encode(), type=Identifier)
    except msgspec.ValidationError:
        decoded_ok = False
    assert decoded_ok == expected


keyids = st.from_regex(r"\A[A-Za-z0-9_:-]{1,64}\Z")


@settings(max_examples=200)
@given(keyids, st.binary(max_size=200), st.sampled_from(["GET", "POST", "PATCH", "DELETE"]),
       st.from_regex(r"\A/[a-z0-9/_-]{0,60}\Z"), st.none() | st.from_regex(r"\A[\x21-\x7e]{1,40}\Z"))
def test_a_signed_request_parses_and_verifies_and_any_change_breaks_it(
        keyid: str, body: bytes, method: str, path: str, idempotency_key: str | None) -> None:
    now = int(time.time())
    headers = httpsig.sign_request(SEED, keyid, method, path, body, now, idempotency_key=idempotency_key)
    parsed = httpsig.parse(headers["Signature-Input"], headers["Signature"])
    assert parsed.keyid == keyid and parsed.created == now
    assert str(uuid.UUID(parsed.nonce)) == parsed.nonce
    assert parsed.covers_idempotency_key == (idempotency_key is not None)
    httpsig.verify(parsed, PUBLIC_KEY, method, path, body, headers["Content-Digest"], now, idempotency_key)
    for changed in (
        lambda: httpsig.verify(parsed, PUBLIC_KEY, method, path + "x", body, headers["Content-Digest"], now,
                               idempotency_key),
        lambda: httpsig.verify(parsed, PUBLIC_KEY, method, path, body + b"x", headers["Content-Digest"], now,
                               idempotency_key),
        lambda: httpsig.verify(parsed, PUBLIC_KEY, method, path, body, headers["Content-Digest"], now,
                               (idempotency_key or "") + "x"),
        lambda: httpsig.verify(parsed, PUBLIC_KEY, method, path, body, headers["Content-Digest"],
                               now + httpsig.CREATED_SKEW_S_MAX + 1, idempotency_key),
    ):
        try:
            changed()
        except httpsig.SignatureRejected:
            continue
        raise AssertionError("a changed request verified")


@given(st.text(max_size=300), st.text(max_size=300))
def test_the_signature_parser_rejects_or_parses_any_header_text(signature_input: str, signature: str) -> None:
    try:
        parsed = httpsig.parse(signature_input, signature)
    except httpsig.SignatureRejected:
        return
    assert len(parsed.signature) == 64 and parsed.nonce


@given(st.text(alphabet='sig1=()"@methodpathcontent-digestidempotency-key;created=0123456789nonce'
                        'keyid=alg=ed25519abcdef:-', max_size=250))
def test_near_miss_signature_inputs_never_crash(signature_input: str) -> None:
    try:
        httpsig.parse(signature_input, "sig1=:" + "A" * 86 + "==:")
    except httpsig.SignatureRejected:
        pass


def test_the_old_form_without_a_nonce_does_not_parse() -> None:
    old = 'sig1=("@method" "@path" "content-digest");created=1767225600;keyid="t1";alg="ed25519"'
    try:
        httpsig.parse(old, "sig1=:" + "A" * 86 + "==:")
    except httpsig.SignatureRejected:
        return
    raise AssertionError("the form without a nonce parsed")


@given(st.from_regex(r"\A[A-Za-z0-9+/=]{1,200}\Z"))
def test_any_signature_value_is_refused_or_taken_with_a_valid_input(value: str) -> None:
    signature_input = "sig1=" + httpsig.signature_params("t1", 1767225600, str(uuid.uuid4()))
    try:
        parsed = httpsig.parse(signature_input, f"sig1=:{value}:")
    except httpsig.SignatureRejected:
        return
    assert len(parsed.signature) == 64
