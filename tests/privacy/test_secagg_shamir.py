"""Shamir secret sharing and the fixed-point ring encoding: pure functions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.privacy.secagg import FixedPoint, SecureAggregationError
from medfed.privacy.secagg.encoding import decode, encode
from medfed.privacy.secagg.shamir import PRIME, Share, reconstruct_secret, split_secret

SECRET = 0x1234_5678_9ABC_DEF0 << 190


def test_any_t_shares_reconstruct_the_secret() -> None:
    shares = split_secret(SECRET, threshold=3, xs=[1, 2, 3, 4, 5])
    for subset in itertools.combinations(shares, 3):
        assert reconstruct_secret(subset) == SECRET
    assert reconstruct_secret(shares) == SECRET  # more than t also works


def test_t_minus_one_shares_do_not_reveal_the_secret() -> None:
    shares = split_secret(SECRET, threshold=3, xs=[1, 2, 3, 4, 5])
    for subset in itertools.combinations(shares, 2):
        assert reconstruct_secret(subset) != SECRET


def test_lagrange_at_zero_by_hand() -> None:
    # f(x) = 7 + 2x: f(1) = 9, f(3) = 13; interpolation at 0 gives 7.
    assert reconstruct_secret([Share(1, 9), Share(3, 13)]) == 7


@settings(max_examples=25, deadline=None)
@given(
    secret=st.integers(min_value=0, max_value=PRIME - 1),
    n=st.integers(min_value=1, max_value=7),
    data=st.data(),
)
def test_reconstruction_property(secret: int, n: int, data: st.DataObject) -> None:
    threshold = data.draw(st.integers(min_value=1, max_value=n))
    shares = split_secret(secret, threshold=threshold, xs=list(range(1, n + 1)))
    chosen = data.draw(st.permutations(shares))[:threshold]
    assert reconstruct_secret(chosen) == secret


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0, "xs": [1, 2]}, "threshold"),
        ({"threshold": 3, "xs": [1, 2]}, "threshold"),
        ({"threshold": 2, "xs": [1, 1]}, "distinct"),
        ({"threshold": 1, "xs": [0, 1]}, r"\[1, PRIME\)"),
    ],
)
def test_bad_sharing_arguments_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        split_secret(5, **kwargs)


def test_duplicate_points_cannot_be_interpolated() -> None:
    with pytest.raises(ValueError, match="distinct"):
        reconstruct_secret([Share(1, 2), Share(1, 3)])


@pytest.mark.parametrize("ring_bits", [32, 64])
def test_fixed_point_sum_wraps_and_decodes(ring_bits: int) -> None:
    code = FixedPoint(fraction_bits=12, ring_bits=ring_bits)
    values = [np.array([1.5, -2.25, 0.0]), np.array([-3.0, 0.25, -1e-4])]
    total = sum(encode(v, code, summands=2) for v in values)
    np.testing.assert_allclose(decode(total, code), [-1.5, -2.0, 0.0], atol=2**-12)


def test_values_beyond_the_overflow_bound_are_rejected() -> None:
    code = FixedPoint(fraction_bits=16, ring_bits=32)
    bound = code.max_abs(4)  # (2^31 - 1) / (4 * 2^16) ~ 8192
    encode(np.array([bound]), code, summands=4)
    with pytest.raises(SecureAggregationError, match="overflow bound"):
        encode(np.array([bound * 1.01]), code, summands=4)
    with pytest.raises(SecureAggregationError, match="NaN"):
        encode(np.array([np.nan]), code, summands=4)


def test_bad_fixed_point_code_is_rejected() -> None:
    with pytest.raises(ValueError, match="ring_bits"):
        FixedPoint(ring_bits=16)
    with pytest.raises(ValueError, match="fraction_bits"):
        FixedPoint(fraction_bits=40, ring_bits=32)
