"""The simulator's figures: Jain's index and percentiles."""

from __future__ import annotations

import pytest

from scheduler.sim.metrics import jain_index, percentile


def test_equal_shares_are_perfectly_fair() -> None:
    assert jain_index([5.0, 5.0, 5.0, 5.0]) == pytest.approx(1.0)


def test_one_owner_taking_everything_scores_one_over_n() -> None:
    assert jain_index([10.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 100) == 4.0
    assert percentile([], 95) == 0.0
