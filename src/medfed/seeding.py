"""Deterministic seeds derived from a run's seed, so that any round can be replayed alone."""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *parts: object) -> int:
    """A 31-bit seed determined by ``seed`` and ``parts`` (e.g. round number and site name)."""
    text = "/".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
