"""Member rules (pos_ledger/catalog/members.py): the best recharge rule and its tie-breaks, the
spending order, points earned and reversed, tiers; worked examples from the README's definitions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pos_ledger.catalog.conflicts import conflicts_of
from pos_ledger.catalog.members import (
    MemberProgramConfigured,
    RechargeRule,
    TierRule,
    best_recharge_rule,
    members_of,
    points_for,
    tier_for,
)
from tests.rules_support import Store, net


def program(*rules: tuple[str, int, int, int]) -> MemberProgramConfigured:
    return MemberProgramConfigured(recharge_rules=[RechargeRule(name, paid_min, bonus, basis_points)
                                                   for name, paid_min, bonus, basis_points in rules])


# ---- best recharge rule: largest bonus; a tie goes to the larger paid_minor_min ----


@pytest.mark.parametrize("reverse", [False, True])
def test_rules_tied_on_bonus_go_to_the_larger_threshold(reverse: bool) -> None:
    rules = [("from 50", 5_000, 2_000, 0), ("from 100", 10_000, 2_000, 0)]
    chosen = program(*(reversed(rules) if reverse else rules))
    assert best_recharge_rule(chosen, 10_000) == ("from 100", 2_000)  # whatever the order they are listed in
    assert best_recharge_rule(chosen, 9_999) == ("from 50", 2_000)  # below 100 only the other applies


@pytest.mark.parametrize("reverse", [False, True])
def test_a_higher_threshold_giving_the_same_bonus_wins_the_tie(reverse: bool) -> None:
    # 10 % of 20,000 is 2,000: the same bonus as the flat rule from 200.
    rules = [("ten percent", 0, 0, 1_000), ("from 200 get 20", 20_000, 2_000, 0)]
    chosen = program(*(reversed(rules) if reverse else rules))
    assert best_recharge_rule(chosen, 20_000) == ("from 200 get 20", 2_000)
    assert best_recharge_rule(chosen, 20_010) == ("ten percent", 2_001)  # now ten percent gives more


def test_the_largest_bonus_wins_whatever_its_threshold() -> None:
    chosen = program(("pay 100 get 20", 10_000, 2_000, 0), ("pay 300 get 80", 30_000, 8_000, 0),
                     ("pay 500 get 10%+100", 50_000, 10_000, 1_000))
    assert best_recharge_rule(chosen, 50_000) == ("pay 500 get 10%+100", 15_000)
    assert best_recharge_rule(chosen, 49_999) == ("pay 300 get 80", 8_000)
    assert best_recharge_rule(chosen, 30_000) == ("pay 300 get 80", 8_000)
    assert best_recharge_rule(chosen, 10_000) == ("pay 100 get 20", 2_000)
    assert best_recharge_rule(chosen, 9_999) == ("", 0)
    # A lower threshold with a bigger bonus beats a higher threshold.
    assert best_recharge_rule(program(("low", 100, 500, 0), ("high", 1_000, 400, 0)), 1_000) == ("low", 500)


def test_the_percentage_part_of_a_bonus_is_floored() -> None:
    # 12,345 x 10 % = 1,234.5 -> 1,234 (floor, not rounding): bonus 100 + 1,234.
    assert best_recharge_rule(program(("r", 0, 100, 1_000)), 12_345) == ("r", 1_334)
    assert best_recharge_rule(program(("r", 0, 0, 1_000)), 9) == ("r", 0)


@given(st.lists(st.tuples(st.integers(0, 50_000), st.integers(0, 10_000), st.integers(0, 100_000)),
                max_size=6), st.integers(1, 100_000))
def test_best_recharge_rule_is_the_maximum_by_bonus_then_threshold(rules: list[tuple[int, int, int]],
                                                                   paid: int) -> None:
    named = [(f"r{n}", *rule) for n, rule in enumerate(rules)]
    applicable = [(bonus + paid * bp // 10_000, paid_min, -n, name)
                  for n, (name, paid_min, bonus, bp) in enumerate(named) if paid >= paid_min]
    name, bonus = best_recharge_rule(program(*named), paid)
    if not applicable:
        assert (name, bonus) == ("", 0)
    else:
        expected = max(applicable)  # bonus, then threshold, then the first listed
        assert (name, bonus) == (expected[3], expected[0])


def test_points_and_tiers() -> None:
    rules = MemberProgramConfigured(earn_minor_per_point=100, tiers=[TierRule("gold", 2_000),
                                                                     TierRule("silver", 500)])
    assert points_for(rules, 12_399) == 123  # one point per whole yuan
    assert tier_for(rules, 499) == (0, "standard")
    assert tier_for(rules, 500) == (1, "silver")
    assert tier_for(rules, 1_999) == (1, "silver")
    assert tier_for(rules, 2_000) == (2, "gold")


# ---- given / when / then through the events ----


def member_store(**program_fields: Any) -> Store:
    store = Store()
    store.terminal("t1")
    store.given("member_program.configured", {
        "recharge_rules": [{"name": "pay 100 get 20", "paid_minor_min": 10_000, "bonus_minor": 2_000}],
        "tiers": [{"tier": "silver", "points_lifetime_min": 500}], **program_fields})
    store.given("member.registered", {"member_id": "m1", "card_id": "a" * 32})
    return store


def recharge(recharge_id: str, paid: int, bonus: int = 0, rule: str = "", **extra: Any) -> dict[str, Any]:
    return {"member_id": "m1", "recharge_id": recharge_id, "currency": "CNY", "paid_minor": paid,
            "bonus_minor": bonus, "rule_name": rule, **extra}


def test_a_recharge_bonus_must_be_exactly_what_its_rule_gives() -> None:
    store = member_store()
    assert store.refused("stored_value.recharged", recharge("r1", 10_000, 2_001, "pay 100 get 20")) == \
        "bonus_mismatch"
    assert store.refused("stored_value.recharged", recharge("r1", 9_999, 2_000, "pay 100 get 20")) == \
        "bonus_mismatch"  # the rule does not apply below its threshold
    assert store.refused("stored_value.recharged", recharge("r1", 10_000, 2_000)) == "bonus_mismatch"
    assert store.refused("stored_value.recharged", recharge("r1", 10_000, 2_000, "nope")) == "bonus_mismatch"
    postings = store.given("stored_value.recharged", recharge("r1", 10_000, 2_000, "pay 100 get 20", method="wechat"))
    assert net(postings) == {"asset:psp:wechat": 10_000, "liability:stored_value:m1:principal": -10_000,
                             "expense:promotion:recharge_bonus": 2_000, "liability:stored_value:m1:bonus": -2_000}
    assert store.refused("stored_value.recharged", recharge("r1", 1)) == "duplicate_recharge"


def test_spending_takes_principal_first_then_bonus_oldest_recharge_first() -> None:
    store = member_store()
    store.given("stored_value.recharged", recharge("old", 10_000, 2_000, "pay 100 get 20", method="card"))
    store.given("stored_value.recharged", recharge("new", 5_000, method="card"))
    spend = {"member_id": "m1", "spend_id": "s1", "currency": "CNY", "amount_minor": 16_000, "order_ref": "o1"}
    assert net(store.given("stored_value.spent", spend)) == {
        "liability:stored_value:m1:principal": 15_000, "liability:stored_value:m1:bonus": 1_000,
        "revenue:sales": -16_000}
    lots = members_of(store.state).members["m1"].lots
    assert [(lot.principal_minor, lot.bonus_left_minor) for lot in lots.values()] == [(0, 1_000), (0, 0)]
    over = {**spend, "spend_id": "s2", "amount_minor": 1_001}
    assert store.refused("stored_value.spent", over) == "insufficient_stored_value"
    # A terminal's fact overdraws: the shortfall becomes a receivable through a conflict.
    store.given("stored_value.spent", over, "t1")
    (conflict,) = conflicts_of(store.state).values()
    assert conflict.kind == "stored_value_overdrawn" and conflict.amount_minor == 1
    assert net(conflict.compensating_postings) == {"asset:receivable:stored_value:m1": 1,
                                                   "liability:stored_value:m1:principal": -1}


def test_a_refund_reverses_earned_points_floored_on_the_cumulative_share() -> None:
    store = member_store()
    store.given("points.earned", {"member_id": "m1", "order_ref": "o1", "base_minor": 3_000, "points": 10})
    member = members_of(store.state).members["m1"]

    def reverse(refund_id: str, refund_minor: int) -> dict[str, int]:
        return net(store.given("points.reversed", {"member_id": "m1", "order_ref": "o1", "refund_id": refund_id,
                                                   "refund_minor": refund_minor}))

    # floor(10 x 1,000 / 3,000) = 3, then floor(10 x 2,000 / 3,000) - 3 = 3, then 10 - 6 = 4.
    assert reverse("f1", 1_000) == {"liability:points:m1": 3, "memo:points:issued": -3}
    assert reverse("f2", 1_000) == {"liability:points:m1": 3, "memo:points:issued": -3}
    assert store.refused("points.reversed", {"member_id": "m1", "order_ref": "o1", "refund_id": "f3",
                                             "refund_minor": 1_001}) == "refund_exceeds_order"
    assert reverse("f3", 1_000) == {"liability:points:m1": 4, "memo:points:issued": -4}
    assert (member.points, member.points_lifetime) == (0, 0)


def test_points_earned_once_per_order_and_tiers_move_up() -> None:
    store = member_store()
    store.given("points.earned", {"member_id": "m1", "order_ref": "o1", "base_minor": 50_000, "points": 500})
    assert members_of(store.state).members["m1"].tier == "silver"  # 500 reaches silver: tier_changed followed
    assert store.refused("points.earned", {"member_id": "m1", "order_ref": "o1", "base_minor": 1,
                                           "points": 1}) == "points_already_earned"
    redeem = {"member_id": "m1", "redemption_id": "x1", "order_ref": "o2", "currency": "CNY", "points": 501,
              "discount_minor": 501}
    assert store.refused("points.redeemed", redeem) == "insufficient_points"
    assert net(store.decide("points.redeemed", {**redeem, "points": 500, "discount_minor": 500})) == {
        "liability:points:m1": 500, "memo:points:redeemed": -500,
        "contra:discount:points": 500, "contra:discount:manual": -500}
