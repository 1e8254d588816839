"""Mixing of peers' models in serverless federations: gossip averaging and consensus.

Decentralised SGD (Lian et al., "Can Decentralized Algorithms Outperform Centralized
Algorithms?", NeurIPS 2017) replaces the server's average by a mixing step: every site averages
its model with its neighbours' through a doubly stochastic matrix ``W``, so that repeated steps
drive every model to the sites' plain average (the consensus). ``metropolis_weights`` gives such a
matrix for any undirected graph (Xiao and Boyd, "Fast linear iterations for distributed
averaging", 2004); on a regular graph it is the uniform average over the closed neighbourhood.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from medfed.aggregation.mean import weighted_mean
from medfed.types import Weights

MixingMatrix = Mapping[str, Mapping[str, float]]
"""``W[i][j]``: the weight site ``i`` gives to site ``j``'s model (rows sum to 1)."""


def metropolis_weights(neighbours: Mapping[str, Collection[str]]) -> dict[str, dict[str, float]]:
    """The Metropolis-Hastings mixing matrix of an undirected graph.

    ``W[i][j] = 1 / (1 + max(d_i, d_j))`` for each neighbour ``j`` of ``i`` (``d``: degree) and
    ``W[i][i] = 1 - sum_j W[i][j]``; the matrix is symmetric and doubly stochastic.

    Args:
        neighbours: Each site's neighbours; the relation must be symmetric and name only sites
            that are keys.

    Raises:
        ValueError: A neighbour is unknown, a site is its own neighbour or an edge is one-way.
    """
    for site, peers in neighbours.items():
        for peer in peers:
            if peer == site or peer not in neighbours or site not in neighbours[peer]:
                raise ValueError(f"edge '{site}' - '{peer}' is not an undirected edge between two sites")
    matrix: dict[str, dict[str, float]] = {}
    for site, peers in neighbours.items():
        row = {peer: 1.0 / (1 + max(len(peers), len(neighbours[peer]))) for peer in peers}
        row[site] = 1.0 - sum(row.values())
        matrix[site] = row
    return matrix


def mix(models: Mapping[str, Weights], matrix: MixingMatrix) -> dict[str, Weights]:
    """One mixing step: each site ``i`` of ``matrix`` gets ``sum_j W[i][j] * models[j]``.

    Floating tensors are mixed; integer buffers take the elementwise maximum (``weighted_mean``).
    """
    return {
        site: weighted_mean((models[peer], weight) for peer, weight in row.items())
        for site, row in matrix.items()
    }


def consensus(models: Iterable[Weights]) -> Weights:
    """The plain average of ``models``: what gossip converges to, and a serverless federation's
    shared model."""
    return weighted_mean((model, 1.0) for model in models)
