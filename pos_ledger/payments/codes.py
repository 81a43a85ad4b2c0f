"""What the cashier scans and what the customer scans.

* `route_auth_code`: a customer-presented payment code is routed by its shape, as
  aggregate payment does; anything else is refused (InvalidInput, HTTP 422), never
  guessed: WeChat Pay 18 digits starting 10-15, Alipay 16-24 digits starting 25-30,
  UnionPay 19 digits starting 62.
* `emv_payload`: the dynamic EMVCo merchant-presented payload (point of initiation
  12), with the amount, the ISO 4217 numeric currency, merchant name and city and
  the payment id as reference label (62/05). Built here in Python (TLV + CRC-16/
  CCITT-FALSE); `pos_ledger._core.emv_decode`, when the Rust build has it, is used
  by the tests to check it strictly.
"""

from __future__ import annotations

import re
from typing import Final

from pos_ledger import money
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


def _tlv(tag: str, value: str) -> str:
    if len(value) > 99:
        raise ValueError(f"EMV field {tag} longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _ascii(text: str, limit: int) -> str:
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    return cleaned[:limit] or "-"


def emv_payload(*, amount_minor: int, currency_code: str, merchant_id: str, merchant_name: str,
                merchant_city: str, reference_label: str, country_code: str = "CN",
                merchant_category_code: str = "5814") -> str:
    if len(reference_label) > REFERENCE_LABEL_MAX:
        raise ValueError("reference label longer than 25 characters")
    currency_entry = money.currency(currency_code)
    body = "".join((
        _tlv("00", "01"),
        _tlv("01", "12"),
        _tlv("26", _tlv("00", MERCHANT_ACCOUNT_GUID) + _tlv("01", _ascii(merchant_id, 64))),
        _tlv("52", merchant_category_code),
        _tlv("53", currency_entry.numeric),
        _tlv("54", money.format_minor(amount_minor, currency_code)),
        _tlv("58", country_code),
        _tlv("59", _ascii(merchant_name, MERCHANT_NAME_MAX)),
        _tlv("60", _ascii(merchant_city, MERCHANT_CITY_MAX)),
        _tlv("62", _tlv("05", reference_label)),
    )) + "6304"
    return body + f"{crc16_ccitt_false(body.encode()):04X}"


def parse_tlv(payload: str) -> dict[str, str]:
    """Top-level tags of an EMV payload (for tests and diagnostics; no CRC check)."""
    fields: dict[str, str] = {}
    index = 0
    while index < len(payload):
        tag, length = payload[index:index + 2], int(payload[index + 2:index + 4])
        fields[tag] = payload[index + 4:index + 4 + length]
        index += 4 + length
    return fields


def city_of(timezone: str) -> str:
    """A store's city for the QR when nothing better is configured: 'Asia/Shanghai' -> 'Shanghai'."""
    return timezone.rsplit("/", 1)[-1].replace("_", " ") or "-"
