"""The open platform's rules: which events an app's scopes let it see, what of a member it may
read, Standard Webhooks message signing, the retry schedule, which webhook addresses are local.

Pure functions of their inputs (no clock, no network): the API and the webhook
dispatcher call them with what they read and the time they took.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from typing import Any, Final
from uuid import NAMESPACE_URL, uuid5

#: The event types each read scope covers (a trailing ".*" covers a family).
SCOPE_EVENT_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "orders:read": ("order.*", "sale.completed"),
    "payments:read": ("payment.*", "refund.*"),
    "members:read": ("member.*", "stored_value.*", "points.*"),
    "coupons:read": ("campaign.*", "coupon.*", "voucher.*"),
}
MEMBERS_READ: Final = "members:read"
#: Personal data fields left out of events for a reader without members:read.
PERSONAL_FIELDS: Final = frozenset({"name", "phone", "birthday", "email", "address", "customer_name",
                                    "customer_phone", "contact"})
#: Event families whose top-level `data` may carry a person's details.
PERSONAL_FAMILIES: Final = ("member.", "stored_value.", "points.", "order.")
#: Standard Webhooks' schedule: the n-th retry waits BACKOFF_S[n-1] after the failed attempt.
BACKOFF_S: Final = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
#: An endpoint failing without one success for this long is disabled (and the owner told).
FAILING_S_MAX: Final = 5 * 86400.0
DELIVERY_TIMEOUT_S: Final = 10.0
#: After a webhook secret is rotated the previous one still signs (beside the new one) this long.
ROTATION_GRACE_S: Final = 86400.0
WEBHOOK_SECRET_PREFIX: Final = "whsec_"
_WEBHOOK_NAMESPACE: Final = uuid5(NAMESPACE_URL, "https://pos-ledger.dev/webhook-message")


def _matches(event_type: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def scope_covers(scopes: Iterable[str], event_type: str) -> bool:
    """Whether some read scope among `scopes` covers `event_type`."""
    return any(_matches(event_type, pattern) for scope in scopes for pattern in SCOPE_EVENT_TYPES.get(scope, ()))


def app_receives(scopes: Iterable[str], subscribed: Iterable[str], event_type: str) -> bool:
    """An app sees an event its scopes cover and, when it subscribed to types, one of those."""
    subscribed = list(subscribed)
    if subscribed and not any(_matches(event_type, pattern) for pattern in subscribed):
        return False
    return scope_covers(scopes, event_type)


def valid_event_pattern(pattern: str) -> bool:
    """`order.placed` or `order.*`: lower-case words joined by dots."""
    words = pattern[:-2] if pattern.endswith(".*") else pattern
    return bool(words) and all(part and part.replace("_", "").isalnum() and part.islower()
                               for part in words.split("."))


def without_personal_data(event_type: str, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The event's data without a person's details; (data, whether anything was left out)."""
    if not event_type.startswith(PERSONAL_FAMILIES):
        return data, False
    kept: dict[str, Any] = {}
    removed = False
    for key, value in data.items():
        if key in PERSONAL_FIELDS:
            removed = True
        elif isinstance(value, dict):
            # A nested person (an order's `customer`): its details go too; lists (order lines) stay.
            inner = {k: v for k, v in value.items() if k not in PERSONAL_FIELDS}
            removed = removed or len(inner) != len(value)
            kept[key] = inner
        else:
            kept[key] = value
    return kept, removed


def new_webhook_secret() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX))


def webhook_signature(secrets_in_use: Iterable[str], message_id: str, timestamp_s: int, payload: bytes) -> str:
    """The `webhook-signature` header: one `v1,<base64 HMAC-SHA256>` per secret, space-separated."""
    signed = f"{message_id}.{timestamp_s}.".encode() + payload
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_secret_bytes(secret), signed, hashlib.sha256).digest()).decode()
        for secret in secrets_in_use
    )


def webhook_message_id(client_id: str, position: int) -> str:
    """Stable across retries (and a replay) of one event to one installation."""
    return "msg_" + uuid5(_WEBHOOK_NAMESPACE, f"{client_id}/{position}").hex


def retry_delay_s(attempts: int, schedule: tuple[float, ...] = BACKOFF_S) -> float | None:
    """Seconds to wait after the `attempts`-th failed attempt; None when the schedule is spent."""
    if attempts < 1 or attempts > len(schedule):
        return None
    return schedule[attempts - 1]


def is_local_address(address: str) -> bool:
    """Loopback, link-local, private, unspecified, multicast or reserved: not a public endpoint."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_unspecified
                or ip.is_multicast or ip.is_reserved)
