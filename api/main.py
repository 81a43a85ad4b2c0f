"""Wiring only: settings, the ledger, routers, error handlers."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import auth, errors, platform, web
from api.idempotency import IdempotencyMiddleware
from api.routes import conflicts, coupons, events, members, menu, orders, payments, shifts, staff, stores
from api.routes import projections as projections_routes
from api.routes import reports as report_routes
from api.settings import Settings
from api.streams import HEARTBEAT_S, Wakeups
from pos_ledger.ledger import Ledger
from pos_ledger.orders.service import Orders
from pos_ledger.payments.drawer import Shifts
from pos_ledger.payments.provider import PaymentProvider
from pos_ledger.payments.service import Payments
from projections.service import ProjectionService

#: How often placed orders are checked against their accept deadline (and once at start).
ORDERS_SCAN_INTERVAL_S = 1.0


async def expire_orders(orders: Orders, interval_s: float) -> None:
    """Cancel placed orders past their deadline: at start (a restart loses none) and then on a timer."""
    from starlette.concurrency import run_in_threadpool

    while True:
        try:
            await run_in_threadpool(orders.expire_due)
        except Exception:  # the next scan retries; an order is never cancelled twice (its rule)
            logging.getLogger("pos_ledger.orders").exception("accept-timeout scan failed")
        await asyncio.sleep(interval_s)


def create_app(settings: Settings | None = None, ledger: Ledger | None = None,
               provider: PaymentProvider | None = None, public_url: str = "",
               orders_scan_interval_s: float = ORDERS_SCAN_INTERVAL_S) -> FastAPI:
    """`provider` takes QR / payment-code payments; it calls back at `public_url` (this server's base URL)."""
    settings = settings or Settings.from_env()
    ledger = ledger or Ledger(settings.database, settings.server_seed)
    if settings.redis_url:
        from projections.fanout import RedisFanout

        ledger.listeners.append(RedisFanout(settings.redis_url))
    projection_service = ProjectionService(ledger, settings.database, settings.redis_url)
    wakeups = Wakeups()
    ledger.listeners.append(wakeups.notify)
    if settings.redis_url:
        wakeups.follow_redis(settings.redis_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        projection_service.start()
        expiry = asyncio.create_task(expire_orders(app.state.orders, orders_scan_interval_s))
        await platform.start(app)
        yield
        await platform.stop(app)
        expiry.cancel()
        wakeups.close()
        staff_table.close()
        projection_service.stop()
        ledger.close()

    app = FastAPI(title="pos-ledger", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.ledger = ledger
    app.state.payments = Payments(ledger, provider, public_url)
    app.state.shifts = Shifts(ledger)
    app.state.projections = projection_service
    app.state.orders = Orders(ledger, app.state.payments)
    app.state.wakeups = wakeups
    app.state.sse_heartbeat_s = HEARTBEAT_S
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
    app.include_router(report_routes.router)
    app.include_router(projections_routes.router)
    app.include_router(staff.router)
    app.include_router(orders.router)
    #: The back office in the browser: staff sessions (an authenticator), pages, /static.
    staff_table = web.install(app, ledger, settings.database)
    platform.wire(app, ledger, settings)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
