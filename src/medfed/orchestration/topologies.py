"""A topology from its configuration section (``federation.topology``)."""

from __future__ import annotations

from collections.abc import Sequence

from medfed.config.schema import TopologyConfig
from medfed.errors import ConfigError
from medfed.topology.braintorrent import BrainTorrent
from medfed.topology.cyclic import CyclicTransfer
from medfed.topology.gossip import Gossip
from medfed.topology.graphs import build_graph
from medfed.topology.peers import Topology


def build_topology(settings: TopologyConfig, sites: Sequence[str], *, seed: int) -> Topology:
    """The peer-to-peer topology ``settings`` names over ``sites``; randomness from ``seed``.

    Raises:
        ConfigError: ``settings`` names client_server, or no such gossip graph exists.
    """
    if settings.name == "braintorrent":
        return BrainTorrent(seed=seed, pulls_per_round=settings.pulls_per_round)
    if settings.name == "cyclic":
        return CyclicTransfer(seed=seed, order=settings.order)
    if settings.name == "gossip":
        try:
            graph = build_graph(settings.graph, sites, degree=settings.degree, seed=seed)
        except ValueError as error:
            raise ConfigError(f"federation.topology: {error}") from None
        return Gossip(graph=graph)
    raise ConfigError(f"federation.topology '{settings.name}' is not peer-to-peer")
