"""Cashier authentication: the back-office bearer token, or a request signed by a registered terminal.

A terminal signs with RFC 9421 HTTP Message Signatures (`pos_ledger.httpsig`):
keyid = its terminal id in the store named by the path, verified with its
registered (not revoked) Ed25519 key. The terminal is then the cashier's till:
cash goes into its drawer. With the bearer token the request may name the till
(`terminal_id` in the body).
"""

from __future__ import annotations

import hmac
import re
import time
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import Depends, Request

from api.deps import get_ledger, get_settings
from api.settings import Settings
from pos_ledger import httpsig
from pos_ledger.errors import Forbidden, PosLedgerError, Unauthorized
from pos_ledger.ledger import Ledger


@dataclass(frozen=True, slots=True)
class Cashier:
    #: The terminal that signed the request; None for the back-office token.
    terminal_id: str | None
    via: str

    def till(self, named: str | None) -> str | None:
        """The terminal whose drawer a command uses: a terminal may only name itself."""
        if self.terminal_id is not None and named is not None and named != self.terminal_id:
            raise Forbidden(f"terminal {self.terminal_id!r} cannot act for terminal {named!r}")
        return self.terminal_id or named


async def require_cashier(request: Request, settings: Annotated[Settings, Depends(get_settings)],
                          ledger: Annotated[Ledger, Depends(get_ledger)]) -> Cashier:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
            return Cashier(None, "admin")
        raise Unauthorized("the bearer token is not valid")
    body = await request.body()
    keyid = signed_by(ledger, request.path_params.get("store_id", ""), request.method, request.url.path,
                      dict(request.headers), body)
    return Cashier(keyid, "terminal")


def signed_by(ledger: Ledger, store_id: str, method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    """The terminal id whose RFC 9421 signature over this request verifies; Unauthorized otherwise."""
    lower = {k.lower(): v for k, v in headers.items()}
    signature_input, signature = lower.get("signature-input"), lower.get("signature")
    if not signature_input or not signature:
        raise Unauthorized("a cashier command needs 'Authorization: Bearer <admin token>' or a terminal's "
                           "RFC 9421 signature (Signature-Input, Signature, Content-Digest)")
    try:
        parsed = httpsig.parse(signature_input, signature)
        terminal = ledger.store(store_id).terminals.get(parsed.keyid)
        if terminal is None or terminal.revoked:
            raise httpsig.SignatureRejected(f"no active terminal {parsed.keyid!r} in store {store_id!r}")
        httpsig.verify(parsed, terminal.public_key, method, path, body, lower.get("content-digest", ""),
                       int(time.time()))
    except httpsig.SignatureRejected as rejected:
        raise Unauthorized(str(rejected)) from None
    return parsed.keyid


_STORE_PATH: Final = re.compile(r"^/v1/stores/([A-Za-z0-9_.:-]{1,64})(/|$)")


def signed_caller(ledger: Ledger, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
    """For the Idempotency-Key table: "terminal:{store}:{id}" when a terminal's signature verifies, else None."""
    found = _STORE_PATH.match(path)
    if found is None:
        return None
    try:
        return f"terminal:{found.group(1)}:{signed_by(ledger, found.group(1), method, path, headers, body)}"
    except PosLedgerError:
        return None


CashierDep = Annotated[Cashier, Depends(require_cashier)]
