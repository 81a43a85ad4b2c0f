"""One interface for every payment provider (aggregator, WeChat Pay, Alipay, UnionPay).

The server speaks to providers only through `PaymentProvider`. Each answer is a
`ProviderResult` whose `outcome` is one of:

* `captured` - the money moved (`channel`, `transaction_id` say where);
* `pending`  - the provider accepted the request but the customer has not paid yet
  (a QR waiting to be scanned, a payment code waiting for the customer's password);
* `failed`   - a business failure (HTTP 200 with a failure code) or a decline:
  no money moved, `reason` says which (`provider_failure`, `declined`);

and `ProviderTimeout` is raised when the provider did not answer in time: the
caller must `query` before deciding anything, because the money may have moved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pos_ledger.errors import PosLedgerError

Outcome = Literal["captured", "pending", "failed"]


class ProviderTimeout(Exception):
    """The provider did not answer in time; the outcome is unknown until queried."""


class ProviderUnavailable(PosLedgerError):
    """The provider cannot be reached (or answered garbage); nothing was decided."""

    slug = "provider-unavailable"
    status = 503


class ProviderRefused(PosLedgerError):
    """The provider refused a refund (its own rule, or the trade is unknown to it)."""

    slug = "provider-refused"
    status = 409


class NotificationForged(PosLedgerError):
    """An asynchronous notification whose signature, serial or timestamp does not verify."""

    slug = "notification-forged"
    status = 401


@dataclass(frozen=True, slots=True)
class ProviderResult:
    outcome: Outcome
    channel: str | None = None
    transaction_id: str = ""
    amount_minor: int | None = None
    #: A QR text the provider wants shown instead of ours (WeChat Pay Native's code_url).
    code_url: str | None = None
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RefundResult:
    succeeded: bool
    provider_refund_id: str = ""
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified asynchronous notification about one trade."""

    notification_id: str
    nonce: str
    timestamp_s: int
    payment_id: str
    result: ProviderResult
    raw: dict[str, object] = field(default_factory=dict)


class PaymentProvider(Protocol):
    #: Name recorded on payments ("sandbox", "wechatpay", ...).
    name: str

    def create_qr(self, *, payment_id: str, amount_minor: int, currency: str, description: str,
                  notify_url: str, channel: str | None) -> ProviderResult:
        """Open a merchant-presented trade; `pending` until the customer pays."""
        ...

    def charge_code(self, *, payment_id: str, auth_code: str, channel: str, amount_minor: int,
                    currency: str, description: str, notify_url: str) -> ProviderResult:
        """Charge a customer-presented payment code."""
        ...

    def query(self, payment_id: str) -> ProviderResult:
        """The provider's current view of the trade."""
        ...

    def close_trade(self, payment_id: str) -> ProviderResult:
        """Close an unpaid trade so it can never be paid (`failed`); `captured` if it already was."""
        ...

    def refund(self, *, payment_id: str, refund_id: str, amount_minor: int, total_minor: int,
               currency: str, reason: str) -> RefundResult:
        """Refund part of a captured trade; idempotent on `refund_id`."""
        ...

    def verify_notification(self, headers: dict[str, str], body: bytes, now_s: int) -> Notification:
        """Verify and parse an asynchronous notification; NotificationForged if it does not verify."""
        ...
