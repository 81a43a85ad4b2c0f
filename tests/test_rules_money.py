"""Money rules (pos_ledger/money.py), each pinned by a worked example and by a property against a
reference written independently here (decimal arithmetic, which knows nothing of our code)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_ledger import money
from pos_ledger.errors import InvalidInput
from pos_ledger.events import EVENT_TYPES, EventRejected
from tests.rules_support import SERVER, Store

#: README: "Amounts are integers in minor units, at most 10^15".
README_AMOUNT_MAX = 10**15


def half_even_reference(amount_minor: int, basis_points: int) -> int:
    with localcontext() as context:
        context.prec = 60
        exact = Decimal(amount_minor) * Decimal(basis_points) / Decimal(10_000)
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# ---- percent_of: half-even to the minor unit ----


@pytest.mark.parametrize(("amount_minor", "basis_points", "expected"), [
    (1_012, 1_250, 126),  # 126.5 -> 126: an exact half goes to the even neighbour, down here
    (1_004, 1_250, 126),  # 125.5 -> 126: and up here
    (1, 5_000, 0),        # 0.5 -> 0
    (3, 5_000, 2),        # 1.5 -> 2
    (5, 5_000, 2),        # 2.5 -> 2
    (7, 5_000, 4),        # 3.5 -> 4
    (9, 5_000, 4),        # 4.5 -> 4
    (11, 5_000, 6),       # 5.5 -> 6
    (-5, 5_000, -2),      # -2.5 -> -2: the rule is symmetric around zero
    (-3, 5_000, -2),      # -1.5 -> -2
    (1_013, 1_250, 127),  # 126.625 -> 127: above the half rounds up
    (1_011, 1_250, 126),  # 126.375 -> 126: below the half rounds down
    (10_000, 10_000, 10_000),  # 100 % is the whole amount
    (12_345, 0, 0),
])
def test_percent_of_rounds_an_exact_half_to_even(amount_minor: int, basis_points: int, expected: int) -> None:
    assert money.percent_of(amount_minor, basis_points) == expected


@given(st.integers(min_value=-README_AMOUNT_MAX, max_value=README_AMOUNT_MAX),
       st.integers(min_value=0, max_value=100_000))
def test_percent_of_equals_decimal_half_even(amount_minor: int, basis_points: int) -> None:
    assert money.percent_of(amount_minor, basis_points) == half_even_reference(amount_minor, basis_points)


# ---- format_minor: exact decimal text with the currency's exponent ----


@pytest.mark.parametrize(("amount_minor", "code", "text"), [
    (12_345, "CNY", "123.45"),
    (5, "CNY", "0.05"),
    (0, "USD", "0.00"),
    (-5, "CNY", "-0.05"),
    (-12_345, "EUR", "-123.45"),
    (500, "JPY", "500"),
    (-500, "KRW", "-500"),
    (1_234, "KWD", "1.234"),
    (100, "BHD", "0.100"),
])
def test_format_minor_writes_the_currency_exponent(amount_minor: int, code: str, text: str) -> None:
    assert money.format_minor(amount_minor, code) == text


@given(st.integers(min_value=-README_AMOUNT_MAX, max_value=README_AMOUNT_MAX),
       st.sampled_from(["CNY", "JPY", "KWD"]))
def test_format_minor_reads_back_exactly(amount_minor: int, code: str) -> None:
    exponent = money.currency(code).exponent
    assert Decimal(money.format_minor(amount_minor, code)) == Decimal(amount_minor).scaleb(-exponent)


def test_currency_lookup_names_the_bad_code() -> None:
    assert money.currency("CNY") == money.Currency("CNY", "156", 2)
    assert money.currency("JPY").exponent == 0
    assert money.is_currency("EUR") and not money.is_currency("XXX") and not money.is_currency("cny")
    with pytest.raises(InvalidInput, match="'XXX'"):
        money.currency("XXX")


# ---- split_proportionally: largest remainder, ties to the earliest ----


@pytest.mark.parametrize(("total", "weights", "parts"), [
    (10, [1, 1, 1], [4, 3, 3]),      # three equal remainders: the one spare unit goes to the first
    (100, [1, 2], [33, 67]),         # 33.33 / 66.67: the larger remainder takes the spare unit
    (100, [2, 1], [67, 33]),
    (7, [0, 5, 2], [0, 5, 2]),       # exact shares need no spare unit; a zero weight gets nothing
    (5, [3, 3, 3, 3], [2, 1, 1, 1]),
    (0, [4, 9], [0, 0]),
    (10, [1, 3, 3], [2, 4, 4]),      # remainders 3, 2, 2 of 7: the smallest share has the largest remainder
    (7, [1], [7]),                   # weights summing to one are a valid split
    (5, [0, 1], [0, 5]),
])
def test_split_proportionally_uses_largest_remainder(total: int, weights: list[int], parts: list[int]) -> None:
    assert money.split_proportionally(total, weights) == parts


@given(st.integers(min_value=0, max_value=README_AMOUNT_MAX),
       st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=12).filter(lambda w: sum(w) > 0))
def test_split_proportionally_sums_and_stays_within_one_unit(total: int, weights: list[int]) -> None:
    parts = money.split_proportionally(total, weights)
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        exact = Fraction(total * weight, sum(weights))
        assert exact - 1 < part < exact + 1


@pytest.mark.parametrize("weights", [[0, 0], [], [-1, 1]])
def test_split_refuses_weights_that_sum_to_zero(weights: list[int]) -> None:
    with pytest.raises(InvalidInput) as refused:
        money.split_proportionally(10, weights)
    assert str(refused.value) == "cannot split over weights that sum to zero"


# ---- AMOUNT_MINOR_MAX: the bound itself ----


def test_amount_bound_is_ten_to_the_fifteen() -> None:
    """README: at most 10^15 minor units; 9,223 amounts at the bound still sum within a signed 64-bit
    integer (the Rust fold's balances and the BIGINT balance table)."""
    assert money.AMOUNT_MINOR_MAX == README_AMOUNT_MAX
    assert 9_223 * money.AMOUNT_MINOR_MAX <= 2**63 - 1


def _amount_bounds(schema: object, path: str) -> list[tuple[str, int | None]]:
    found: list[tuple[str, int | None]] = []
    if isinstance(schema, msgspec.inspect.StructType):
        for field in schema.fields:
            found += _amount_bounds(field.type, f"{path}.{field.name}")
    elif isinstance(schema, msgspec.inspect.ListType):
        found += _amount_bounds(schema.item_type, f"{path}[]")
    elif isinstance(schema, msgspec.inspect.UnionType):
        for member in schema.types:
            found += _amount_bounds(member, path)
    elif isinstance(schema, msgspec.inspect.IntType) and path.endswith("_minor"):
        found.append((path, schema.le))
    return found


def test_every_amount_a_terminal_may_post_is_bounded_by_ten_to_the_fifteen() -> None:
    bounds = [bound for name, kind in EVENT_TYPES.items() if kind.origin != "server"
              for bound in _amount_bounds(msgspec.inspect.type_info(kind.schema), name)]
    assert len(bounds) >= 10  # sale lines, tenders, cash, stored value, coupons, points
    assert [path for path, le in bounds if le != README_AMOUNT_MAX] == []


def _sale(unit_price_minor: int) -> dict[str, object]:
    return {"order_id": "00000000-0000-4000-8000-000000000001", "currency": "CNY",
            "lines": [{"sku": "GOLD", "name": "Gold bar", "qty": 1, "unit_price_minor": unit_price_minor}],
            "discount_minor": 0, "total_minor": unit_price_minor,
            "tenders": [{"method": "card", "amount_minor": unit_price_minor}]}


def test_a_sale_of_exactly_the_bound_is_accepted_and_one_more_is_invalid() -> None:
    store = Store()
    store.terminal("t1")
    assert store.decide("sale.completed", _sale(README_AMOUNT_MAX), "t1") == [
        ("asset:card:acquirer", "CNY", README_AMOUNT_MAX), ("revenue:sales", "CNY", -README_AMOUNT_MAX)]
    assert store.refused("sale.completed", _sale(README_AMOUNT_MAX + 1), "t1") == "invalid_data"
    with pytest.raises(EventRejected):
        store.decide("payment.requested", {"payment_id": "p1", "order_ref": "o1", "amount_minor":
                                           README_AMOUNT_MAX + 1, "currency": "CNY", "method": "card",
                                           "provider": "card"}, SERVER)
