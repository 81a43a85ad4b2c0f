"""HTTP client for an aggregator speaking the sandbox's WeChat-Pay-v3-style protocol.

Why not a provider SDK from PyPI: the WeChat Pay v3 SDKs (e.g. `wechatpayv3`) fix
the gateway host, require a merchant certificate and API v3 key, and download
AES-GCM-encrypted platform certificates; none of that can be pointed at a loopback
sandbox without patching the SDK. This client keeps the same shapes (paths,
`out_trade_no`, `amount.total`, notification headers and signature message) so a
real gateway adapter is a second implementation of `PaymentProvider`.

Notifications are verified with the aggregator's RSA public key, fetched from
`GET /v3/certificates` (again when an unknown serial shows up: key rotation), and
must be fresh: a timestamp more than `NOTIFICATION_AGE_S_MAX` away from now is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from typing import Any, Final

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pos_ledger.payments.provider import (
    Notification,
    NotificationForged,
    ProviderResult,
    ProviderTimeout,
    ProviderUnavailable,
    RefundResult,
)
from pos_ledger.payments.sandbox import signature_message

NOTIFICATION_AGE_S_MAX: Final = 300
NOTIFICATION_BYTES_MAX: Final = 64 * 1024
DEFAULT_TIMEOUT_S: Final = 5.0
_TRADE_STATES: Final = {"SUCCESS": "captured", "NOTPAY": "pending", "USERPAYING": "pending",
                        "PAYERROR": "failed", "CLOSED": "failed", "REVOKED": "failed"}


class AggregatorProvider:
    """`PaymentProvider` over HTTP against the sandbox (or any gateway with its shapes)."""

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S, name: str = "sandbox") -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout_s)
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._keys_lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    # ---- HTTP ----

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.TimeoutException as error:
            raise ProviderTimeout(f"{method} {path}: {error}") from None
        except httpx.HTTPError as error:
            raise ProviderUnavailable(f"payment provider unreachable: {error}") from None
        try:
            payload = response.json()
        except ValueError:
            raise ProviderUnavailable(f"payment provider answered {response.status_code} without JSON") from None
        if not isinstance(payload, dict):
            raise ProviderUnavailable("payment provider answered a non-object")
        return response.status_code, payload

    @staticmethod
    def _result(status: int, payload: dict[str, Any]) -> ProviderResult:
        code = str(payload.get("code", ""))
        if status != 200:
            raise ProviderUnavailable(f"payment provider answered HTTP {status}: {payload.get('message', '')}")
        if code == "FAIL":
            return ProviderResult("failed", reason="provider_failure", detail=str(payload.get("message", "")))
        if code == "DECLINED":
            return ProviderResult("failed", reason="declined", detail=str(payload.get("message", "")))
        if code == "USERPAYING":
            return ProviderResult("pending", detail=str(payload.get("message", "")))
        if code != "SUCCESS":
            raise ProviderUnavailable(f"payment provider answered unknown code {code!r}")
        return AggregatorProvider._trade(payload)

    @staticmethod
    def _trade(payload: dict[str, Any]) -> ProviderResult:
        state = payload.get("trade_state")
        if state is None:  # a QR was opened: the customer has not paid yet
            return ProviderResult("pending", code_url=payload.get("code_url") or None)
        outcome = _TRADE_STATES.get(str(state))
        if outcome is None:
            raise ProviderUnavailable(f"payment provider answered unknown trade state {state!r}")
        amount = payload.get("amount") or {}
        return ProviderResult(outcome, channel=payload.get("channel") or None,  # type: ignore[arg-type]
                              transaction_id=str(payload.get("transaction_id") or ""),
                              amount_minor=int(amount["total"]) if "total" in amount else None,
                              reason="" if outcome != "failed" else "declined",
                              detail=str(payload.get("trade_state_desc", "")))

    # ---- PaymentProvider ----

    def create_qr(self, *, payment_id: str, amount_minor: int, currency: str, description: str,
                  notify_url: str, channel: str | None) -> ProviderResult:
        body = {"out_trade_no": payment_id, "description": description, "notify_url": notify_url,
                "amount": {"total": amount_minor, "currency": currency}, "channel": channel}
        return self._result(*self._call("POST", "/v3/pay/transactions/native", body))

    def charge_code(self, *, payment_id: str, auth_code: str, channel: str, amount_minor: int,
                    currency: str, description: str, notify_url: str) -> ProviderResult:
        body = {"out_trade_no": payment_id, "description": description, "notify_url": notify_url,
                "amount": {"total": amount_minor, "currency": currency}, "channel": channel,
                "payer": {"auth_code": auth_code}}
        return self._result(*self._call("POST", "/v3/pay/transactions/codepay", body))

    def query(self, payment_id: str) -> ProviderResult:
        status, payload = self._call("GET", f"/v3/pay/transactions/out-trade-no/{payment_id}")
        if status == 404:
            return ProviderResult("failed", reason="not_found", detail="the provider has no such trade")
        return self._result(status, payload)

    def close_trade(self, payment_id: str) -> ProviderResult:
        status, payload = self._call("POST", f"/v3/pay/transactions/out-trade-no/{payment_id}/close", {})
        if status == 404:
            return ProviderResult("failed", reason="not_found", detail="the provider has no such trade")
        return self._result(status, payload)

    def refund(self, *, payment_id: str, refund_id: str, amount_minor: int, total_minor: int,
               currency: str, reason: str) -> RefundResult:
        body = {"out_trade_no": payment_id, "out_refund_no": refund_id, "reason": reason,
                "amount": {"refund": amount_minor, "total": total_minor, "currency": currency}}
        status, payload = self._call("POST", "/v3/refund/domestic/refunds", body)
        if status != 200:
            raise ProviderUnavailable(f"payment provider answered HTTP {status}")
        if payload.get("code") != "SUCCESS":
            return RefundResult(False, reason="provider_refused", detail=str(payload.get("message", "")))
        return RefundResult(True, provider_refund_id=str(payload.get("refund_id", "")))

    # ---- notifications ----

    def _key(self, serial: str) -> rsa.RSAPublicKey | None:
        with self._keys_lock:
            if serial not in self._keys:
                self._fetch_keys()
            return self._keys.get(serial)

    def _fetch_keys(self) -> None:
        status, payload = self._call("GET", "/v3/certificates")
        if status != 200:
            raise ProviderUnavailable("cannot fetch the provider's notification keys")
        for entry in payload.get("data", []):
            key = serialization.load_pem_public_key(str(entry["public_key_pem"]).encode())
            if isinstance(key, rsa.RSAPublicKey):
                self._keys[str(entry["serial_no"])] = key

    def verify_notification(self, headers: dict[str, str], body: bytes, now_s: int) -> Notification:
        lower = {k.lower(): v for k, v in headers.items()}
        timestamp = lower.get("wechatpay-timestamp", "")
        nonce = lower.get("wechatpay-nonce", "")
        serial = lower.get("wechatpay-serial", "")
        signature_b64 = lower.get("wechatpay-signature", "")
        if not (timestamp.isdigit() and nonce and serial and signature_b64):
            raise NotificationForged("notification without Wechatpay-Timestamp/Nonce/Serial/Signature")
        if len(body) > NOTIFICATION_BYTES_MAX or len(nonce) > 64:
            raise NotificationForged("notification too large")
        if abs(now_s - int(timestamp)) > NOTIFICATION_AGE_S_MAX:
            raise NotificationForged(f"notification timestamp {timestamp} is not within {NOTIFICATION_AGE_S_MAX}s")
        key = self._key(serial)
        if key is None:
            raise NotificationForged(f"unknown signing key serial {serial!r}")
        try:
            signature = base64.b64decode(signature_b64, validate=True)
            key.verify(signature, signature_message(timestamp, nonce, body), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, binascii.Error, ValueError):
            raise NotificationForged("notification signature does not verify") from None
        try:
            parsed = json.loads(body)
            resource = parsed["resource"]
            payment_id = str(resource["out_trade_no"])
            result = self._trade(resource)
            notification_id = str(parsed["id"])
        except (ValueError, KeyError, TypeError):
            raise NotificationForged("signed notification without a readable trade") from None
        return Notification(notification_id, nonce, int(timestamp), payment_id, result, parsed)
