"""The back office in the browser: staff sessions, pages (Jinja2, server-rendered), static assets.

`install(app)` wires it into an app; api/main.py calls it. Adding a page is one
template, one route and a nav entry (see api/web/pages.py).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.web import login, pages, session
from api.web import views as _views  # noqa: F401  (importing it registers the pages)
from api.web import views_board as _views_board  # noqa: F401  (the order board, issue 13)
from api.web import views_platform as _views_platform  # noqa: F401  (the apps page, issue 15)
from pos_ledger.ledger import Ledger
from pos_ledger.staff import StaffService
from pos_ledger.staff_table import StaffTable


def install(app: FastAPI, ledger: Ledger, database: str) -> StaffTable:
    """Staff accounts and sessions, the session authenticator, the pages and /static; returns the table
    (close it at shutdown)."""
    table = StaffTable(database)
    app.state.staff = StaffService(table, ledger)
    app.state.authenticators.append(session.staff_session)
    app.include_router(login.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    return table
