"""Payment and refund rules (pos_ledger/catalog/payments.py), given / when / then on the pure state.

The refund rule: a refund of a payment a sale applied reverses the sale's revenue and discount in
proportion, computed on the cumulative refunded amount and rounded half-even, so partial refunds
add up exactly to the sale's postings. A cash refund comes out of the drawer of the terminal that
refunds (the refund's `terminal_id`), else the payment's till.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pos_ledger.catalog.payments import payments_of
from pos_ledger.catalog.shifts import shifts_of
from tests.rules_support import AT, Store, net

ORDER = "00000000-0000-4000-8000-0000000000aa"
CARD = "asset:card:acquirer"
REVENUE = "revenue:sales"
DISCOUNT = "contra:discount:manual"
UNAPPLIED = "liability:unapplied_payments"


def captured(store: Store, payment_id: str, amount_minor: int, method: str = "card",
             terminal_id: str | None = None, channel: str | None = None) -> None:
    provider = method if method in ("cash", "card") else "sandbox"
    store.given("payment.requested", {"payment_id": payment_id, "order_ref": "o-" + payment_id,
                                      "amount_minor": amount_minor, "currency": "CNY", "method": method,
                                      "provider": provider, "terminal_id": terminal_id})
    store.given("payment.captured", {"payment_id": payment_id, "amount_minor": amount_minor, "channel": channel})


def applied_sale(gross_minor: int, discount_minor: int, payment_id: str = "p1") -> Store:
    """A card payment of the sale's total, applied by the terminal's sale.completed."""
    store = Store()
    store.terminal("t1")
    total = gross_minor - discount_minor
    captured(store, payment_id, total)
    store.given("sale.completed", {
        "order_id": ORDER, "currency": "CNY", "discount_minor": discount_minor, "total_minor": total,
        "lines": [{"sku": "X", "name": "X", "qty": 1, "unit_price_minor": gross_minor}],
        "tenders": [{"method": "card", "amount_minor": total, "payment_id": payment_id}]}, "t1")
    return store


def refund(refund_id: str, amount_minor: int, payment_id: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"refund_id": refund_id, "payment_id": payment_id, "amount_minor": amount_minor,
            "at": AT.isoformat(), **extra}


# ---- proportional reversal, half-even at an exact half ----


def test_refund_revenue_share_rounds_an_exact_half_to_even() -> None:
    # Sale: gross 5, discount 3, total 2. Refunding 1 reverses 1 x 5/2 = 2.5 of revenue: half-even
    # gives 2 (half up would give 3), and the discount takes the rest: 1 - 2 = -1.
    store = applied_sale(5, 3)
    first = store.given("refund.issued", refund("r1", 1))
    assert net(first) == {CARD: -1, REVENUE: 2, DISCOUNT: -1}
    # The second refund brings the cumulative to 2 x 5/2 = 5: revenue 5 - 2 = 3, discount 2 - 5 = -3 in all.
    second = store.given("refund.issued", refund("r2", 1))
    assert net(second) == {CARD: -1, REVENUE: 3, DISCOUNT: -2}
    assert net(first + second) == {CARD: -2, REVENUE: 5, DISCOUNT: -3}  # exactly the sale, reversed


@pytest.mark.parametrize(("gross", "revenue"), [
    (3, 2),  # 1.5 -> 2: the even neighbour is above
    (7, 4),  # 3.5 -> 4
    (9, 4),  # 4.5 -> 4
    (11, 6),  # 5.5 -> 6
])
def test_refund_revenue_share_rounds_each_half_to_its_even_neighbour(gross: int, revenue: int) -> None:
    # Total 2 (the discount is gross - 2): refunding 1 reverses gross / 2 of revenue.
    store = applied_sale(gross, gross - 2)
    assert net(store.decide("refund.issued", refund("r1", 1))) == {CARD: -1, REVENUE: revenue, DISCOUNT: 1 - revenue}


def test_refund_without_discount_reverses_revenue_only() -> None:
    store = applied_sale(2_800, 0)
    assert store.decide("refund.issued", refund("r1", 1_000)) == [(CARD, "CNY", -1_000), (REVENUE, "CNY", 1_000)]


def test_refund_of_an_unapplied_payment_reverses_its_capture() -> None:
    store = Store()
    captured(store, "p1", 1_500)
    assert store.decide("refund.issued", refund("r1", 600)) == [(CARD, "CNY", -600), (UNAPPLIED, "CNY", 600)]


def _half_even(numerator: int, denominator: int) -> int:
    return int((Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=100_000), st.data())
def test_partial_refunds_reverse_half_even_of_the_cumulative_share(gross: int, data: st.DataObject) -> None:
    discount = data.draw(st.integers(min_value=0, max_value=gross - 1))
    total = gross - discount
    store = applied_sale(gross, discount)
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=total), max_size=6, unique=True))
    cumulative = sorted({*cuts, total})
    reversed_revenue = 0
    before = 0
    for step, refunded in enumerate(cumulative):
        postings = net(store.given("refund.issued", refund(f"r{step}", refunded - before)))
        reversed_revenue += postings.get(REVENUE, 0)
        # Reference: half-even of the cumulative share, computed with decimals.
        assert reversed_revenue == _half_even(refunded * gross, total)
        assert postings.get(CARD) == before - refunded
        before = refunded
    assert reversed_revenue == gross  # a full refund reverses the sale exactly


# ---- the drawer a cash refund comes out of ----


def cash_shop() -> Store:
    """t1 took a cash payment of 1,000 into its drawer; t2's drawer holds a float of 500."""
    store = Store()
    store.terminal("t1")
    store.terminal("t2")
    store.given("shift.opened", {"shift_id": "s-t1", "terminal_id": "t1", "currency": "CNY", "float_minor": 0})
    store.given("shift.opened", {"shift_id": "s-t2", "terminal_id": "t2", "currency": "CNY", "float_minor": 500})
    captured(store, "cash1", 1_000, method="cash", terminal_id="t1")
    return store


