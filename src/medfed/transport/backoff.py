"""Exponential backoff with jitter for reconnecting sites."""

from __future__ import annotations

import random

DEFAULT_MAX_FAILURES = 10
"""Failed calls in a row after which a site gives up (with the default delays, one
to two minutes of trying); 0 retries forever."""


class Backoff:
    """Delays ``initial * factor**n`` capped at ``maximum``, each scaled by a random factor in
    ``[1 - jitter, 1]`` so that sites cut off together do not reconnect together.

    Args:
        initial: First delay in seconds.
        maximum: Largest delay in seconds.
        factor: Growth per failure.
        jitter: Fraction of each delay that is random, in ``[0, 1]``.
        seed: Seed of the jitter (``None``: from the OS).
    """

    def __init__(
        self,
        *,
        initial: float = 0.5,
        maximum: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        seed: int | None = None,
    ) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"need 0 < initial <= maximum, got {initial} and {maximum}")
        if factor < 1 or not 0 <= jitter <= 1:
            raise ValueError(f"need factor >= 1 and 0 <= jitter <= 1, got {factor} and {jitter}")
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._random = random.Random(seed)
        self._failures = 0

    def next_delay(self) -> float:
        """The delay in seconds before the next attempt; each call counts one more failure."""
        base = min(self.maximum, self.initial * self.factor**self._failures)
        self._failures += 1
        return base * (1 - self.jitter * self._random.random())

    def reset(self) -> None:
        """Forgets past failures (after a successful call)."""
        self._failures = 0
