"""Communication graphs of gossip averaging: a ring, a random regular graph, all pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import networkx as nx

GraphKind = Literal["ring", "random_regular", "complete"]

Neighbours = dict[str, tuple[str, ...]]
"""Each site's neighbours, sorted; the relation is symmetric."""


def build_graph(kind: GraphKind, sites: Sequence[str], *, degree: int = 2, seed: int = 0) -> Neighbours:
    """The ``kind`` graph over ``sites`` (taken in sorted order).

    Args:
        kind: ``ring`` (each site with the one before and after it), ``random_regular`` (every
            site with ``degree`` neighbours drawn from ``seed``) or ``complete`` (all pairs).
        sites: The sites, at least two.
        degree: Neighbours of every site in a random regular graph.
        seed: Seed of the random regular graph.

    Raises:
        ValueError: Fewer than two sites, or no ``degree``-regular graph on them exists
            (``degree`` must be below the number of sites, and their product even).
    """
    names = sorted(sites)
    n = len(names)
    if n < 2 or len(set(names)) != n:
        raise ValueError(f"a communication graph needs at least two distinct sites, got {names}")
    if kind == "ring":
        graph = nx.cycle_graph(n)
    elif kind == "complete":
        graph = nx.complete_graph(n)
    elif kind == "random_regular":
        if not 1 <= degree < n or (degree * n) % 2:
            raise ValueError(
                f"no {degree}-regular graph on {n} sites: degree must lie in [1, {n - 1}] "
                "and degree x sites must be even"
            )
        graph = nx.random_regular_graph(degree, n, seed=seed)
    else:
        raise ValueError(f"unknown graph '{kind}': valid graphs are ring, random_regular, complete")
    return {names[i]: tuple(sorted(names[j] for j in graph.neighbors(i))) for i in range(n)}
