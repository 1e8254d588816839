"""Errors raised by secure aggregation."""

from __future__ import annotations

from medfed.errors import MedfedError


class SecureAggregationError(MedfedError):
    """Secure aggregation cannot produce a correct sum, or a message breaks the protocol.

    Raised instead of ever returning a wrong or partially unmasked sum: too few survivors to
    reach the Shamir threshold, a message from an unknown client or for another session, a
    share that fails authentication, or an input that would overflow the ring.
    """
