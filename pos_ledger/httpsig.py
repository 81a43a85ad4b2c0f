"""RFC 9421 HTTP Message Signatures, the subset a terminal uses to sign cashier commands.

A signed request carries
    Content-Digest: sha-256=:<base64 SHA-256 of the body>:          (RFC 9530)
    Signature-Input: sig1=("@method" "@path" "content-digest");created=<unix s>;keyid="<terminal id>";alg="ed25519"
    Signature: sig1=:<base64 Ed25519 signature of the signature base>:
and the signature base is (RFC 9421 section 2.5), lines joined by "\\n":
    "@method": POST
    "@path": /v1/stores/s1/payments
    "content-digest": sha-256=:...:
    "@signature-params": ("@method" "@path" "content-digest");created=...;keyid="t1";alg="ed25519"
The server requires exactly these three components, a `created` within
`CREATED_SKEW_S_MAX` of its clock, and verifies with the terminal's registered key.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Final

from pos_ledger import _core

LABEL: Final = "sig1"
COMPONENTS: Final = ('"@method"', '"@path"', '"content-digest"')
CREATED_SKEW_S_MAX: Final = 300
HEADER_BYTES_MAX: Final = 1024
_INPUT: Final = re.compile(
    r'^(?P<label>[a-z][a-z0-9_-]{0,15})=\((?P<components>[^)]*)\);created=(?P<created>\d{1,12});'
    r'keyid="(?P<keyid>[A-Za-z0-9_.:-]{1,64})";alg="ed25519"$')
_SIGNATURE: Final = re.compile(r"^(?P<label>[a-z][a-z0-9_-]{0,15})=:(?P<value>[A-Za-z0-9+/=]{1,200}):$")


class SignatureRejected(ValueError):
    """The request's signature headers are missing, malformed, stale or do not verify."""


@dataclass(frozen=True, slots=True)
class SignatureInput:
    keyid: str
    created: int
    params: str
    signature: bytes


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def signature_params(keyid: str, created: int) -> str:
    return f'({" ".join(COMPONENTS)});created={created};keyid="{keyid}";alg="ed25519"'


def signature_base(method: str, path: str, digest: str, params: str) -> bytes:
    return (f'"@method": {method.upper()}\n"@path": {path}\n"content-digest": {digest}\n'
            f'"@signature-params": {params}').encode()


def sign_request(seed: bytes, keyid: str, method: str, path: str, body: bytes, created: int) -> dict[str, str]:
    """The three headers a terminal adds to a request."""
    digest = content_digest(body)
    params = signature_params(keyid, created)
    signature = _core.ed25519_sign(seed, signature_base(method, path, digest, params))
    return {"Content-Digest": digest, "Signature-Input": f"{LABEL}={params}",
            "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:"}


def parse(signature_input: str, signature: str) -> SignatureInput:
    if len(signature_input) > HEADER_BYTES_MAX or len(signature) > HEADER_BYTES_MAX:
        raise SignatureRejected("signature headers too long")
    found = _INPUT.match(signature_input.strip())
    value = _SIGNATURE.match(signature.strip())
    if found is None or value is None or found["label"] != value["label"]:
        raise SignatureRejected('expected Signature-Input: sig1=("@method" "@path" "content-digest");'
                                'created=...;keyid="...";alg="ed25519" and a matching Signature')
    if tuple(found["components"].split()) != COMPONENTS:
        raise SignatureRejected('the signature must cover exactly ("@method" "@path" "content-digest")')
    raw = base64.b64decode(value["value"])
    if len(raw) != 64:
        raise SignatureRejected("an Ed25519 signature is 64 bytes")
    params = signature_input.strip()[len(found["label"]) + 1:]
    return SignatureInput(found["keyid"], int(found["created"]), params, raw)


def verify(parsed: SignatureInput, public_key: bytes, method: str, path: str, body: bytes,
           digest_header: str, now_s: int) -> None:
    if abs(now_s - parsed.created) > CREATED_SKEW_S_MAX:
        raise SignatureRejected(f"signature created {parsed.created} is not within {CREATED_SKEW_S_MAX}s of now")
    if digest_header.strip() != content_digest(body):
        raise SignatureRejected("Content-Digest does not match the body")
    base = signature_base(method, path, digest_header.strip(), parsed.params)
    if not _core.ed25519_verify_batch([public_key], [base], [parsed.signature])[0]:
        raise SignatureRejected("the signature does not verify with the terminal's key")
