"""Who is calling, and what they may do.

Every route of a store names the capability it needs (`allow(PAYMENTS_WRITE)`); the
request resolves one `Principal` through the authenticators that `create_app`
assembles, in order (`app.state.authenticators`): the admin token, a terminal's
RFC 9421 signature, and the other credential kinds as they are wired in
(back-office staff sessions, apps' OAuth2 tokens). An authenticator answers
None when the request does not carry its kind of credential, a Principal when it
does and it is valid, and raises Unauthorized when it is its kind but invalid.

A principal is bound to one store (`store_id`), except the admin token (every
store). The first ten capability names are the open platform's OAuth2 scopes.

A terminal signs with RFC 9421 HTTP Message Signatures (`pos_ledger.httpsig`):
keyid = its terminal id in the store named by the path, verified with its
registered (not revoked) Ed25519 key, and a nonce it never sent before
(`api.nonces`): a replayed command is 401 `replayed` and runs no second time. The terminal is then the cashier's till:
cash goes into its drawer. Other principals may name the till (`terminal_id`).
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from api.deps import get_ledger, get_settings
from api.nonces import NonceTable
from api.settings import Settings
from pos_ledger import httpsig
from pos_ledger.errors import Forbidden, PosLedgerError, Unauthorized
from pos_ledger.ledger import Ledger
from pos_ledger.values import IDENTIFIER_CHARACTERS

# ---- capabilities ----

ORDERS_READ: Final = "orders:read"
ORDERS_WRITE: Final = "orders:write"
PAYMENTS_READ: Final = "payments:read"
PAYMENTS_WRITE: Final = "payments:write"
MEMBERS_READ: Final = "members:read"
MEMBERS_WRITE: Final = "members:write"
COUPONS_READ: Final = "coupons:read"
COUPONS_WRITE: Final = "coupons:write"
REPORTS_READ: Final = "reports:read"
EVENTS_READ: Final = "events:read"
#: The scopes an app may be granted (RFC 6749 scope tokens), in the order documents list them.
APP_SCOPES: Final = (
    ORDERS_READ, ORDERS_WRITE, PAYMENTS_READ, PAYMENTS_WRITE, MEMBERS_READ, MEMBERS_WRITE,
    COUPONS_READ, COUPONS_WRITE, REPORTS_READ, EVENTS_READ,
)
#: The store's name, currency, time zone and menu: every principal of the store may read them.
STORE_READ: Final = "store:read"
#: Open, move cash in and close a till's shift.
SHIFTS_WRITE: Final = "shifts:write"
#: Back-office configuration: menu, member program, campaigns, coupon voids, conflicts.
MANAGE: Final = "store:manage"
#: The owner's own: settings, staff, apps, terminals, erasing personal data.
OWN: Final = "store:own"
#: The auditor's: checkpoints and exports.
AUDIT_READ: Final = "audit:read"
#: Unmasked personal data (members' phones).
PERSONAL_DATA_READ: Final = "personal_data:read"

STORE_CAPABILITIES: Final = frozenset(
    {*APP_SCOPES, STORE_READ, SHIFTS_WRITE, MANAGE, OWN, AUDIT_READ, PERSONAL_DATA_READ}
)
_READS: Final = frozenset({STORE_READ, ORDERS_READ, PAYMENTS_READ, MEMBERS_READ, COUPONS_READ, REPORTS_READ})
#: Back-office roles; an auditor reads the log and its proofs and nothing else.
ROLE_CAPABILITIES: Final[dict[str, frozenset[str]]] = {
    "owner": STORE_CAPABILITIES,
    "manager": STORE_CAPABILITIES - {OWN},
    "viewer": _READS,
    "auditor": frozenset({STORE_READ, EVENTS_READ, AUDIT_READ}),
}
ROLES: Final = tuple(ROLE_CAPABILITIES)
#: A till: the cashier's commands and the reads a till (and its printer bridge) needs.
TERMINAL_CAPABILITIES: Final = frozenset(
    {*_READS, ORDERS_WRITE, PAYMENTS_WRITE, MEMBERS_WRITE, COUPONS_WRITE, EVENTS_READ, SHIFTS_WRITE}
)

PrincipalKind = Literal["admin", "staff", "terminal", "app"]


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    #: The admin token's id is "admin", a staff member's their username, a terminal's its id, an app's its id.
    subject: str
    #: The one store this credential acts for; None for the admin token (every store).
    store_id: str | None
    capabilities: frozenset[str] = field(default_factory=frozenset)
    #: A staff member's role.
    role: str | None = None

    @property
    def terminal_id(self) -> str | None:
        """The terminal that signed the request, if one did."""
        return self.subject if self.kind == "terminal" else None

    @property
    def via(self) -> str:
        return self.kind

    def may(self, capability: str) -> bool:
        return capability in self.capabilities

    def till(self, named: str | None) -> str | None:
        """The terminal whose drawer a command uses: a terminal may only name itself."""
        if self.terminal_id is not None and named is not None and named != self.terminal_id:
            raise Forbidden(f"terminal {self.terminal_id!r} cannot act for terminal {named!r}")
        return self.terminal_id or named


#: Kept for the routes written before other principals existed.
Cashier = Principal


class InsufficientScope(Forbidden):
    """The credential is valid for this store but lacks the capability (RFC 6750 `insufficient_scope`)."""

    slug = "insufficient_scope"


Authenticator = Callable[[Request], Awaitable[Principal | None]]


# ---- authenticators ----

async def admin_token(request: Request) -> Principal | None:
    settings: Settings = request.app.state.settings
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), settings.admin_token.encode()):
        return Principal("admin", "admin", None, STORE_CAPABILITIES)
    return None


async def terminal_signature(request: Request) -> Principal | None:
    if "signature-input" not in request.headers:
        return None
    store_id = request.path_params.get("store_id", "")
    outcome = request.scope.get("state", {}).get(_SIGNATURE_OUTCOME)
    if outcome is None:  # not checked yet (the idempotency middleware checks POSTs with a key)
        body = await request.body()
        outcome = await run_in_threadpool(
            _signature_outcome, request.app.state.ledger, request.app.state.nonces, request.scope, store_id,
            dict(request.headers), body)
    if isinstance(outcome, PosLedgerError):
        raise outcome
    return Principal("terminal", outcome, store_id, TERMINAL_CAPABILITIES)


DEFAULT_AUTHENTICATORS: Final[tuple[Authenticator, ...]] = (admin_token, terminal_signature)


async def authenticate(request: Request) -> Principal:
    """The caller, through the app's authenticators in order; Unauthorized when none accepts."""
    authenticators: Sequence[Authenticator] = getattr(
        request.app.state, "authenticators", DEFAULT_AUTHENTICATORS)
    for authenticator in authenticators:
        principal = await authenticator(request)
        if principal is not None:
            return principal
    if request.headers.get("authorization"):
        raise Unauthorized("the bearer token is not valid")
    raise Unauthorized("this call needs a credential: 'Authorization: Bearer <token>', a back-office "
                       "session, or a terminal's RFC 9421 signature (Signature-Input, Signature, "
                       "Content-Digest)")


