"""Creating and checking the parameters of one secure aggregation."""

from __future__ import annotations

import os
from collections.abc import Collection

from medfed.privacy.secagg.encoding import FixedPoint
from medfed.privacy.secagg.errors import SecureAggregationError
from medfed.privacy.secagg.messages import SecAggConfig

SESSION_BYTES = 16


def new_config(
    *, client_ids: Collection[int], threshold: int, vector_length: int, code: FixedPoint
) -> SecAggConfig:
    """A checked ``SecAggConfig`` with a fresh random session id.

    Args:
        client_ids: The invited clients' ids (distinct integers >= 1).
        threshold: Shamir threshold ``t`` with ``n / 2 < t <= n``.
        vector_length: Elements per input (>= 1).
        code: The fixed-point code.

    Raises:
        ValueError: If an argument is out of range.
    """
    config = SecAggConfig(
        session=os.urandom(SESSION_BYTES),
        client_ids=tuple(sorted(client_ids)),
        threshold=threshold,
        vector_length=vector_length,
        fraction_bits=code.fraction_bits,
        ring_bits=code.ring_bits,
    )
    check_config(config)
    return config


def check_config(config: SecAggConfig) -> None:
    """Raises ``ValueError`` unless ``config`` describes a sound aggregation.

    The threshold must exceed half the clients (``t > n / 2``): with a smaller threshold two
    disjoint groups of clients could be asked for different kinds of shares of one client,
    revealing both its self mask and its pairwise masks (Bonawitz et al. 2017, section 4).
    """
    n = len(config.client_ids)
    if len(config.session) != SESSION_BYTES:
        raise ValueError(f"session must have {SESSION_BYTES} bytes, got {len(config.session)}")
    if n < 2:
        raise ValueError(f"secure aggregation needs at least 2 clients, got {n}")
    if len(set(config.client_ids)) != n or min(config.client_ids) < 1:
        raise ValueError("client_ids must be distinct integers >= 1")
    if not n / 2 < config.threshold <= n:
        raise ValueError(
            f"threshold must satisfy n/2 < threshold <= n for n={n} clients, got {config.threshold}"
        )
    if config.vector_length < 1:
        raise ValueError(f"vector_length must be >= 1, got {config.vector_length}")
    FixedPoint(config.fraction_bits, config.ring_bits)  # validates both


def code_of(config: SecAggConfig) -> FixedPoint:
    """The fixed-point code ``config`` names."""
    return FixedPoint(fraction_bits=config.fraction_bits, ring_bits=config.ring_bits)


def require_quorum(stage: str, survivors: Collection[int], threshold: int) -> None:
    """Raises ``SecureAggregationError`` if fewer than ``threshold`` clients are left."""
    if len(survivors) < threshold:
        raise SecureAggregationError(
            f"{stage}: only {len(survivors)} clients left, the threshold is {threshold}; "
            "the sum cannot be recovered and is not returned"
        )


def require_session(config: SecAggConfig, session: bytes, what: str) -> None:
    """Raises ``SecureAggregationError`` if a message belongs to another session."""
    if session != config.session:
        raise SecureAggregationError(f"{what} belongs to another session")
