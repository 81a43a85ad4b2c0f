"""Money rules, written down once: integer minor units with an ISO 4217 currency.

Never floats. Percent discounts round half-even to the minor unit (`percent_of`).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from pos_ledger.errors import InvalidInput

#: Largest amount accepted anywhere: fits a signed 64-bit integer with room for sums.
AMOUNT_MINOR_MAX: Final = 10**15


class Currency(NamedTuple):
    code: str
    numeric: str
    exponent: int


# The currencies a shop is likely to price in; extend as stores need.
_CURRENCIES: Final = {
    c.code: c
    for c in (
        Currency("CNY", "156", 2),
        Currency("HKD", "344", 2),
        Currency("MOP", "446", 2),
        Currency("TWD", "901", 2),
        Currency("JPY", "392", 0),
        Currency("KRW", "410", 0),
        Currency("SGD", "702", 2),
        Currency("MYR", "458", 2),
        Currency("THB", "764", 2),
        Currency("VND", "704", 0),
        Currency("IDR", "360", 2),
        Currency("PHP", "608", 2),
        Currency("INR", "356", 2),
        Currency("AUD", "036", 2),
        Currency("NZD", "554", 2),
        Currency("USD", "840", 2),
        Currency("CAD", "124", 2),
        Currency("MXN", "484", 2),
        Currency("BRL", "986", 2),
        Currency("EUR", "978", 2),
        Currency("GBP", "826", 2),
        Currency("CHF", "756", 2),
        Currency("SEK", "752", 2),
        Currency("NOK", "578", 2),
        Currency("DKK", "208", 2),
        Currency("PLN", "985", 2),
        Currency("CZK", "203", 2),
        Currency("HUF", "348", 2),
        Currency("AED", "784", 2),
        Currency("SAR", "682", 2),
        Currency("KWD", "414", 3),
        Currency("BHD", "048", 3),
        Currency("ZAR", "710", 2),
    )
}


def currency(code: str) -> Currency:
    """The ISO 4217 entry for `code`, or InvalidInput naming the bad code."""
    try:
        return _CURRENCIES[code]
    except KeyError:
        raise InvalidInput(f"unknown or unsupported ISO 4217 currency: {code!r}") from None


def is_currency(code: str) -> bool:
    return code in _CURRENCIES


def percent_of(amount_minor: int, percent_basis_points: int) -> int:
    """`amount_minor * percent / 100`, rounded half-even to the minor unit.

    The percentage is given in basis points (1250 = 12.50 %) so no float is ever
    involved. This is the one rounding rule for percent discounts and points.
    """
    numerator = amount_minor * percent_basis_points
    quotient, remainder = divmod(numerator, 10_000)
    twice = 2 * remainder
    if twice > 10_000 or (twice == 10_000 and quotient % 2 == 1):
        quotient += 1
    return quotient


def format_minor(amount_minor: int, code: str) -> str:
    """12345 CNY -> '123.45' (for receipts and EMV tag 54); exact, no float."""
    exponent = currency(code).exponent
    sign = "-" if amount_minor < 0 else ""
    units, minor = divmod(abs(amount_minor), 10**exponent)
    if exponent == 0:
        return f"{sign}{units}"
    return f"{sign}{units}.{minor:0{exponent}d}"


def split_proportionally(total_minor: int, weights: list[int]) -> list[int]:
    """Split `total_minor` over `weights` exactly (largest remainder, ties to the earliest).

    Used where one amount must be spread over lines or tenders (a refund
    reversing a sale's postings); the parts always sum to the total.
    """
    weight_sum = sum(weights)
    if weight_sum <= 0:
        raise InvalidInput("cannot split over weights that sum to zero")
    parts = [total_minor * w // weight_sum for w in weights]
    remainders = [total_minor * w % weight_sum for w in weights]
    short = total_minor - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:short]:
        parts[i] += 1
    return parts
