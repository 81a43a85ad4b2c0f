"""A slow or failing provider is contained: bounded concurrency and a circuit breaker, per provider.

Provider calls are blocking HTTP calls that run on the server's worker threads.
Without a bound, 200 payments waiting on a slow provider took every worker and
stalled every other request (reads, other stores' sales, `/healthz`). So:

* at most `concurrency_max` requests deal with the provider at once (the whole
  exchange: charge, then the queries after a timeout); one more is refused at
  once, never queued (a queue would hold a worker too): 503 `provider-busy`;
* after `failures_to_open` consecutive timeouts or unreachable answers the
  circuit opens: for `open_s` seconds every provider request fails fast with 503
  `provider-unavailable`, nothing written; then calls go through again, and the
  first answer closes it (a failure opens it again);
* each call has the provider client's own timeout (`AggregatorProvider.timeout_s`).

Reads of a pending payment do not need the provider: when it is busy or the
circuit is open they answer what the log says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from pos_ledger.payments.provider import (
    Notification,
    PaymentProvider,
    ProviderResult,
    ProviderTimeout,
    ProviderUnavailable,
    RefundResult,
)

CONCURRENCY_MAX_DEFAULT: Final = 8
FAILURES_TO_OPEN_DEFAULT: Final = 5
OPEN_S_DEFAULT: Final = 30.0


class ProviderBusy(ProviderUnavailable):
    """Too many requests are waiting on the provider already; retry shortly."""

    slug = "provider-busy"


class ProviderCircuitOpen(ProviderUnavailable):
    """The provider kept timing out: requests fail fast until it is tried again."""


class ProviderGuard:
    def __init__(self, concurrency_max: int = CONCURRENCY_MAX_DEFAULT,
                 failures_to_open: int = FAILURES_TO_OPEN_DEFAULT, open_s: float = OPEN_S_DEFAULT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if concurrency_max < 1 or failures_to_open < 1 or open_s < 0:
            raise ValueError("concurrency_max and failures_to_open must be >= 1, open_s >= 0")
        self.concurrency_max = concurrency_max
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self._clock = clock
        self._slots = threading.BoundedSemaphore(concurrency_max)
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._clock() < self._open_until

    @contextmanager
    def admit(self) -> Iterator[None]:
        """One request's exchange with the provider; ProviderCircuitOpen or ProviderBusy at once if not."""
        if self.is_open:
            raise ProviderCircuitOpen("the payment provider keeps timing out; try again shortly")
        if not self._slots.acquire(blocking=False):
            raise ProviderBusy(f"{self.concurrency_max} requests are waiting on the payment provider already; "
                               "retry shortly")
        try:
            yield
        finally:
            self._slots.release()

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.failures_to_open:
                self._open_until = self._clock() + self.open_s


class GuardedProvider:
    """The provider with each call's outcome counted by the guard's circuit breaker."""

    def __init__(self, provider: PaymentProvider, guard: ProviderGuard) -> None:
        self.provider = provider
        self.guard = guard
        self.name = provider.name

    def _counted(self, call: Callable[[], ProviderResult]) -> ProviderResult:
        try:
            result = call()
        except (ProviderTimeout, ProviderUnavailable):
            self.guard.failed()
            raise
        self.guard.succeeded()
        return result

    def create_qr(self, *, payment_id: str, amount_minor: int, currency: str, description: str,
                  notify_url: str, channel: str | None) -> ProviderResult:
        return self._counted(lambda: self.provider.create_qr(
            payment_id=payment_id, amount_minor=amount_minor, currency=currency, description=description,
            notify_url=notify_url, channel=channel))

    def charge_code(self, *, payment_id: str, auth_code: str, channel: str, amount_minor: int,
                    currency: str, description: str, notify_url: str) -> ProviderResult:
        return self._counted(lambda: self.provider.charge_code(
            payment_id=payment_id, auth_code=auth_code, channel=channel, amount_minor=amount_minor,
            currency=currency, description=description, notify_url=notify_url))

    def query(self, payment_id: str) -> ProviderResult:
        return self._counted(lambda: self.provider.query(payment_id))

    def close_trade(self, payment_id: str) -> ProviderResult:
        return self._counted(lambda: self.provider.close_trade(payment_id))

    def refund(self, *, payment_id: str, refund_id: str, amount_minor: int, total_minor: int,
               currency: str, reason: str) -> RefundResult:
        try:
            result = self.provider.refund(payment_id=payment_id, refund_id=refund_id, amount_minor=amount_minor,
                                          total_minor=total_minor, currency=currency, reason=reason)
        except (ProviderTimeout, ProviderUnavailable):
            self.guard.failed()
            raise
        self.guard.succeeded()
        return result

    def verify_notification(self, headers: dict[str, str], body: bytes, now_s: int) -> Notification:
        return self.provider.verify_notification(headers, body, now_s)
