"""Staff sessions: the cookie, its authenticator, CSRF, and the small-body form reader.

The session cookie (`pos_session`) is HttpOnly, SameSite=Lax, Secure when the
request came over https, and names a server-side row (revocable). Every request
that changes state with the cookie must carry the session's CSRF token: the
`X-CSRF-Token` header for fetch() calls, the `csrf_token` field for HTML forms.
A browser's cross-site POST also carries an `Origin` that does not match: refused.
"""

from __future__ import annotations

import hmac
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from api.auth import ROLE_CAPABILITIES, STORE_CAPABILITIES, Principal
from api.limits import BodyTooLarge
from pos_ledger.errors import Forbidden, InvalidInput
from pos_ledger.staff import Session, StaffService

SESSION_COOKIE: Final = "pos_session"
#: The login form's double-submit cookie (there is no session yet to hold its token).
LOGIN_CSRF_COOKIE: Final = "pos_login_csrf"
CSRF_HEADER: Final = "x-csrf-token"
CSRF_FIELD: Final = "csrf_token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: Back-office forms are a few fields: anything bigger is refused before it is parsed.
FORM_BYTES_MAX: Final = 16 * 1024
FORM_FIELDS_MAX: Final = 200


class CsrfRejected(Forbidden):
    slug = "csrf-token-invalid"


def staff_service(request: Request) -> StaffService:
    service: StaffService = request.app.state.staff
    return service


def principal_of(session: Session) -> Principal:
    if session.store_id is None:
        return Principal("admin", "admin", None, STORE_CAPABILITIES)
    return Principal("staff", session.username, session.store_id, ROLE_CAPABILITIES[session.role],
                     role=session.role)


async def current_session(request: Request) -> Session | None:
    """The live session of the request's cookie (looked up once per request)."""
    if "session" in request.scope.get("state", {}):
        found: Session | None = request.state.session
        return found
    token = request.cookies.get(SESSION_COOKIE, "")
    session = None
    if token:
        admin_token = request.app.state.settings.admin_token
        session = await run_in_threadpool(staff_service(request).session, token, admin_token)
    request.state.session = session
    return session


def same_origin(request: Request) -> bool:
    """False when a browser says the request comes from another site (Origin, else Referer)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def check_csrf(request: Request, session: Session, supplied: str) -> None:
    if not same_origin(request):
        raise CsrfRejected("a state-changing request from another site is refused")
    if not supplied or not hmac.compare_digest(supplied.encode(), session.csrf_token.encode()):
        raise CsrfRejected(f"a back-office change needs the session's CSRF token ({CSRF_HEADER} header "
                           f"or {CSRF_FIELD} form field)")


async def staff_session(request: Request) -> Principal | None:
    """Authenticator: the session cookie; None when the request carries none (or a dead one)."""
    if not request.cookies.get(SESSION_COOKIE):
        return None
    session = await current_session(request)
    if session is None:
        return None
    if request.method not in SAFE_METHODS:
        check_csrf(request, session, request.headers.get(CSRF_HEADER, ""))
    return principal_of(session)


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form of at most FORM_BYTES_MAX bytes; 413 / 422 otherwise."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > FORM_BYTES_MAX):
        raise BodyTooLarge(f"a form is at most {FORM_BYTES_MAX} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES_MAX:
            raise BodyTooLarge(f"a form is at most {FORM_BYTES_MAX} bytes")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and media_type != "application/x-www-form-urlencoded":
        raise InvalidInput("send the form as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=FORM_FIELDS_MAX,
                          strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("the form is not valid urlencoded UTF-8") from None
    return dict(pairs)


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "")
    return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"
