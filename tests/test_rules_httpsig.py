"""RFC 9421 request signatures (pos_ledger/httpsig.py): `created` within 60 s of the server's clock on
both sides, a nonce, exactly three covered components (four with "idempotency-key"), the digest of the
body, and the terminal's key."""

from __future__ import annotations

import base64

import pytest

from pos_ledger import _core, httpsig
from pos_ledger.httpsig import SignatureRejected

SEED = bytes([7]) * 32
PUBLIC_KEY = _core.ed25519_public_key(SEED)
NOW_S = 1_767_225_600
PATH = "/v1/stores/s1/payments"
BODY = b'{"amount_minor": 1700}'
#: Issue 14: "`created` within 60 s" (either side).
SKEW_S = 60
NONCE = "6f1c2a9e-3b7d-4e8a-9c1f-2d5b8e0a4c7f"


def signed(created: int, body: bytes = BODY, seed: bytes = SEED, method: str = "POST",
           path: str = PATH) -> dict[str, str]:
    return httpsig.sign_request(seed, "till-1", method, path, body, created)


def check(headers: dict[str, str], now_s: int = NOW_S, body: bytes = BODY, method: str = "POST",
          path: str = PATH, public_key: bytes = PUBLIC_KEY) -> None:
    parsed = httpsig.parse(headers["Signature-Input"], headers["Signature"])
    httpsig.verify(parsed, public_key, method, path, body, headers["Content-Digest"], now_s)


@pytest.mark.parametrize("offset_s", [-SKEW_S, -1, 0, 1, SKEW_S])
def test_created_within_60_seconds_either_side_verifies(offset_s: int) -> None:
    check(signed(NOW_S + offset_s))


@pytest.mark.parametrize("offset_s", [SKEW_S + 1, 3_600, 10**9])
def test_created_in_the_future_beyond_the_window_is_refused(offset_s: int) -> None:
    with pytest.raises(SignatureRejected, match="not within 60s"):
        check(signed(NOW_S + offset_s))


@pytest.mark.parametrize("offset_s", [SKEW_S + 1, 86_400])
def test_created_in_the_past_beyond_the_window_is_refused(offset_s: int) -> None:
    with pytest.raises(SignatureRejected, match="not within 60s"):
        check(signed(NOW_S - offset_s))


def test_the_window_constant_is_the_documented_one() -> None:
    assert httpsig.CREATED_SKEW_S_MAX == SKEW_S


def test_the_signature_base_is_the_rfc_9421_text() -> None:
    params = httpsig.signature_params("till-1", 1_767_225_600, NONCE)
    assert params == ('("@method" "@path" "content-digest");created=1767225600;'
                      f'nonce="{NONCE}";keyid="till-1";alg="ed25519"')
    keyed = httpsig.signature_params("till-1", 1_767_225_600, NONCE, with_idempotency_key=True)
    assert keyed.startswith('("@method" "@path" "content-digest" "idempotency-key");')
    assert httpsig.content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    assert httpsig.signature_base("post", PATH, "sha-256=:x:", params) == (
        b'"@method": POST\n"@path": /v1/stores/s1/payments\n"content-digest": sha-256=:x:\n'
        b'"@signature-params": ' + params.encode())
    headers = httpsig.sign_request(SEED, "till-1", "POST", PATH, BODY, NOW_S, nonce=NONCE)
    assert headers["Signature-Input"] == "sig1=" + params
    signature = base64.b64decode(headers["Signature"][len("sig1=:"):-1])
    base = httpsig.signature_base("POST", PATH, httpsig.content_digest(BODY), params)
    assert _core.ed25519_verify_batch([PUBLIC_KEY], [base], [signature]) == [True]


def test_a_changed_body_method_path_or_key_does_not_verify() -> None:
    headers = signed(NOW_S)
    with pytest.raises(SignatureRejected, match="Content-Digest"):
        check(headers, body=b'{"amount_minor": 1701}')
    for changed in ({"method": "PUT"}, {"path": "/v1/stores/s2/payments"},
                    {"public_key": _core.ed25519_public_key(bytes(32))}):
        with pytest.raises(SignatureRejected, match="does not verify"):
            check(headers, **changed)  # type: ignore[arg-type]
    # A digest header that matches another body than the one signed.
    other = signed(NOW_S, body=b"{}")
    with pytest.raises(SignatureRejected, match="does not verify"):
        check({**headers, "Content-Digest": other["Content-Digest"]}, body=b"{}")


