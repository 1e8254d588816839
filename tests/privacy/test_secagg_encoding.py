"""The fixed-point bound of secure aggregation, at, just inside and just outside the bound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medfed.privacy.secagg.encoding import FixedPoint, decode, encode
from medfed.privacy.secagg.errors import SecureAggregationError

CODES = [FixedPoint(fraction_bits=24, ring_bits=64), FixedPoint(fraction_bits=16, ring_bits=32)]
SUMMANDS = range(2, 11)


def _ring_sum(value: float, code: FixedPoint, n: int) -> float:
    """``n`` copies of ``value`` encoded, summed modulo ``2^k`` and decoded."""
    codes = [encode(np.array([value]), code, summands=n) for _ in range(n)]
    return float(decode(sum(codes[1:], codes[0]), code)[0])


def _first_outside(code: FixedPoint, n: int) -> float:
    """The smallest float whose code is above ``max_scaled(n)``."""
    above = float(code.max_scaled(n) + 1)
    if int(above) < code.max_scaled(n) + 1:
        above = math.nextafter(above, math.inf)
    return math.ldexp(above, -code.fraction_bits)


@pytest.mark.parametrize("code", CODES, ids=["64-bit", "32-bit"])
@pytest.mark.parametrize("n", SUMMANDS)
def test_sums_at_and_just_inside_the_bound_keep_their_sign(code: FixedPoint, n: int) -> None:
    bound = code.max_abs(n)
    for value in (bound, math.nextafter(bound, 0.0)):
        for sign in (1.0, -1.0):
            total = _ring_sum(sign * value, code, n)
            assert math.copysign(1.0, total) == sign
            assert total == pytest.approx(sign * n * value, rel=1e-12, abs=n * 2.0**-code.fraction_bits)


@pytest.mark.parametrize("code", CODES, ids=["64-bit", "32-bit"])
@pytest.mark.parametrize("n", SUMMANDS)
def test_values_just_outside_the_bound_are_refused(code: FixedPoint, n: int) -> None:
    outside = _first_outside(code, n)
    assert outside > code.max_abs(n)
    for sign in (1.0, -1.0):
        with pytest.raises(SecureAggregationError, match="overflow bound"):
            encode(np.array([0.0, sign * outside]), code, summands=n)


@pytest.mark.parametrize("n", SUMMANDS)
def test_on_the_64_bit_ring_the_next_float_above_the_bound_is_refused(n: int) -> None:
    code = CODES[0]
    with pytest.raises(SecureAggregationError, match="overflow bound"):
        encode(np.array([math.nextafter(code.max_abs(n), math.inf)]), code, summands=n)


def test_values_beyond_the_int64_range_are_refused_not_cast() -> None:
    with pytest.raises(SecureAggregationError, match="overflow bound"):
        encode(np.array([1e300]), CODES[0], summands=2)


def test_summands_below_one_are_rejected() -> None:
    with pytest.raises(ValueError, match="summands"):
        FixedPoint().max_scaled(0)
