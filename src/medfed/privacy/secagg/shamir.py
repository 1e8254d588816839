"""Shamir secret sharing over the prime field GF(2^521 - 1).

Shamir, "How to Share a Secret", Communications of the ACM 22(11), 1979. A secret ``s`` is the
constant term of a random polynomial ``f`` of degree ``t - 1``; share ``i`` is ``(x_i, f(x_i))``.
Any ``t`` shares give ``f(0) = s`` by Lagrange interpolation; ``t - 1`` shares are independent
of ``s``. The Mersenne prime 2^521 - 1 holds any 256-bit secret (an X25519 key, a mask seed).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

PRIME = 2**521 - 1
"""The field modulus, a Mersenne prime."""

SHARE_BYTES = (PRIME.bit_length() + 7) // 8
"""Bytes of one encoded share value (66)."""


@dataclass(frozen=True)
class Share:
    """One point ``(x, y)`` of the sharing polynomial.

    Attributes:
        x: The evaluation point, in ``[1, PRIME)``; in secure aggregation the holder's id.
        y: The polynomial's value at ``x``, in ``[0, PRIME)``.
    """

    x: int
    y: int


def split_secret(secret: int, *, threshold: int, xs: Sequence[int]) -> list[Share]:
    """Shares ``secret`` so that any ``threshold`` of the returned shares recover it.

    Args:
        secret: The value to share, in ``[0, PRIME)``.
        threshold: Shares needed to reconstruct (``1 <= threshold <= len(xs)``).
        xs: Distinct non-zero evaluation points, one per share holder.

    Returns:
        One share per entry of ``xs``, in the same order.

    Raises:
        ValueError: If an argument is out of range or ``xs`` has duplicates.
    """
    if not 0 <= secret < PRIME:
        raise ValueError("secret must lie in [0, PRIME)")
    _check_points(xs)
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must lie in [1, {len(xs)}], got {threshold}")
    coefficients = [secret] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return [Share(x, _evaluate(coefficients, x)) for x in xs]


def reconstruct_secret(shares: Sequence[Share]) -> int:
    """The constant term of the polynomial through ``shares`` (Lagrange interpolation at 0).

    With at least ``threshold`` shares of one sharing this is the secret; with fewer it is a
    value unrelated to the secret. The caller must therefore pass ``threshold`` shares or more.

    Raises:
        ValueError: If ``shares`` is empty or two shares have the same ``x``.
    """
    if not shares:
        raise ValueError("reconstruct_secret needs at least one share")
    _check_points([share.x for share in shares])
    secret = 0
    for i, share in enumerate(shares):
        numerator, denominator = 1, 1
        for j, other in enumerate(shares):
            if i != j:
                numerator = numerator * other.x % PRIME
                denominator = denominator * (other.x - share.x) % PRIME
        secret += share.y * numerator * pow(denominator, -1, PRIME)
    return secret % PRIME


def encode_share_value(y: int) -> bytes:
    """``y`` as ``SHARE_BYTES`` big-endian bytes."""
    return y.to_bytes(SHARE_BYTES, "big")


def decode_share_value(data: bytes) -> int:
    """The field element encoded by ``encode_share_value``; ``ValueError`` if out of range."""
    if len(data) != SHARE_BYTES:
        raise ValueError(f"a share value has {SHARE_BYTES} bytes, got {len(data)}")
    y = int.from_bytes(data, "big")
    if y >= PRIME:
        raise ValueError("share value is not a field element")
    return y


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for coefficient in reversed(coefficients):  # Horner's rule
        result = (result * x + coefficient) % PRIME
    return result


def _check_points(xs: Sequence[int]) -> None:
    if any(not 0 < x < PRIME for x in xs):
        raise ValueError("evaluation points must lie in [1, PRIME)")
    if len(set(xs)) != len(xs):
        raise ValueError("evaluation points must be distinct")
