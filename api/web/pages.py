"""The page framework: a nav entry + a route + a template per page, all behind the staff session.

Add a page (an order board, an apps page) in three steps:

1. a template `api/web/templates/<slug>.html` that `{% extends "base.html" %}` and fills
   `{% block content %}` (it gets `store`, `t` for labels, `csrf_token`, `money`, and
   whatever the view returns);
2. a view in api/web/views.py (or your own module imported by api/web/__init__.py):

       @page("orders", "Orders board", ORDERS_READ)
       async def orders(ctx: PageContext) -> dict[str, Any]:
           return {"orders": await ctx.api(f"/v1/stores/{ctx.store_id}/orders")}

3. the label's Chinese in api/web/i18n.py `ZH` (optional: English shows otherwise).

`@page` registers the nav entry (shown to those holding the capability) and the
route `GET /stores/{store_id}/<slug>`, which redirects to /login without a
session and answers an HTML 403 for another store or a missing capability.
Data comes from the JSON API, called in-process with the visitor's own session
(`ctx.api`), so a page never sees more than its visitor may.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup

from api.auth import Principal, check
from api.web.i18n import language, translator
from api.web.session import SESSION_COOKIE, current_session, principal_of
from pos_ledger import money
from pos_ledger.errors import Forbidden
from pos_ledger.staff import Session

TEMPLATES: Final = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
STATIC_DIR: Final = Path(__file__).parent / "static"
#: Bytes of JSON a page accepts from one in-process API call (reports are small).
API_RESPONSE_BYTES_MAX: Final = 4 << 20


def format_money(amount_minor: int | None, code: str) -> str:
    if amount_minor is None:
        return "–"
    try:
        return money.format_minor(int(amount_minor), code)
    except Exception:
        return str(amount_minor)


TEMPLATES.env.globals["money"] = format_money
TEMPLATES.env.filters["tojson_attr"] = lambda value: json.dumps(value, ensure_ascii=False)


@pass_context
def csrf_field_for_get(context: Any) -> Markup:
    """Every form carries the session's CSRF token; a GET (filter) form's copy is disabled, so it is never
    sent and never lands in a URL, a log or a Referer."""
    token = context.get("csrf_token", "")
    return Markup('<input type="hidden" name="csrf_token" value="{}" disabled>').format(token)


TEMPLATES.env.globals["csrf_field_for_get"] = csrf_field_for_get


@dataclass(frozen=True, slots=True)
class Page:
    slug: str
    #: The English label (the key of api/web/i18n.py).
    title: str
    #: What the visitor must hold to see the page (and its nav entry).
    capability: str


#: The nav, in order. `@page` appends.
NAV: list[Page] = []
router = APIRouter(include_in_schema=False)


@dataclass(slots=True)
class PageContext:
    request: Request
    store_id: str
    session: Session
    principal: Principal
    lang: str
    store: dict[str, Any] = field(default_factory=dict)

    def t(self, text: str, **values: object) -> str:
        return translator(self.lang)(text, **values)

    @property
    def currency(self) -> str:
        return str(self.store.get("currency", "CNY"))

    async def api(self, path: str, **params: object) -> Any:
        """GET a JSON route in-process as the visitor; None when it is not there (404 route) or fails."""
        status, body = await self.api_status(path, **params)
        return body if status == 200 else None

    async def api_status(self, path: str, **params: object) -> tuple[int, Any]:
        query = {k: str(v) for k, v in params.items() if v is not None}
        token = self.request.cookies.get(SESSION_COOKIE, "")
        transport = httpx.ASGITransport(app=self.request.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://backoffice.internal") as client:
            response = await client.get(path, params=query, headers={"cookie": f"{SESSION_COOKIE}={token}"})
        if len(response.content) > API_RESPONSE_BYTES_MAX:
            return 413, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None


ViewFunction = Callable[[PageContext], Awaitable[dict[str, Any]]]


def render(request: Request, template: str, values: dict[str, Any], status_code: int = 200,
           lang: str | None = None) -> HTMLResponse:
    chosen = lang or language(request.headers.get("accept-language", ""))
    context = {"t": translator(chosen), "lang": chosen, "nav": [], **values}
    response = TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["cache-control"] = "no-store"
    response.headers["x-frame-options"] = "DENY"
    response.headers["referrer-policy"] = "same-origin"
    response.headers["content-security-policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'")
    return response


def nav_for(principal: Principal, store_id: str) -> list[Page]:
    return [p for p in NAV if principal.may(p.capability)
            and (principal.store_id is None or principal.store_id == store_id)]


def landing(session: Session) -> str:
    """Where a login lands: the store's first page the role may see (the dashboard for most)."""
    if session.store_id is None:
        return "/stores"
    pages = [p.slug for p in nav_for(principal_of(session), session.store_id)]
    # An auditor reads the log, not the shop's figures: straight to the audit trail.
    slug = "audit" if session.role == "auditor" and "audit" in pages else (pages[0] if pages else NAV[0].slug)
    return f"/stores/{quote(session.store_id)}/{slug}"


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def error_page(request: Request, status: int, message: str, ctx: PageContext | None = None) -> HTMLResponse:
    values: dict[str, Any] = {"status": status, "message": message}
    if ctx is not None:
        values.update(base_values(ctx, NAV[0]))
    return render(request, "error.html", values, status_code=status, lang=ctx.lang if ctx else None)


def base_values(ctx: PageContext, current: Page) -> dict[str, Any]:
    return {
        "store": ctx.store, "store_id": ctx.store_id, "session": ctx.session, "page": current,
        "nav": nav_for(ctx.principal, ctx.store_id), "csrf_token": ctx.session.csrf_token,
        "currency": ctx.currency, "role": ctx.session.role,
    }


def page(slug: str, title: str, capability: str) -> Callable[[ViewFunction], ViewFunction]:
    """Register a page: nav entry + `GET /stores/{store_id}/{slug}` rendering `{slug}.html`."""
    entry = Page(slug, title, capability)

    def register(view: ViewFunction) -> ViewFunction:
        NAV.append(entry)

        async def endpoint(request: Request, store_id: str) -> Response:
            session = await current_session(request)
            if session is None:
                return login_redirect(request)
            ctx = PageContext(request, store_id, session, principal_of(session),
                              language(request.headers.get("accept-language", "")))
            try:
                check(ctx.principal, capability, store_id)
            except Forbidden:
                return error_page(request, 403, ctx.t("You may not see this page."))
            status, store = await ctx.api_status(f"/v1/stores/{quote(store_id)}")
            if status != 200:
                return error_page(request, 404 if status == 404 else status, ctx.t("Page not found."))
            ctx.store = store
            values = await view(ctx)
            return render(request, f"{slug}.html", {**base_values(ctx, entry), **values}, lang=ctx.lang)

        endpoint.__name__ = f"page_{slug.replace('-', '_')}"
        router.add_api_route(f"/stores/{{store_id}}/{slug}", endpoint, methods=["GET"],
                             response_class=HTMLResponse, name=endpoint.__name__)
        return view

    return register
