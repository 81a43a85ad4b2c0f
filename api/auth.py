"""Cashier authentication: the back-office bearer token, or a request signed by a registered terminal.

A terminal signs with RFC 9421 HTTP Message Signatures (`pos_ledger.httpsig`):
keyid = its terminal id in the store named by the path, verified with its
registered (not revoked) Ed25519 key. The terminal is then the cashier's till:
cash goes into its drawer. With the bearer token the request may name the till
(`terminal_id` in the body).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.deps import get_ledger, get_settings
from api.settings import Settings
from pos_ledger import httpsig
from pos_ledger.errors import Forbidden, Unauthorized
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
    signature_input = request.headers.get("signature-input")
    signature = request.headers.get("signature")
    if not signature_input or not signature:
        raise Unauthorized("a cashier command needs 'Authorization: Bearer <admin token>' or a terminal's "
                           "RFC 9421 signature (Signature-Input, Signature, Content-Digest)")
    try:
        parsed = httpsig.parse(signature_input, signature)
        store_id = request.path_params.get("store_id", "")
        terminal = ledger.store(store_id).terminals.get(parsed.keyid)
        if terminal is None or terminal.revoked:
            raise httpsig.SignatureRejected(f"no active terminal {parsed.keyid!r} in store {store_id!r}")
        body = await request.body()
        httpsig.verify(parsed, terminal.public_key, request.method, request.url.path, body,
                       request.headers.get("content-digest", ""), int(time.time()))
    except httpsig.SignatureRejected as rejected:
        raise Unauthorized(str(rejected)) from None
    return Cashier(parsed.keyid, "terminal")


CashierDep = Annotated[Cashier, Depends(require_cashier)]