def test_cash_refund_by_another_terminal_comes_out_of_that_terminals_drawer() -> None:
    store = cash_shop()
    postings = store.given("refund.issued", refund("r1", 300, "cash1", terminal_id="t2"))
    assert net(postings) == {"asset:cash:t2": -300, UNAPPLIED: 300}
    drawers = shifts_of(store.state).drawers
    assert (drawers["t1"], drawers["t2"]) == (1_000, 200)
    shifts = shifts_of(store.state).shifts
    assert (shifts["s-t1"].cash_refunds_minor, shifts["s-t2"].cash_refunds_minor) == (0, 300)
    assert shifts["s-t2"].refunds == {"cash": 300} and shifts["s-t2"].refunds_count == 1


def test_cash_refund_is_limited_by_the_refunding_drawer_not_the_payments_till() -> None:
    store = cash_shop()
    # t1 holds 1,000, but t2 refunds and holds only 500.
    assert store.refused("refund.issued", refund("r1", 501, "cash1", terminal_id="t2")) == "insufficient_cash"
    assert net(store.decide("refund.issued", refund("r1", 500, "cash1", terminal_id="t2"))) == {
        "asset:cash:t2": -500, UNAPPLIED: 500}


def test_cash_refund_without_a_terminal_comes_out_of_the_payments_till() -> None:
    store = cash_shop()
    postings = store.given("refund.issued", refund("r1", 700, "cash1"))
    assert net(postings) == {"asset:cash:t1": -700, UNAPPLIED: 700}
    assert shifts_of(store.state).drawers["t1"] == 300
    store.given("cash.moved", {"shift_id": "s-t1", "kind": "paid_out", "amount_minor": 200, "currency": "CNY"})
    assert store.refused("refund.issued", refund("r2", 101, "cash1")) == "insufficient_cash"
    assert net(store.decide("refund.issued", refund("r2", 100, "cash1"))) == {"asset:cash:t1": -100, UNAPPLIED: 100}


# ---- the refund limits ----


