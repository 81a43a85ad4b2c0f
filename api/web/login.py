"""`/` (to the back office), `/login`, `/logout` and the admin's store list: HTML, not JSON."""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.limits import BodyTooLarge
from api.web.i18n import language, translator
from api.web.pages import error_page, landing, login_redirect, render
from api.web.session import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CsrfRejected,
    check_csrf,
    current_session,
    is_https,
    read_form,
    same_origin,
    staff_service,
)
from pos_ledger.errors import InvalidInput, Unauthorized
from pos_ledger.staff import SESSION_TTL_S, LoginThrottled, StoreRequired

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_TTL_S: Final = 3600


def _safe_next(target: str) -> str:
    """Only a path on this server (no scheme, no //host): an open redirect otherwise."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and len(target) < 2000:
        return target
    return ""


@router.get("/", response_class=HTMLResponse)
async def root(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(landing(session), status_code=303)


def _login_page(request: Request, error: str = "", status: int = 200, username: str = "",
                next_path: str = "", store: str = "", ask_store: bool = False) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "login.html", {"error": error, "csrf_token": token, "username": username,
                                              "next": next_path, "store": store,
                                              "ask_store": ask_store or bool(store)}, status_code=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=LOGIN_CSRF_TTL_S, httponly=True, samesite="lax",
                        secure=is_https(request), path="/login")
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "") -> Response:
    session = await current_session(request)
    if session is not None:
        return RedirectResponse(_safe_next(next) or landing(session), status_code=303)
    return _login_page(request, next_path=_safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    t = translator(language(request.headers.get("accept-language", "")))
    try:
        form = await read_form(request)
    except (BodyTooLarge, InvalidInput) as error:
        return _login_page(request, error.detail, error.status)
    username, password = form.get("username", ""), form.get("password", "")
    store = form.get("store", "").strip()[:64]
    next_path = _safe_next(form.get("next", ""))
    supplied = form.get(CSRF_FIELD)
    # The form's token is checked against its cookie when a browser sent both; a cross-site
    # browser POST carries a foreign Origin and is refused either way.
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not same_origin(request) or (supplied is not None and (not expected or
                                                              not secrets.compare_digest(supplied, expected))):
        return _login_page(request, t("The form expired; please try again."), 403, username, next_path, store)
    address = request.client.host if request.client else "unknown"
    service = staff_service(request)
    admin_token = request.app.state.settings.admin_token
    try:
        opened = await run_in_threadpool(service.login, username, password, address, admin_token, None, store)
    except StoreRequired:
        return _login_page(request, t("This username is in several stores: which store?"), 409, username,
                           next_path, store, ask_store=True)
    except LoginThrottled as throttled:
        seconds = int(throttled.extensions.get("retry_after_s", 60))  # type: ignore[call-overload]
        response = _login_page(request, t("Too many failed logins. Try again in {seconds} s.", seconds=seconds),
                               429, username, next_path, store)
        response.headers["retry-after"] = str(seconds)
        return response
    except Unauthorized:
        return _login_page(request, t("Wrong username or password."), 401, username, next_path, store)
    response = RedirectResponse(next_path or landing(opened.session), status_code=303)
    response.set_cookie(SESSION_COOKIE, opened.token, max_age=SESSION_TTL_S, httponly=True, samesite="lax",
                        secure=is_https(request), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login", httponly=True, samesite="lax", secure=is_https(request))
    return response


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    try:
        form = await read_form(request)
        # Like the login form: a browser's cross-site POST (foreign Origin) is refused, and the form's
        # token must match when sent; a script without either may end its own session.
        if CSRF_FIELD in form or not same_origin(request):
            check_csrf(request, session, form.get(CSRF_FIELD, ""))
    except (BodyTooLarge, InvalidInput, CsrfRejected) as error:
        return error_page(request, error.status, error.detail)
    await run_in_threadpool(staff_service(request).logout, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request))
    return response


@router.get("/stores", response_class=HTMLResponse)
async def stores(request: Request) -> Response:
    """The admin's store picker; a staff member goes straight to their store."""
    session = await current_session(request)
    if session is None:
        return login_redirect(request)
    if session.store_id is not None:
        return RedirectResponse(landing(session), status_code=303)
    ledger = request.app.state.ledger
    store_ids = await run_in_threadpool(ledger.store_ids)
    return render(request, "stores.html", {"store_ids": store_ids, "quote": quote, "session": session,
                                           "csrf_token": session.csrf_token})
