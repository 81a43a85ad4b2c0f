"""Wiring only: settings, the ledger, routers, error handlers."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import auth, errors, platform
from api.idempotency import IdempotencyMiddleware
from api.routes import conflicts, coupons, events, members, menu, payments, shifts, stores
from api.settings import Settings
from pos_ledger.ledger import Ledger
from pos_ledger.payments.drawer import Shifts
from pos_ledger.payments.provider import PaymentProvider
from pos_ledger.payments.service import Payments


def create_app(settings: Settings | None = None, ledger: Ledger | None = None,
               provider: PaymentProvider | None = None, public_url: str = "") -> FastAPI:
    """`provider` takes QR / payment-code payments; it calls back at `public_url` (this server's base URL)."""
    settings = settings or Settings.from_env()
    ledger = ledger or Ledger(settings.database, settings.server_seed)
    if settings.redis_url:
        from projections.fanout import RedisFanout

        ledger.listeners.append(RedisFanout(settings.redis_url))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await platform.start(app)
        yield
        await platform.stop(app)
        ledger.close()

    app = FastAPI(title="pos-ledger", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.ledger = ledger
    app.state.payments = Payments(ledger, provider, public_url)
    app.state.shifts = Shifts(ledger)
    #: Who is calling, tried in order (api/auth.py): each credential kind is one entry.
    app.state.authenticators = [auth.admin_token, auth.terminal_signature]
    app.add_middleware(IdempotencyMiddleware, database=settings.database,
                       signed_caller=functools.partial(auth.signed_caller, ledger))
    errors.install(app)
    app.include_router(stores.router)
    app.include_router(events.router)
    app.include_router(menu.router)
    app.include_router(members.router)
    app.include_router(coupons.router)
    app.include_router(conflicts.router)
    app.include_router(payments.router)
    app.include_router(shifts.router)
    platform.wire(app, ledger, settings)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