def test_refunds_never_exceed_what_was_captured_in_total() -> None:
    store = Store()
    captured(store, "p1", 1_000)
    assert store.refused("refund.issued", refund("r1", 1_001)) == "refund_exceeds_captured"
    store.given("refund.issued", refund("r1", 400))
    assert store.refused("refund.issued", refund("r2", 601)) == "refund_exceeds_captured"
    store.given("refund.issued", refund("r2", 600))  # exactly what is left
    assert payments_of(store.state).payments["p1"].refunded_minor == 1_000
    assert store.refused("refund.issued", refund("r3", 1)) == "refund_exceeds_captured"
    assert store.refused("refund.issued", refund("r1", 1)) == "refund_exists"


def test_wechat_allows_fifty_refunds_per_payment() -> None:
    store = Store()
    captured(store, "p1", 1_000, method="qr", channel="wechat")
    for n in range(50):
        store.given("refund.issued", refund(f"r{n}", 1))
    assert store.refused("refund.issued", refund("r50", 1)) == "refund_count_limit"


def test_other_channels_allow_a_thousand_refunds_per_payment() -> None:
    store = Store()
    captured(store, "p1", 2_000, method="qr", channel="alipay")
    payment = payments_of(store.state).payments["p1"]
    payment.refund_ids.extend(f"old{n}" for n in range(999))  # as if 999 refunds were recorded
    store.decide("refund.issued", refund("r999", 1))
    payment.refund_ids.append("old999")
    assert store.refused("refund.issued", refund("r1000", 1)) == "refund_count_limit"


def test_wechat_refunds_close_365_days_after_capture() -> None:
    store = Store()
    captured(store, "p1", 1_000, method="qr", channel="wechat")
    last_day = AT + timedelta(days=365)
    store.decide("refund.issued", {**refund("r1", 1), "at": last_day.isoformat()})
    late = {**refund("r1", 1), "at": (last_day + timedelta(seconds=1)).isoformat()}
    assert store.refused("refund.issued", late) == "refund_window_closed"
    other = Store()
    captured(other, "p1", 1_000, method="qr", channel="alipay")
    other.decide("refund.issued", {**refund("r1", 1), "at": (AT + timedelta(days=3_000)).isoformat()})


@pytest.mark.parametrize("status", ["pending", "failed"])
def test_only_a_captured_payment_is_refunded(status: str) -> None:
    store = Store()
    store.given("payment.requested", {"payment_id": "p1", "order_ref": "o1", "amount_minor": 100,
                                      "currency": "CNY", "method": "card", "provider": "card"})
    if status == "failed":
        store.given("payment.failed", {"payment_id": "p1", "reason": "declined"})
    assert store.refused("refund.issued", refund("r1", 1)) == "payment_not_captured"
    assert store.refused("refund.issued", refund("r1", 1, "nope")) == "unknown_payment"


# ---- capture ----


def test_capture_debits_the_channel_the_provider_reports() -> None:
    store = Store()
    store.given("payment.requested", {"payment_id": "p1", "order_ref": "o1", "amount_minor": 900,
                                      "currency": "CNY", "method": "code", "provider": "sandbox"})
    assert store.refused("payment.captured", {"payment_id": "p1", "amount_minor": 900}) == "channel_required"
    assert store.refused("payment.captured", {"payment_id": "p1", "amount_minor": 901,
                                              "channel": "alipay"}) == "amount_mismatch"
    assert store.given("payment.captured", {"payment_id": "p1", "amount_minor": 900, "channel": "alipay"}) == [
        ("asset:psp:alipay", "CNY", 900), (UNAPPLIED, "CNY", -900)]
    assert store.refused("payment.captured", {"payment_id": "p1", "amount_minor": 900,
                                              "channel": "alipay"}) == "payment_captured"
    assert store.refused("payment.failed", {"payment_id": "p1", "reason": "late"}) == "payment_captured"


