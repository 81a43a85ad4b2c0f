"""The RFM scoring and segment mapping documented in the members report's OpenAPI description."""

from __future__ import annotations

import pytest

from projections.reports import RFM_DESCRIPTION, SEGMENTS, rfm, round_ratio, segment


@pytest.mark.parametrize(("recency_days", "orders", "net_minor", "scores"), [
    (0, 1, 0, (5, 1, 1)),
    (7, 2, 4_999, (5, 2, 1)),
    (8, 3, 5_000, (4, 3, 2)),
    (14, 4, 19_999, (4, 3, 2)),
    (15, 5, 20_000, (3, 4, 3)),
    (30, 9, 50_000, (3, 4, 4)),
    (31, 10, 99_999, (2, 5, 4)),
    (60, 10, 100_000, (2, 5, 5)),
    (61, 100, 10**9, (1, 5, 5)),
])
def test_scores_at_their_thresholds(recency_days: int, orders: int, net_minor: int,
                                    scores: tuple[int, int, int]) -> None:
    assert rfm(recency_days, orders, net_minor) == scores


@pytest.mark.parametrize(("scores", "name"), [
    ((5, 5, 5), "champions"), ((4, 4, 4), "champions"), ((4, 4, 3), "loyal"), ((3, 5, 1), "loyal"),
    ((5, 3, 5), "potential_loyalists"), ((4, 2, 1), "potential_loyalists"), ((5, 1, 5), "new_customers"),
    ((2, 3, 1), "at_risk"), ((1, 5, 5), "at_risk"), ((2, 2, 5), "hibernating"), ((1, 1, 1), "hibernating"),
    ((3, 3, 3), "need_attention"), ((3, 1, 1), "need_attention"),
])
def test_first_matching_rule_names_the_segment(scores: tuple[int, int, int], name: str) -> None:
    assert segment(*scores) == name


def test_every_segment_is_documented() -> None:
    assert all(f"`{name}`" in RFM_DESCRIPTION for name in SEGMENTS)


def test_rates_round_half_even_to_four_places() -> None:
    assert (round_ratio(0, 0), round_ratio(1, 3), round_ratio(2, 3), round_ratio(1, 2)) == (0.0, 0.3333, 0.6667, 0.5)
    assert round_ratio(1, 80_000) == 0.0 and round_ratio(3, 80_000) == 0.0  # 0.0000125 -> 0.0000, 0.0000375 -> 0.0000
    assert round_ratio(5, 80_000) == 0.0001  # 0.0000625 -> 0.0001
    assert round_ratio(4, 80_000) == 0.0  # 0.00005 exactly: half-even to 0.0000
