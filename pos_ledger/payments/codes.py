"""What the cashier scans and what the customer scans.

* `route_auth_code`: a customer-presented payment code is routed by its shape, as
  aggregate payment does; anything else is refused (InvalidInput, HTTP 422), never
  guessed: WeChat Pay 18 digits starting 10-15, Alipay 16-24 digits starting 25-30,
  UnionPay 19 digits starting 62.
* `emv_payload`: the dynamic EMVCo merchant-presented payload (point of initiation
  12), with the amount, the ISO 4217 numeric currency, merchant name and city and
  the payment id as reference label (62/05), built by the Rust core; the merchant
  account template 26 carries this system's GUID and the store id.
"""

from __future__ import annotations

import re
from typing import Final

from pos_ledger import _core, money
from pos_ledger.errors import InvalidInput

_ROUTES: Final = (
    ("wechat", re.compile(r"1[0-5]\d{16}")),
    ("alipay", re.compile(r"(2[5-9]|30)\d{14,22}")),
    ("unionpay", re.compile(r"62\d{17}")),
)
AUTH_CODE_LENGTH_MAX: Final = 32
#: EMVCo limits: a reference label and a merchant city are at most 25 and 15 characters.
REFERENCE_LABEL_MAX: Final = 25
MERCHANT_NAME_MAX: Final = 25
MERCHANT_CITY_MAX: Final = 15
#: Globally unique identifier of this system's merchant account template (tag 26/00).
MERCHANT_ACCOUNT_GUID: Final = "dev.pos-ledger"


class UnknownAuthCode(InvalidInput):
    slug = "unknown-auth-code"


def route_auth_code(auth_code: str) -> str:
    """The channel ("wechat", "alipay", "unionpay") a scanned payment code belongs to."""
    if len(auth_code) <= AUTH_CODE_LENGTH_MAX:
        for channel, pattern in _ROUTES:
            if pattern.fullmatch(auth_code):
                return channel
    raise UnknownAuthCode(
        "not a WeChat Pay (18 digits, 10-15...), Alipay (16-24 digits, 25-30...) or "
        "UnionPay (19 digits, 62...) payment code")


def mask_auth_code(auth_code: str) -> str:
    return auth_code[:4] + "*" * max(0, len(auth_code) - 8) + auth_code[-4:]


def _ascii(text: str, limit: int) -> str:
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text).strip()
    return cleaned[:limit] or "-"


def emv_payload(*, amount_minor: int, currency_code: str, merchant_id: str, merchant_name: str,
                merchant_city: str, reference_label: str, country_code: str = "CN",
                merchant_category_code: str = "5814") -> str:
    """Built by the Rust core (`emv_payment_payload`: TLV, amount from integers, CRC, checked as "emvco")."""
    if len(reference_label) > REFERENCE_LABEL_MAX:
        raise ValueError("reference label longer than 25 characters")
    currency_entry = money.currency(currency_code)
    return _core.emv_payment_payload(
        merchant_account=[("00", MERCHANT_ACCOUNT_GUID), ("01", _ascii(merchant_id, 64))],
        mcc=merchant_category_code, currency_numeric=currency_entry.numeric, amount_minor=amount_minor,
        currency_exponent=currency_entry.exponent, country=country_code,
        merchant_name=_ascii(merchant_name, MERCHANT_NAME_MAX), merchant_city=_ascii(merchant_city, MERCHANT_CITY_MAX),
        reference_label=reference_label)


def city_of(timezone: str) -> str:
    """A store's city for the QR when nothing better is configured: 'Asia/Shanghai' -> 'Shanghai'."""
    return timezone.rsplit("/", 1)[-1].replace("_", " ") or "-"