class Allow:
    """A route dependency: the caller must hold `capability` for the store in the path."""

    def __init__(self, capability: str) -> None:
        self.capability = capability

    async def __call__(self, request: Request) -> Principal:
        principal = await authenticate(request)
        check(principal, self.capability, request.path_params.get("store_id"))
        return principal


def check(principal: Principal, capability: str, store_id: str | None) -> None:
    """Forbidden unless the principal acts for `store_id` (when given) and holds `capability`."""
    if principal.store_id is not None and store_id is not None and store_id != principal.store_id:
        raise Forbidden(f"this credential is for store {principal.store_id!r}, not {store_id!r}")
    if principal.store_id is not None and store_id is None and principal.kind != "admin":
        raise Forbidden("only the admin token may do this")
    if not principal.may(capability):
        if principal.kind == "app":
            raise InsufficientScope(f"the token lacks the scope {capability!r}", error="insufficient_scope",
                                    scope=capability)
        raise Forbidden(f"a {principal.role or principal.kind} may not do this (needs {capability!r})")


def allow(capability: str) -> Any:
    """`principal: Annotated[Principal, allow(PAYMENTS_WRITE)]`"""
    return Depends(Allow(capability))


#: The admin token only (creating stores and registering apps: nothing bound to one store).
async def require_admin(request: Request) -> Principal:
    principal = await authenticate(request)
    if principal.kind != "admin":
        raise Forbidden("only the admin token may do this")
    return principal


