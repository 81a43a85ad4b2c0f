"""Coupon rules (pos_ledger/catalog/coupons.py): what a coupon saves, when it is valid, when one may be
issued, and what a redemption posts; worked examples from the module's and README's definitions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_ledger.catalog.conflicts import conflicts_of
from pos_ledger.catalog.coupons import (
    BasketLine,
    CampaignCreated,
    Coupon,
    Redemption,
    coupons_of,
    expiry,
    issue_problem,
    saving,
    validity_problem,
)
from tests.rules_support import AT, SERVER, Store, net
from tests.test_rules_money import half_even_reference

START = AT - timedelta(days=1)
END = AT + timedelta(days=30)
COUPON = "c" * 32


def spec(**overrides: Any) -> CampaignCreated:
    fields: dict[str, Any] = {"campaign_id": "c1", "name": "100 minus 20", "kind": "cash_off",
                              "valid_from": START, "valid_until": END, "quota_total": 100,
                              "threshold_minor": 10_000, "off_minor": 2_000}
    fields.update(overrides)
    return CampaignCreated(**fields)


def basket(*prices: int) -> list[BasketLine]:
    return [BasketLine(f"SKU{n}", 1, price) for n, price in enumerate(prices)]


# ---- saving: threshold, cash-off capped to the basket, percent-off with its cap ----


def test_a_subtotal_exactly_at_the_threshold_qualifies() -> None:
    cash_off = spec(threshold_minor=10_000, off_minor=2_000)
    assert saving(cash_off, basket(6_000, 4_000)) == 2_000   # 10,000 reaches 10,000
    assert saving(cash_off, basket(6_000, 3_999)) == 0       # one fen short does not
    percent = spec(kind="percent_off", threshold_minor=5_000, percent_basis_points=1_000)
    assert saving(percent, basket(5_000)) == 500
    assert saving(percent, basket(4_999)) == 0
    gift = spec(kind="gift_item", threshold_minor=5_000, gift_sku="SKU1")
    assert saving(gift, basket(4_100, 900)) == 900
    assert saving(gift, basket(4_099, 900)) == 0


def test_cash_off_larger_than_the_subtotal_is_capped_to_the_subtotal() -> None:
    big = spec(threshold_minor=0, off_minor=2_000)
    assert saving(big, basket(1_500)) == 1_500
    assert saving(big, basket(1_999, 1)) == 2_000  # exactly the off amount: all of it
    assert saving(big, basket(2_001)) == 2_000


def test_percent_off_whose_cap_binds_saves_the_cap() -> None:
    capped = spec(kind="percent_off", threshold_minor=0, off_minor=0, percent_basis_points=1_250, cap_minor=1_000)
    assert saving(capped, basket(10_000)) == 1_000   # 12.5 % is 1,250: the cap binds
    assert saving(capped, basket(8_000)) == 1_000    # 1,000 exactly: the cap and the share agree
    assert saving(capped, basket(7_992)) == 999      # 999: under the cap
    uncapped = spec(kind="percent_off", threshold_minor=0, off_minor=0, percent_basis_points=1_250)
    assert saving(uncapped, basket(10_000)) == 1_250


def test_percent_off_rounds_an_exact_half_to_even() -> None:
    percent = spec(kind="percent_off", threshold_minor=0, off_minor=0, percent_basis_points=1_250, cap_minor=5_000)
    assert saving(percent, basket(1_012)) == 126  # 126.5 -> 126 (half up would be 127)
    assert saving(percent, basket(1_004)) == 126  # 125.5 -> 126


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=5),
       st.integers(min_value=1, max_value=10_000), st.one_of(st.none(), st.integers(min_value=0, max_value=10**8)))
def test_percent_off_saves_half_even_of_the_subtotal_up_to_its_cap(prices: list[int], basis_points: int,
                                                                    cap: int | None) -> None:
    percent = spec(kind="percent_off", threshold_minor=0, off_minor=0, percent_basis_points=basis_points,
                   cap_minor=cap)
    subtotal = sum(prices)
    share = half_even_reference(subtotal, basis_points) if subtotal else 0
    assert saving(percent, basket(*prices)) == (share if cap is None else min(share, cap))


def test_gift_item_saves_the_gift_price_when_it_is_in_the_basket() -> None:
    gift = spec(kind="gift_item", threshold_minor=0, gift_sku="TART")
    lines = [BasketLine("LATTE", 2, 2_800), BasketLine("TART", 2, 900), BasketLine("TART", 1, 950)]
    assert saving(gift, lines) == 950  # one unit free: the dearest line of that sku
    assert saving(gift, [BasketLine("LATTE", 1, 2_800)]) == 0
    assert saving(gift, [BasketLine("LATTE", 1, 2_800), BasketLine("TART", 0, 900)]) == 0


def test_an_empty_basket_saves_nothing() -> None:
    assert saving(spec(threshold_minor=0), []) == 0
    assert saving(spec(threshold_minor=0), basket(0)) == 0
    assert saving(spec(threshold_minor=0), basket(1)) == 1  # a one-fen basket is not empty: cash-off takes it


# ---- validity and expiry ----


def coupon(expires_at: Any = END, **state: Any) -> Coupon:
    return Coupon(COUPON, "c1", None, START, expires_at, "manual", **state)


def test_a_coupon_is_valid_from_the_campaign_start_until_just_before_it_expires() -> None:
    campaign = spec()
    assert validity_problem(coupon(), campaign, START) == ""
    assert validity_problem(coupon(), campaign, START - timedelta(microseconds=1)) == "coupon_not_yet_valid"
    assert validity_problem(coupon(), campaign, END - timedelta(microseconds=1)) == ""
    assert validity_problem(coupon(), campaign, END) == "coupon_expired"


def test_void_and_redeemed_are_named_before_time() -> None:
    campaign = spec()
    assert validity_problem(coupon(voided=True), campaign, END) == "coupon_voided"
    redeemed = coupon(redemptions=[Redemption("r1", "o1", 2_000, AT, "t1", 5)])
    assert validity_problem(redeemed, campaign, AT) == "coupon_already_redeemed"
    broke = coupon(redemptions=[Redemption("r1", "o1", 2_000, AT, "t1", 5, "coupon_expired")])
    assert validity_problem(broke, campaign, AT) == ""  # a conflicting redemption did not use it up


def test_expiry_is_the_earlier_of_campaign_end_and_coupon_lifetime() -> None:
    assert expiry(spec(), AT) == END
    assert expiry(spec(coupon_valid_seconds=3_600), AT) == AT + timedelta(hours=1)
    assert expiry(spec(coupon_valid_seconds=60 * 86_400), AT) == END


# ---- issuing ----


def issuing(**overrides: Any) -> Store:
    store = Store()
    store.given("member.registered", {"member_id": "alice", "card_id": "a" * 32})
    store.given("member.registered", {"member_id": "bob", "card_id": "b" * 32})
    data = {"campaign_id": "c1", "name": "100 minus 20", "kind": "cash_off", "valid_from": START.isoformat(),
            "valid_until": END.isoformat(), "quota_total": 2, "off_minor": 2_000, "threshold_minor": 10_000}
    store.given("campaign.created", {**data, **overrides})
    return store


def issued(n: int, member_id: str | None = "alice", at: Any = AT, source: str = "manual") -> dict[str, Any]:
    return {"coupon_id": f"{n:032x}", "campaign_id": "c1", "issued_at": at.isoformat(), "member_id": member_id,
            "source": source}


def test_the_quota_is_a_hard_cap_voided_coupons_included() -> None:
    store = issuing(quota_total=2)
    store.given("coupon.issued", issued(1))
    store.given("coupon.voided", {"coupon_id": f"{1:032x}"})
    store.given("coupon.issued", issued(2))
    assert store.refused("coupon.issued", issued(3)) == "quota_exhausted"


def test_the_per_member_limit_counts_that_members_coupons() -> None:
    store = issuing(quota_total=10, per_member_limit=1)
    store.given("coupon.issued", issued(1, "alice"))
    assert store.refused("coupon.issued", issued(2, "alice")) == "member_limit_reached"
    store.given("coupon.issued", issued(3, "bob"))
    store.given("coupon.issued", issued(4, None))  # a coupon issued to nobody counts against no member


def test_a_campaign_issues_from_valid_from_until_just_before_valid_until() -> None:
    store = issuing(quota_total=10)
    feature = coupons_of(store.state)
    assert issue_problem(feature, "c1", "alice", START, "manual") == ("", "")
    assert issue_problem(feature, "c1", "alice", START - timedelta(seconds=1), "manual")[0] == "campaign_not_active"
    assert issue_problem(feature, "c1", "alice", END - timedelta(seconds=1), "manual") == ("", "")
    assert issue_problem(feature, "c1", "alice", END, "manual")[0] == "campaign_not_active"
    assert issue_problem(feature, "nope", "alice", AT, "manual")[0] == "campaign_unknown"
    assert issue_problem(feature, "c1", "alice", AT, "qr_claim")[0] == "issue_rule_mismatch"


def test_a_claim_with_a_per_member_limit_needs_a_member() -> None:
    store = issuing(quota_total=10, per_member_limit=1, issue_rule="qr_claim")
    feature = coupons_of(store.state)
    assert issue_problem(feature, "c1", None, AT, "qr_claim")[0] == "member_required"
    assert issue_problem(feature, "c1", "alice", AT, "qr_claim") == ("", "")
    assert issue_problem(feature, "c1", None, AT, "manual") == ("", "")  # the back office may issue blank


def test_issuing_checks_the_coupon_and_the_member() -> None:
    store = issuing()
    store.given("coupon.issued", issued(1))
    assert store.refused("coupon.issued", issued(1, "bob")) == "coupon_exists"
    assert store.refused("coupon.issued", issued(2, "carol")) == "member_unknown"


# ---- redeeming: postings and conflicts ----


def redeemed(redemption_id: str, at: Any = AT, discount_minor: int = 2_000, **extra: Any) -> dict[str, Any]:
    return {"coupon_id": f"{1:032x}", "redemption_id": redemption_id, "order_ref": "o1", "currency": "CNY",
            "discount_minor": discount_minor, "redeemed_at": at.isoformat(), **extra}


def test_a_redemption_reclassifies_the_sales_discount_to_the_campaign() -> None:
    store = issuing()
    store.given("coupon.issued", issued(1))
    assert store.decide("coupon.redeemed", redeemed("r1")) == [
        ("contra:discount:coupon:c1", "CNY", 2_000), ("contra:discount:manual", "CNY", -2_000)]
    assert store.decide("coupon.redeemed", redeemed("r1", discount_minor=0)) == []


def test_online_a_second_redemption_is_refused_and_offline_it_is_a_conflict() -> None:
    store = issuing()
    store.terminal("t1")
    store.given("coupon.issued", issued(1))
    store.given("coupon.redeemed", redeemed("r1"))
    assert store.refused("coupon.redeemed", redeemed("r2")) == "coupon_already_redeemed"
    assert store.refused("coupon.redeemed", redeemed("r1")) == "duplicate_redemption"
    store.given("coupon.redeemed", redeemed("r2", offline=True), "t1")
    conflicts = list(conflicts_of(store.state).values())
    assert [c.kind for c in conflicts] == ["coupon_double_redemption"]
    assert net(conflicts[0].compensating_postings) == {"expense:loss:coupon_conflict": 2_000,
                                                     "contra:discount:coupon:c1": -2_000}
    assert coupons_of(store.state).campaigns["c1"].redeemed == 1


@pytest.mark.parametrize(("when", "reason", "kind"), [
    (END, "coupon_expired", "coupon_redeemed_expired"),
    (START - timedelta(seconds=1), "coupon_not_yet_valid", "coupon_redeemed_early"),
])
def test_expired_or_early_is_refused_online_and_a_conflict_offline(when: Any, reason: str, kind: str) -> None:
    store = issuing()
    store.terminal("t1")
    store.given("coupon.issued", issued(1))
    assert store.refused("coupon.redeemed", redeemed("r1", when)) == reason
    store.given("coupon.redeemed", redeemed("r1", when), "t1")  # a terminal's fact is always recorded
    assert [c.kind for c in conflicts_of(store.state).values()] == [kind]
    assert coupons_of(store.state).campaigns["c1"].redeemed == 0


def test_a_voided_coupon_is_refused_online_and_cannot_be_voided_again() -> None:
    store = issuing()
    store.given("coupon.issued", issued(1))
    store.given("coupon.voided", {"coupon_id": f"{1:032x}"})
    assert store.refused("coupon.redeemed", redeemed("r1")) == "coupon_voided"
    assert store.refused("coupon.voided", {"coupon_id": f"{1:032x}"}) == "coupon_voided"
    other = issuing()
    other.given("coupon.issued", issued(1))
    other.given("coupon.redeemed", redeemed("r1"))
    assert other.refused("coupon.voided", {"coupon_id": f"{1:032x}"}) == "coupon_already_redeemed"
    assert other.refused("coupon.voided", {"coupon_id": f"{9:032x}"}) == "coupon_unknown"


def test_a_sale_of_at_least_the_minimum_issues_an_after_payment_coupon() -> None:
    store = issuing(issue_rule="after_payment", after_payment_min_minor=5_000, quota_total=10)
    store.terminal("t1")

    def sale(total: int, order: str) -> dict[str, Any]:
        return {"order_id": order, "currency": "CNY", "discount_minor": 0, "total_minor": total, "member_id": "alice",
                "lines": [{"sku": "X", "name": "X", "qty": 1, "unit_price_minor": total}],
                "tenders": [{"method": "card", "amount_minor": total}]}

    store.given("sale.completed", sale(4_999, "00000000-0000-4000-8000-000000000001"), "t1")
    assert coupons_of(store.state).coupons == {}
    store.given("sale.completed", sale(5_000, "00000000-0000-4000-8000-000000000002"), "t1")
    assert [(c.source, c.member_id) for c in coupons_of(store.state).coupons.values()] == [
        ("after_payment", "alice")]


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"off_minor": 0}, "invalid_data"),
    ({"kind": "percent_off", "percent_basis_points": 0}, "invalid_data"),
    ({"kind": "gift_item"}, "invalid_data"),
    ({"valid_until": START.isoformat()}, "invalid_data"),
    ({"valid_from": "1969-12-31T23:59:59+00:00"}, "invalid_data"),
    ({"valid_until": "2106-02-07T06:28:16+00:00"}, "invalid_data"),
])
def test_a_rule_breaking_campaign_is_refused(overrides: dict[str, Any], reason: str) -> None:
    store = Store()
    data = {"campaign_id": "c1", "name": "n", "kind": "cash_off", "valid_from": START.isoformat(),
            "valid_until": END.isoformat(), "quota_total": 1, "off_minor": 1}
    assert store.refused("campaign.created", {**data, **overrides}, SERVER) == reason
    store.decide("campaign.created", {**data, "valid_until": "2106-02-07T06:28:15+00:00"})
    store.given("campaign.created", data)
    assert store.refused("campaign.created", data) == "campaign_exists"


def test_each_issue_refusal_says_why() -> None:
    store = issuing(quota_total=1, per_member_limit=1, issue_rule="qr_claim")
    feature = coupons_of(store.state)
    assert issue_problem(feature, "nope", "alice", AT, "manual") == ("campaign_unknown", "no campaign 'nope'")
    assert issue_problem(feature, "c1", "alice", AT, "after_payment") == (
        "issue_rule_mismatch", "campaign 'c1' issues by qr_claim, not after_payment")
    assert issue_problem(feature, "c1", "alice", END, "manual") == (
        "campaign_not_active", f"campaign 'c1' runs {START} to {END}")
    assert issue_problem(feature, "c1", None, AT, "qr_claim") == (
        "member_required", "a claim with a per-member limit needs a member")
    store.given("coupon.issued", issued(1, "alice", source="qr_claim"))
    assert issue_problem(feature, "c1", "bob", AT, "manual") == (
        "quota_exhausted", "campaign 'c1' issued all 1 coupons")
    feature.campaigns["c1"].spec = spec(campaign_id="c1", quota_total=10, per_member_limit=1)
    assert issue_problem(feature, "c1", "alice", AT, "manual") == ("member_limit_reached", "at most 1 per member")


def test_a_store_holds_at_most_coupons_max_coupons(monkeypatch: pytest.MonkeyPatch) -> None:
    from pos_ledger.catalog import coupons

    store = issuing(quota_total=10)
    store.given("coupon.issued", issued(1))
    monkeypatch.setattr(coupons, "COUPONS_MAX", 2)
    assert issue_problem(coupons_of(store.state), "c1", "alice", AT, "manual") == ("", "")
    store.given("coupon.issued", issued(2))
    assert issue_problem(coupons_of(store.state), "c1", "alice", AT, "manual") == (
        "coupons_full", "at most 2 coupons per store")