def test_a_cash_payment_needs_a_till_and_goes_into_its_drawer() -> None:
    store = Store()
    store.terminal("t1")
    cash = {"payment_id": "p1", "order_ref": "o1", "amount_minor": 700, "currency": "CNY", "method": "cash",
            "provider": "cash"}
    assert store.refused("payment.requested", cash) == "terminal_required"
    assert store.refused("payment.requested", {**cash, "currency": "USD", "terminal_id": "t1"}) == \
        "currency_mismatch"
    store.given("payment.requested", {**cash, "terminal_id": "t1"})
    assert store.refused("payment.requested", {**cash, "terminal_id": "t1"}) == "payment_exists"
    assert store.given("payment.captured", {"payment_id": "p1", "amount_minor": 700}) == [
        ("asset:cash:t1", "CNY", 700), (UNAPPLIED, "CNY", -700)]
    assert shifts_of(store.state).drawers["t1"] == 700


def test_a_refund_refusal_names_the_amounts() -> None:
    store = Store()
    store.terminal("t1")
    captured(store, "p1", 1_000, method="qr", channel="wechat")
    store.given("refund.issued", refund("r1", 400))
    assert store.rejection("refund.issued", refund("r1", 1)) == ("refund_exists", "refund 'r1' already exists")
    assert store.rejection("refund.issued", refund("r2", 601)) == (
        "refund_exceeds_captured", "refund 601 but only 600 of 1000 is left")
    late = {**refund("r2", 1), "at": (AT + timedelta(days=366)).isoformat()}
    assert store.rejection("refund.issued", late) == ("refund_window_closed", "wechat refunds only within 365 days")
    payments_of(store.state).payments["p1"].refund_ids.extend(f"x{n}" for n in range(49))
    assert store.rejection("refund.issued", refund("r2", 1)) == (
        "refund_count_limit", "wechat allows at most 50 refunds per payment")
    store.given("payment.requested", {"payment_id": "p2", "order_ref": "o2", "amount_minor": 5, "currency": "CNY",
                                      "method": "card", "provider": "card"})
    assert store.rejection("refund.issued", refund("r3", 1, "p2")) == ("payment_not_captured", "payment 'p2' is pending")
    cash = cash_shop()
    assert cash.rejection("refund.issued", refund("r1", 501, "cash1", terminal_id="t2")) == (
        "insufficient_cash", "refund 501 but the drawer holds 500")


def test_a_refund_of_a_one_fen_sale_reverses_its_revenue() -> None:
    store = applied_sale(1, 0)
    assert store.decide("refund.issued", refund("r1", 1)) == [(CARD, "CNY", -1), (REVENUE, "CNY", 1)]


def test_a_card_refund_shows_in_the_refunding_tills_shift_but_moves_no_drawer() -> None:
    store = cash_shop()
    captured(store, "card1", 900, method="card", terminal_id="t1")
    store.given("refund.issued", refund("r1", 300, "card1"))
    shift = shifts_of(store.state).shifts["s-t1"]
    assert (shift.refunds, shift.refunds_count, shift.cash_refunds_minor) == ({"card": 300}, 1, 0)
    assert shifts_of(store.state).drawers == {"t1": 1_000, "t2": 500}
    store.given("refund.issued", refund("r2", 200, "card1", terminal_id="t2"))
    other = shifts_of(store.state).shifts["s-t2"]
    assert (other.refunds, other.refunds_count, other.cash_refunds_minor) == ({"card": 200}, 1, 0)
    store.given("refund.issued", refund("r4", 50, "card1"))  # a second one at t1 adds up
    assert (shift.refunds, shift.refunds_count, shift.cash_refunds_minor) == ({"card": 350}, 2, 0)
    store.given("refund.issued", refund("r5", 100, "cash1"))
    store.given("refund.issued", refund("r6", 200, "cash1"))
    assert (shift.refunds, shift.refunds_count, shift.cash_refunds_minor) == ({"card": 350, "cash": 300}, 4, 300)
    # A refund with no till anywhere (a card payment taken without one) touches no shift.
    captured(store, "card2", 100)
    store.given("refund.issued", refund("r3", 100, "card2"))
    assert (shift.refunds_count, other.refunds_count) == (4, 1)
