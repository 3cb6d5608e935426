"""Dollars as a dialect sends them, to integer cents: exact for every amount in whole cents, and
refused (never rounded) otherwise."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuyard.core.money import cents_of_dollars


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_whole_cents_come_back_exactly(cents: int) -> None:
    assert cents_of_dollars(cents / 100) == cents  # the float the JSON number decodes to
    assert cents_of_dollars(float(f"{cents / 100:.2f}")) == cents


@pytest.mark.parametrize(
    ("amount", "cents"), [(25.5, 2550), (0.1, 10), (0.29, 29), (1.15, 115), (7, 700), (0, 0)]
)
def test_known_amounts(amount: float, cents: int) -> None:
    result = cents_of_dollars(amount)
    assert result == cents and type(result) is int


@pytest.mark.parametrize("amount", [0.001, 1.005, 1e-9, math.nan, math.inf, -math.inf, True, "5"])
def test_not_whole_cents_is_refused(amount: object) -> None:
    with pytest.raises(ValueError):
        cents_of_dollars(amount)  # type: ignore[arg-type]
