"""The cashier's payment commands: load the store, ask the provider, append what happened.

Order of operations (why):

* Merchant-presented QR: the provider is asked first (opening a QR moves no money),
  then `payment.requested` is appended with the QR text the customer will scan:
  the provider's own code URL when it gives one (WeChat Pay Native), else our
  dynamic EMVCo payload. A refused QR is recorded as requested + failed.
* Customer-presented code: `payment.requested` is appended first (money may move
  the moment the provider is called), then captured / failed / left pending.
* A timeout decides nothing: the provider is queried (`QUERY_ATTEMPTS_MAX` times)
  and only its answer captures or fails the payment; without one the payment
  stays pending and the next read (or the provider's notification) decides.
* Captures race with notifications; whichever is appended second is refused by
  the rules (`payment_captured`) and read as "already done".
* A notification must verify (signature, key serial, timestamp window) or it
  captures nothing and is logged; a replayed nonce is acknowledged and ignored; a
  duplicate callback for a captured payment changes nothing.
* Every exchange with the provider is admitted by its guard (`guard.py`): a bounded
  number at once and a circuit breaker, so a slow provider holds a few workers, not all.
* Refunds of one payment are serialised in this process; the provider is
  idempotent on `out_refund_no` = our refund id, so a retry after any failure
  reuses the same id and cannot refund twice.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from pos_ledger.catalog.payments import Payment, Refund, check_refund, payments_of
from pos_ledger.errors import EventRefused, InvalidInput, NotFound, PosLedgerError
from pos_ledger.events import EventRejected
from pos_ledger.ledger import Ledger
from pos_ledger.payments.codes import city_of, emv_payload, route_auth_code
from pos_ledger.payments.guard import GuardedProvider, ProviderGuard
from pos_ledger.payments.provider import (
    NotificationForged,
    PaymentProvider,
    ProviderRefused,
    ProviderResult,
    ProviderTimeout,
    ProviderUnavailable,
)

log = logging.getLogger("pos_ledger.payments")

QUERY_ATTEMPTS_MAX: Final = 3
QUERY_INTERVAL_S: Final = 0.2
#: Notification nonces remembered to refuse replays (older ones fall outside the timestamp window).
NONCES_KEPT_MAX: Final = 100_000
PAYMENT_ID_PREFIX: Final = "pay"
#: Refunds of one payment are serialised by one of this many locks (bounded memory, whatever the payment count).
REFUND_LOCK_STRIPES: Final = 256


class PaymentNotFound(NotFound):
    slug = "payment-not-found"


class ProviderNotConfigured(PosLedgerError):
    slug = "provider-not-configured"
    status = 503


def new_payment_id() -> str:
    """23 characters: fits EMVCo's reference label (25) and WeChat's out_trade_no (32)."""
    return PAYMENT_ID_PREFIX + secrets.token_hex(10)


def _refused(rejected: EventRejected) -> EventRefused:
    return EventRefused(rejected.reason, rejected.detail)


class Payments:
    def __init__(self, ledger: Ledger, provider: PaymentProvider | None = None,
                 notify_base_url: str = "", query_interval_s: float = QUERY_INTERVAL_S,
                 guard: ProviderGuard | None = None) -> None:
        self.ledger = ledger
        self.provider = provider
        self.guard = guard or ProviderGuard()
        self.notify_base_url = notify_base_url.rstrip("/")
        self.query_interval_s = query_interval_s
        self._nonces: OrderedDict[str, int] = OrderedDict()
        self._nonces_lock = threading.Lock()
        self._refund_locks = [threading.Lock() for _ in range(REFUND_LOCK_STRIPES)]

    # ---- reads ----

    def payment(self, store_id: str, payment_id: str) -> Payment:
        payment = payments_of(self.ledger.store(store_id)).payments.get(payment_id)
        if payment is None:
            raise PaymentNotFound(f"no payment {payment_id!r} in store {store_id!r}")
        return payment

    def refresh(self, store_id: str, payment_id: str) -> Payment:
        """A pending provider payment asks the provider once; anything else is read as is."""
        payment = self.payment(store_id, payment_id)
        if payment.status == "pending" and payment.method in ("qr", "code") and self.provider is not None:
            try:
                with self.guard.admit():
                    result = self._provider().query(payment_id)
            except (ProviderTimeout, ProviderUnavailable) as error:  # busy or open too: the log's answer
                log.warning("query of %s failed: %s", payment_id, error)
                return payment
            self._settle(store_id, payment, result, "query")
        return self.payment(store_id, payment_id)

    def for_order(self, store_id: str, order_ref: str) -> list[Payment]:
        book = payments_of(self.ledger.store(store_id))
        return [book.payments[p] for p in book.by_order.get(order_ref, [])]

    def notify_url(self, store_id: str) -> str:
        return f"{self.notify_base_url}/v1/stores/{store_id}/psp/notifications"

    # ---- taking payment ----

    def create(self, store_id: str, *, amount_minor: int, currency: str, order_ref: str,
               auth_code: str | None = None, method: str | None = None, channel: str | None = None,
               terminal_id: str | None = None, tendered_minor: int | None = None) -> Payment:
        state = self.ledger.store(store_id)
        if terminal_id is not None and terminal_id not in state.terminals:
            raise InvalidInput(f"no terminal {terminal_id!r} in store {store_id!r}")
        payment_id = new_payment_id()
        request: dict[str, Any] = {"payment_id": payment_id, "order_ref": order_ref, "amount_minor": amount_minor,
                                   "currency": currency, "terminal_id": terminal_id}
        if method in ("cash", "card"):
            return self._counter(store_id, request, method, tendered_minor)
        if method not in (None, "qr", "code"):
            raise InvalidInput(f"unknown payment method {method!r}")
        with self.guard.admit():
            return self._create_with_provider(store_id, state.name, request, auth_code, method, channel)

    def _create_with_provider(self, store_id: str, store_name: str, request: dict[str, Any],
                              auth_code: str | None, method: str | None, channel: str | None) -> Payment:
        provider = self._provider()
        payment_id, order_ref = request["payment_id"], request["order_ref"]
        amount_minor, currency = request["amount_minor"], request["currency"]
        description = f"{store_name} {order_ref}"[:127]
        if auth_code is not None:
            channel = route_auth_code(auth_code)
            self._append(store_id, [("payment.requested", {**request, "method": "code", "provider": provider.name,
                                                           "channel": channel})])
            source = "charge"
            try:
                result = provider.charge_code(payment_id=payment_id, auth_code=auth_code, channel=channel,
                                              amount_minor=amount_minor, currency=currency,
                                              description=description, notify_url=self.notify_url(store_id))
            except (ProviderTimeout, ProviderUnavailable) as error:
                log.warning("charge of %s did not answer (%s): querying", payment_id, error)
                result, source = self._query_until_known(payment_id), "query"
            return self._settle(store_id, self.payment(store_id, payment_id), result, source)
        if method == "code":
            raise InvalidInput("a customer-presented payment needs the scanned auth_code")
        return self._create_qr(store_id, request, channel, description)

    def _create_qr(self, store_id: str, request: dict[str, Any], channel: str | None,
                   description: str) -> Payment:
        provider = self._provider()
        state = self.ledger.store(store_id)
        payment_id = request["payment_id"]
        # Built before the provider is asked, so an amount no EMV QR can carry opens no trade.
        try:
            emv = emv_payload(
                amount_minor=request["amount_minor"], currency_code=request["currency"], merchant_id=store_id,
                merchant_name=state.name, merchant_city=city_of(state.timezone), reference_label=payment_id)
        except ValueError as error:  # EmvError: an amount longer than the QR's 13 characters
            raise InvalidInput(f"this payment cannot be shown as a QR code: {error}") from None
        try:
            result = provider.create_qr(payment_id=payment_id, amount_minor=request["amount_minor"],
                                        currency=request["currency"], description=description,
                                        notify_url=self.notify_url(store_id), channel=channel)
        except ProviderTimeout:
            result = self._query_until_known(payment_id)
            if result.reason == "not_found":
                result = ProviderResult("failed", reason="provider_timeout", detail="the provider did not answer")
        qr_payload = result.code_url or emv
        requested = ("payment.requested", {**request, "method": "qr", "provider": provider.name,
                                           "channel": channel, "qr_payload": qr_payload})
        if result.outcome == "failed":
            self._append(store_id, [requested, ("payment.failed", {"payment_id": payment_id,
                                                                   "reason": result.reason or "provider_failure",
                                                                   "detail": result.detail[:500]})])
            return self.payment(store_id, payment_id)
        self._append(store_id, [requested])
        return self._settle(store_id, self.payment(store_id, payment_id), result, "query")

    def _counter(self, store_id: str, request: dict[str, Any], method: str, tendered_minor: int | None) -> Payment:
        """Cash and card are taken at the counter: requested and captured in one decision."""
        tendered = request["amount_minor"] if tendered_minor is None else tendered_minor
        if method == "cash" and request["terminal_id"] is None:
            raise InvalidInput("cash goes into a terminal's drawer: sign as the terminal or name terminal_id")
        if method == "cash" and tendered < request["amount_minor"]:
            raise InvalidInput("tendered_minor is less than the amount")
        if method == "card" and tendered_minor is not None:
            raise InvalidInput("tendered_minor is only for cash")
        payment_id = request["payment_id"]
        self._append(store_id, [
            ("payment.requested", {**request, "method": method, "provider": method}),
            ("payment.captured", {"payment_id": payment_id, "amount_minor": request["amount_minor"],
                                  "source": "counter", "tendered_minor": tendered if method == "cash" else 0}),
        ])
        return self.payment(store_id, payment_id)

    def _provider(self) -> PaymentProvider:
        if self.provider is None:
            raise ProviderNotConfigured("no payment provider is configured on this server")
        return GuardedProvider(self.provider, self.guard)

    def _query_until_known(self, payment_id: str) -> ProviderResult:
        provider = self._provider()
        result = ProviderResult("pending", detail="the provider did not answer in time")
        for attempt in range(QUERY_ATTEMPTS_MAX):
            if attempt:
                time.sleep(self.query_interval_s)
            try:
                result = provider.query(payment_id)
            except (ProviderTimeout, ProviderUnavailable) as error:
                log.warning("query of %s failed: %s", payment_id, error)
                continue
            if result.outcome != "pending":
                return result
        return result

    def _settle(self, store_id: str, payment: Payment, result: ProviderResult, source: str) -> Payment:
        """Append what the provider said, if it decides the pending payment."""
        if payment.status != "pending" or result.outcome == "pending":
            return payment
        if result.outcome == "captured":
            if result.amount_minor is not None and result.amount_minor != payment.amount_minor:
                log.error("provider captured %s for %s, which asked for %s: left pending for review",
                          result.amount_minor, payment.payment_id, payment.amount_minor)
                return payment
            event = ("payment.captured", {"payment_id": payment.payment_id, "amount_minor": payment.amount_minor,
                                          "channel": result.channel or payment.channel,
                                          "provider_transaction_id": result.transaction_id[:500],
                                          "source": source})
        else:
            if payment.method == "qr" and result.reason == "not_found":
                return payment  # the QR was opened with the provider but nobody paid yet
            event = ("payment.failed", {"payment_id": payment.payment_id,
                                        "reason": result.reason or "provider_failure",
                                        "detail": result.detail[:500]})
        try:
            self._append(store_id, [event])
        except EventRefused as refused:
            if refused.reason not in ("payment_captured", "payment_failed"):
                raise
        return self.payment(store_id, payment.payment_id)

    def _append(self, store_id: str, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self.ledger.append_server_events(store_id, events)

    # ---- notifications ----

    def notification(self, store_id: str, headers: dict[str, str], body: bytes) -> str:
        """Verify and apply a provider notification: 'captured', 'failed', 'duplicate' or 'replayed'."""
        provider = self._provider()
        now_s = int(time.time())
        try:
            notice = provider.verify_notification(headers, body, now_s)
        except NotificationForged as forged:
            log.warning("refused a notification for store %s: %s", store_id, forged.detail)
            raise
        if not self._first_nonce(notice.nonce, now_s):
            log.warning("replayed notification %s (nonce %s) ignored", notice.notification_id, notice.nonce)
            return "replayed"
        payment = self.payment(store_id, notice.payment_id)
        if payment.status != "pending":
            return "duplicate"
        settled = self._settle(store_id, payment, notice.result, "notification")
        return settled.status

    def _first_nonce(self, nonce: str, now_s: int) -> bool:
        with self._nonces_lock:
            if nonce in self._nonces:
                return False
            self._nonces[nonce] = now_s
            while len(self._nonces) > NONCES_KEPT_MAX:
                self._nonces.popitem(last=False)
            return True

    # ---- voids ----

    def void(self, store_id: str, payment_id: str, terminal_id: str | None = None) -> Payment:
        """Cancel a payment: an unpaid trade is closed at the provider first (so it can never be
        paid later) and the payment fails as `voided`; a captured one is refunded in full
        (refund id `void-{payment_id}`, so a retried void refunds once)."""
        payment = self.payment(store_id, payment_id)
        if payment.status == "pending" and payment.method in ("qr", "code"):
            try:
                with self.guard.admit():
                    result = self._provider().close_trade(payment_id)
            except ProviderTimeout:
                raise ProviderUnavailable("the provider did not answer the close; retry the void") from None
            if result.outcome == "captured":
                payment = self._settle(store_id, payment, result, "query")
            elif result.outcome == "pending":
                raise EventRefused("payment_in_progress", "the provider could not close the trade yet; retry")
            else:
                self._settle(store_id, payment, ProviderResult("failed", reason="voided",
                                                               detail="voided by the cashier"), "void")
                return self.payment(store_id, payment_id)
        if payment.status == "failed" and payment.failure_reason == "voided":
            return payment  # a retried void: the payment is already voided
        if payment.status == "failed":
            raise EventRefused(f"payment_{payment.failure_reason or 'failed'}", f"payment {payment_id!r} is failed")
        remaining = payment.amount_minor - payment.refunded_minor
        refund_id = f"void-{payment_id}"
        if remaining or refund_id in payment.refund_ids:
            self.refund(store_id, payment_id, refund_id=refund_id,
                        amount_minor=remaining or payments_of(self.ledger.store(store_id)).refunds[refund_id].amount_minor,
                        reason="void", terminal_id=terminal_id)
        return self.payment(store_id, payment_id)

    # ---- refunds ----

    def refund(self, store_id: str, payment_id: str, *, refund_id: str, amount_minor: int, reason: str = "",
               terminal_id: str | None = None) -> Refund:
        with self._refund_lock(store_id, payment_id):
            payment = self.payment(store_id, payment_id)
            book = payments_of(self.ledger.store(store_id))
            earlier = book.refunds.get(refund_id)
            if earlier is not None:
                if earlier.payment_id == payment_id and earlier.amount_minor == amount_minor:
                    return earlier
                raise EventRefused("refund_id_reused", f"refund {refund_id!r} was for another payment or amount")
            at = datetime.now(UTC)
            try:
                check_refund(payment, refund_id, amount_minor, at, book)
            except EventRejected as rejected:
                raise _refused(rejected) from None
            provider_refund_id = ""
            if payment.method in ("qr", "code"):
                provider_refund_id = self._provider_refund(payment, refund_id, amount_minor, reason)
            self._append(store_id, [("refund.issued", {
                "refund_id": refund_id, "payment_id": payment_id, "amount_minor": amount_minor,
                "at": at.isoformat(), "provider_refund_id": provider_refund_id, "reason": reason[:500],
                "terminal_id": terminal_id})])
            return payments_of(self.ledger.store(store_id)).refunds[refund_id]

    def _provider_refund(self, payment: Payment, refund_id: str, amount_minor: int, reason: str) -> str:
        try:
            with self.guard.admit():
                result = self._provider().refund(payment_id=payment.payment_id, refund_id=refund_id,
                                                 amount_minor=amount_minor, total_minor=payment.amount_minor,
                                                 currency=payment.currency, reason=reason)
        except ProviderTimeout:
            raise ProviderUnavailable("the provider did not answer the refund; retry with the same refund id") from None
        if not result.succeeded:
            raise ProviderRefused(f"the provider refused the refund: {result.detail}", reason=result.reason)
        return result.provider_refund_id[:500]

    def _refund_lock(self, store_id: str, payment_id: str) -> threading.Lock:
        digest = hashlib.blake2b(f"{store_id}/{payment_id}".encode(), digest_size=4).digest()
        return self._refund_locks[int.from_bytes(digest) % REFUND_LOCK_STRIPES]