@pytest.mark.parametrize(("signature_input", "signature", "message"), [
    (f'sig1=("@method" "@path");created=1;nonce="{NONCE}";keyid="t";alg="ed25519"', None, "exactly"),
    (f'sig1=("@path" "@method" "content-digest");created=1;nonce="{NONCE}";keyid="t";alg="ed25519"', None, "exactly"),
    (f'sig1=("@method" "@path" "content-digest" "@query");created=1;nonce="{NONCE}";keyid="t";alg="ed25519"', None, "exactly"),
    ('sig1=("@method" "@path" "content-digest");keyid="t";created=1;alg="ed25519"', None, "expected"),
    ('sig1=("@method" "@path" "content-digest");created=1;keyid="t";alg="rsa"', None, "expected"),
    ('sig2=("@method" "@path" "content-digest");created=1;keyid="t";alg="ed25519"', None, "expected"),
    (f'sig1=("@method" "@path" "content-digest");created=1;nonce="{NONCE}";keyid="t";alg="ed25519"',
     "sig1=:AAAA:", "64 bytes"),
    ('sig1=("@method" "@path" "content-digest");created=1;keyid="t";alg="ed25519"', None, "expected"),
    ('sig1=("@method" "@path" "content-digest");created=1;nonce="x";keyid="t";alg="ed25519"', None, "expected"),
    ("x" * 1025, None, "too long"),
])
def test_malformed_signature_headers_are_refused(signature_input: str, signature: str | None, message: str) -> None:
    good = signed(NOW_S)["Signature"]
    with pytest.raises(SignatureRejected, match=message):
        httpsig.parse(signature_input, signature or good)
    with pytest.raises(SignatureRejected, match="too long"):
        httpsig.parse(signed(NOW_S)["Signature-Input"], "sig1=:" + "A" * 1025 + ":")


def test_any_label_works_when_both_headers_use_it() -> None:
    headers = signed(NOW_S)
    relabelled = {**headers, "Signature-Input": headers["Signature-Input"].replace("sig1=", "till_a=", 1),
                  "Signature": headers["Signature"].replace("sig1=", "till_a=", 1)}
    check(relabelled)
    parsed = httpsig.parse(relabelled["Signature-Input"], relabelled["Signature"])
    assert (parsed.keyid, parsed.created) == ("till-1", NOW_S)
    assert parsed.params == headers["Signature-Input"][len("sig1="):]


def test_each_refusal_says_which_rule_failed() -> None:
    """The text is the 401 problem's `detail`: it names the rule the request broke."""
    headers = signed(NOW_S)

    def refusal(**changed: object) -> str:
        merged = {**headers, **{k: v for k, v in changed.items() if k in headers}}
        try:
            check(merged, **{k: v for k, v in changed.items() if k not in headers})  # type: ignore[arg-type]
        except SignatureRejected as rejected:
            return str(rejected)
        raise AssertionError("accepted")

    assert refusal(now_s=NOW_S + 61) == f"signature created {NOW_S} is not within 60s of now"
    assert refusal(body=b"{}") == "Content-Digest does not match the body"
    assert refusal(method="PUT") == "the signature does not verify with the terminal's key"
    assert refusal(**{"Signature-Input": "x" * 1025}) == "signature headers too long"
    assert refusal(**{"Signature": "sig1=:AAAA:"}) == "an Ed25519 signature is 64 bytes"
    assert refusal(**{"Signature-Input": headers["Signature-Input"].replace(' "@path"', "")}) == (
        'the signature must cover exactly ("@method" "@path" "content-digest"), '
        'then "idempotency-key" when that header is sent')
    assert refusal(**{"Signature-Input": "x"}) == (
        'expected Signature-Input: sig1=("@method" "@path" "content-digest" ["idempotency-key"]);'
        'created=...;nonce="<uuid>";keyid="...";alg="ed25519" and a matching Signature')


@pytest.mark.parametrize("header", ["Signature-Input", "Signature"])
def test_headers_of_exactly_1024_bytes_are_read(header: str) -> None:
    headers = signed(NOW_S)
    padded = {**headers, header: headers[header] + " " * (1024 - len(headers[header]))}
    assert len(padded[header]) == 1024
    check(padded)  # trailing whitespace is stripped; only longer headers are refused unread
    with pytest.raises(SignatureRejected, match="too long"):
        check({**headers, header: padded[header] + " "})
