"""Fixed-point encoding of real vectors into the ring Z_{2^k} where masks cancel exactly.

Bonawitz et al. 2017 (CCS'17) mask inputs in Z_R. A real ``v`` becomes
``round(v * 2^f) mod 2^k``; the modular sum of encodings decodes to the real sum as long as the
true integer sum stays in ``[-2^(k-1), 2^(k-1))``. ``encode`` enforces a per-input bound that
makes overflow impossible for ``n`` summands, checked in integer arithmetic on the rounded
codes: ``|round(v * 2^f)| <= (2^(k-1) - 1) // n`` (``FixedPoint.max_scaled``). Every
``|v| <= max_abs(n)``, about ``(2^(k-1) - 1) / (n * 2^f)``, passes. With the defaults
(k = 64, f = 24) and 10 sites that is about 5.5e10: ample for sample-weighted model parameters
``n_u * x_u``. The rounding error of a sum of ``n`` inputs is at most ``n * 2^-(f+1)`` per
element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfed.privacy.secagg.errors import SecureAggregationError

_RING_DTYPES: dict[int, np.dtype[np.unsignedinteger[Any]]] = {
    32: np.dtype(np.uint32),
    64: np.dtype(np.uint64),
}
_SIGNED_DTYPES: dict[int, np.dtype[np.signedinteger[Any]]] = {
    32: np.dtype(np.int32),
    64: np.dtype(np.int64),
}


@dataclass(frozen=True)
class FixedPoint:
    """A fixed-point code into Z_{2^ring_bits}.

    Attributes:
        fraction_bits: Bits after the binary point ``f`` (resolution ``2^-f``).
        ring_bits: Ring size ``k``: 32 or 64 bits per element on the wire.
    """

    fraction_bits: int = 24
    ring_bits: int = 64

    def __post_init__(self) -> None:
        if self.ring_bits not in _RING_DTYPES:
            raise ValueError(f"ring_bits must be 32 or 64, got {self.ring_bits}")
        if not 0 <= self.fraction_bits < self.ring_bits - 1:
            raise ValueError(f"fraction_bits must lie in [0, {self.ring_bits - 2}], got {self.fraction_bits}")

    @property
    def dtype(self) -> np.dtype[np.unsignedinteger[Any]]:
        """The unsigned numpy dtype of ring elements (arithmetic wraps modulo ``2^k``)."""
        return _RING_DTYPES[self.ring_bits]

    def max_scaled(self, summands: int) -> int:
        """The largest code ``|round(v * 2^f)|`` allowed in each of ``summands`` inputs: then
        the sum of the codes lies in ``[-(2^(k-1) - 1), 2^(k-1) - 1]`` and cannot wrap.

        Raises:
            ValueError: If ``summands < 1``.
        """
        if summands < 1:
            raise ValueError(f"summands must be >= 1, got {summands}")
        return (2 ** (self.ring_bits - 1) - 1) // summands

    def max_abs(self, summands: int) -> float:
        """The largest float ``|v|`` allowed in each of ``summands`` inputs: the largest float
        with ``v * 2^f <= max_scaled(summands)`` (so its rounded code is allowed too)."""
        limit = self.max_scaled(summands)
        bound = math.ldexp(float(limit), -self.fraction_bits)  # float(limit) may round up
        if int(math.ldexp(bound, self.fraction_bits)) > limit:
            bound = math.nextafter(bound, 0.0)
        return bound


DEFAULT_CODE = FixedPoint()
"""64-bit ring, 24 fraction bits."""


def encode(values: np.ndarray, code: FixedPoint, *, summands: int) -> np.ndarray:
    """``round(values * 2^f) mod 2^k`` as ring elements.

    Args:
        values: Real vector, shape ``(d,)``.
        code: The fixed-point code.
        summands: How many inputs will be summed (bounds the per-input magnitude).

    Raises:
        SecureAggregationError: If a value is not finite or its code exceeds
            ``code.max_scaled(summands)`` (the sum could wrap around the ring and decode to a
            wrong result).
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise SecureAggregationError("cannot encode NaN or infinite values")
    limit = code.max_scaled(summands)
    scaled = np.rint(values * 2.0**code.fraction_bits)  # integer-valued floats
    # Below 2^63 the conversion to int64 is exact; the bound is then checked in integers.
    if not (np.abs(scaled) < 2.0**63).all() or int(np.abs(scaled.astype(np.int64)).max(initial=0)) > limit:
        raise SecureAggregationError(
            f"value {float(np.abs(values).max()):.6g} exceeds the overflow bound "
            f"{code.max_abs(summands):.6g} of a {code.ring_bits}-bit ring with {code.fraction_bits} "
            f"fraction bits and {summands} summands; lower fraction_bits or use ring_bits=64"
        )
    return scaled.astype(np.int64).astype(_SIGNED_DTYPES[code.ring_bits]).view(code.dtype)


def decode(ring: np.ndarray, code: FixedPoint) -> np.ndarray:
    """The real vector (float64) a ring element vector encodes, read as two's complement."""
    signed = np.asarray(ring, dtype=code.dtype).view(_SIGNED_DTYPES[code.ring_bits])
    return signed.astype(np.float64) / 2.0**code.fraction_bits
