"""Reproducible partial participation."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from medfed.seeding import derive_seed


def sample_sites(
    sites: Sequence[str], *, fraction: float, min_sites: int, seed: int, round: int
) -> list[str]:
    """The sites taking part in ``round``: ``ceil(fraction * len(sites))`` of them, at least
    ``min_sites``, drawn without replacement from a generator seeded by ``(seed, round)``.

    The draw depends only on the seed, the round and the sorted site names, so a resumed run or a
    restarted server picks the same sites again.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ordered = sorted(sites)
    count = min(len(ordered), max(min_sites, math.ceil(fraction * len(ordered))))
    if count == len(ordered):
        return ordered
    return sorted(random.Random(derive_seed(seed, "sample", round)).sample(ordered, count))
