"""RFC 9421 HTTP Message Signatures, the subset a terminal uses to sign cashier commands.

A signed request carries
    Content-Digest: sha-256=:<base64 SHA-256 of the body>:          (RFC 9530)
    Signature-Input: sig1=("@method" "@path" "content-digest" "idempotency-key");created=<unix s>;nonce="<uuid>";keyid="<terminal id>";alg="ed25519"
    Signature: sig1=:<base64 Ed25519 signature of the signature base>:
(`"idempotency-key"` is listed, and signed, exactly when the request sends an
`Idempotency-Key` header) and the signature base is (RFC 9421 section 2.5),
lines joined by "\\n":
    "@method": POST
    "@path": /v1/stores/s1/payments
    "content-digest": sha-256=:...:
    "idempotency-key": k-1
    "@signature-params": ("@method" "@path" "content-digest" "idempotency-key");created=...;nonce="...";keyid="t1";alg="ed25519"
The server requires exactly these components, a `created` within
`CREATED_SKEW_S_MAX` of its clock (either side), a nonce (a UUID) it has not seen
from that terminal (the caller checks that: `SignatureInput.nonce`), and verifies
with the terminal's registered key. The old form without a nonce is refused.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Final

from pos_ledger import _core
from pos_ledger.values import IDENTIFIER_CHARACTERS

LABEL: Final = "sig1"
COMPONENTS: Final = ('"@method"', '"@path"', '"content-digest"')
IDEMPOTENCY_COMPONENT: Final = '"idempotency-key"'
#: `created` may be this far behind or ahead of the server's clock; a nonce is remembered as long.
CREATED_SKEW_S_MAX: Final = 60
HEADER_BYTES_MAX: Final = 1024
_INPUT: Final = re.compile(
    r'^(?P<label>[a-z][a-z0-9_-]{0,15})=\((?P<components>[^)]*)\);created=(?P<created>\d{1,12});'
    r'nonce="(?P<nonce>[0-9a-fA-F-]{32,36})";'
    r'keyid="(?P<keyid>' + IDENTIFIER_CHARACTERS + r'{1,64})";alg="ed25519"$')
_SIGNATURE: Final = re.compile(r"^(?P<label>[a-z][a-z0-9_-]{0,15})=:(?P<value>[A-Za-z0-9+/=]{1,200}):$")
#: Header values that may be signed: visible ASCII and spaces (what an Idempotency-Key may hold).
_FIELD_VALUE: Final = re.compile(r"^[\x20-\x7e]{0,1024}$")


class SignatureRejected(ValueError):
    """The request's signature headers are missing, malformed, stale or do not verify."""


@dataclass(frozen=True, slots=True)
class SignatureInput:
    keyid: str
    created: int
    #: The nonce in its canonical form (lower-case hyphenated UUID): the replay key.
    nonce: str
    params: str
    signature: bytes
    #: Whether the signature covers the `Idempotency-Key` header.
    covers_idempotency_key: bool


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _components(with_idempotency_key: bool) -> tuple[str, ...]:
    return (*COMPONENTS, IDEMPOTENCY_COMPONENT) if with_idempotency_key else COMPONENTS


def signature_params(keyid: str, created: int, nonce: str, with_idempotency_key: bool = False) -> str:
    return (f'({" ".join(_components(with_idempotency_key))});created={created};nonce="{nonce}";'
            f'keyid="{keyid}";alg="ed25519"')


def signature_base(method: str, path: str, digest: str, params: str, idempotency_key: str | None = None) -> bytes:
    key_line = "" if idempotency_key is None else f'"idempotency-key": {idempotency_key}\n'
    return (f'"@method": {method.upper()}\n"@path": {path}\n"content-digest": {digest}\n{key_line}'
            f'"@signature-params": {params}').encode()


def sign_request(seed: bytes, keyid: str, method: str, path: str, body: bytes, created: int,
                 nonce: str | None = None, idempotency_key: str | None = None) -> dict[str, str]:
    """The headers a terminal adds to a request: a fresh random nonce unless one is given, and the
    `Idempotency-Key` header itself (signed) when `idempotency_key` is given."""
    digest = content_digest(body)
    params = signature_params(keyid, created, nonce or str(uuid.uuid4()), idempotency_key is not None)
    signature = _core.ed25519_sign(seed, signature_base(method, path, digest, params, idempotency_key))
    headers = {"Content-Digest": digest, "Signature-Input": f"{LABEL}={params}",
               "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def _nonce(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise SignatureRejected("the nonce must be a UUID") from None


def parse(signature_input: str, signature: str) -> SignatureInput:
    if len(signature_input) > HEADER_BYTES_MAX or len(signature) > HEADER_BYTES_MAX:
        raise SignatureRejected("signature headers too long")
    found = _INPUT.match(signature_input.strip())
    value = _SIGNATURE.match(signature.strip())
    if found is None or value is None or found["label"] != value["label"]:
        raise SignatureRejected('expected Signature-Input: sig1=("@method" "@path" "content-digest" '
                                '["idempotency-key"]);created=...;nonce="<uuid>";keyid="...";alg="ed25519" '
                                'and a matching Signature')
    components = tuple(found["components"].split(" "))
    if components not in (_components(False), _components(True)):
        raise SignatureRejected('the signature must cover exactly ("@method" "@path" "content-digest"), '
                                'then "idempotency-key" when that header is sent')
    try:
        raw = base64.b64decode(value["value"], validate=True)
    except ValueError:  # binascii.Error: bad padding
        raise SignatureRejected("the signature is not base64") from None
    if len(raw) != 64:
        raise SignatureRejected("an Ed25519 signature is 64 bytes")
    params = signature_input.strip()[len(found["label"]) + 1:]
    return SignatureInput(found["keyid"], int(found["created"]), _nonce(found["nonce"]), params, raw,
                          len(components) == len(COMPONENTS) + 1)


def verify(parsed: SignatureInput, public_key: bytes, method: str, path: str, body: bytes,
           digest_header: str, now_s: int, idempotency_key: str | None = None) -> None:
    """Raises SignatureRejected unless the signature is fresh and verifies; the nonce is the caller's."""
    if abs(now_s - parsed.created) > CREATED_SKEW_S_MAX:
        raise SignatureRejected(f"signature created {parsed.created} is not within {CREATED_SKEW_S_MAX}s of now")
    if parsed.covers_idempotency_key != (idempotency_key is not None):
        raise SignatureRejected('the signature must cover "idempotency-key" exactly when the request sends '
                                'an Idempotency-Key header')
    if idempotency_key is not None and not _FIELD_VALUE.match(idempotency_key):
        raise SignatureRejected("the Idempotency-Key header cannot be signed")
    if digest_header.strip() != content_digest(body):
        raise SignatureRejected("Content-Digest does not match the body")
    base = signature_base(method, path, digest_header.strip(), parsed.params,
                          None if idempotency_key is None else idempotency_key.strip())
    if not _core.ed25519_verify_batch([public_key], [base], [parsed.signature])[0]:
        raise SignatureRejected("the signature does not verify with the terminal's key")