async def require_cashier(request: Request, settings: Annotated[Settings, Depends(get_settings)],
                          ledger: Annotated[Ledger, Depends(get_ledger)]) -> Principal:
    """The cashier's commands (kept for compatibility): admin, or a signing terminal of the store."""
    principal = await authenticate(request)
    check(principal, PAYMENTS_WRITE, request.path_params.get("store_id"))
    return principal


class SignatureReplayed(Unauthorized):
    """The terminal sent this signature's nonce before: a replayed command, not run again."""

    slug = "replayed"


#: Where the first check of a request's terminal signature leaves its outcome (in the request's
#: scope state), so the idempotency middleware and the route's authenticator consume the nonce once.
_SIGNATURE_OUTCOME: Final = "pos_ledger.terminal_signature"


def signed_by(ledger: Ledger, nonces: NonceTable, store_id: str, method: str, path: str,
              headers: dict[str, str], body: bytes) -> str:
    """The terminal id whose RFC 9421 signature over this request verifies, its nonce now used;
    Unauthorized otherwise (SignatureReplayed for a nonce used before)."""
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
                       int(time.time()), lower.get("idempotency-key"))
    except httpsig.SignatureRejected as rejected:
        raise Unauthorized(str(rejected)) from None
    # Only a signature that verifies spends its nonce: nobody burns a terminal's nonces by guessing.
    if not nonces.first_use(store_id, parsed.keyid, parsed.nonce, parsed.created):
        raise SignatureReplayed(f"terminal {parsed.keyid!r} already sent nonce {parsed.nonce}: a request is "
                                "signed afresh (new nonce) for every attempt")
    return parsed.keyid


def _signature_outcome(ledger: Ledger, nonces: NonceTable, scope: MutableMapping[str, Any], store_id: str,
                       headers: dict[str, str], body: bytes) -> str | PosLedgerError:
    """The signing terminal's id, or the error, checked once per request and kept in its scope."""
    state = scope.setdefault("state", {})
    outcome: str | PosLedgerError | None = state.get(_SIGNATURE_OUTCOME)
    if outcome is None:
        try:
            outcome = signed_by(ledger, nonces, store_id, scope["method"], scope["path"], headers, body)
        except PosLedgerError as error:
            outcome = error
        state[_SIGNATURE_OUTCOME] = outcome
    return outcome


_STORE_PATH: Final = re.compile(r"^/v1/stores/(" + IDENTIFIER_CHARACTERS + r"{1,64})(/|$)")


def signed_caller(ledger: Ledger, nonces: NonceTable, scope: MutableMapping[str, Any], headers: dict[str, str],
                  body: bytes) -> str | None:
    """For the Idempotency-Key table: "terminal:{store}:{id}" when a terminal's signature verifies, else None
    (the route then answers the same error: the outcome is kept in the request's scope)."""
    found = _STORE_PATH.match(scope["path"])
    if found is None:
        return None
    outcome = _signature_outcome(ledger, nonces, scope, found.group(1), headers, body)
    return None if isinstance(outcome, PosLedgerError) else f"terminal:{found.group(1)}:{outcome}"


CashierDep = Annotated[Principal, Depends(require_cashier)]
AdminOnlyDep = Annotated[Principal, Depends(require_admin)]
