"""The job of a peer-to-peer deployment (``medfed peer``), and the peers file that says where
every site listens.

Every site runs the same job file: the pieces of ``medfed simulate``'s schema (model, strategy,
training, ``federation.topology``: braintorrent, cyclic or gossip), so a configuration tried in simulation carries
over, plus the deadlines of calls between peers.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import Field, model_validator

from medfed.config.schema import FederationConfig, TopologyConfig, check_serverless
from medfed.deployment.job import SiteJob
from medfed.errors import ConfigError
from medfed.provision.project import SITE_NAME

NETWORK_TOPOLOGIES = ("braintorrent", "cyclic", "gossip")
"""The peer-to-peer topologies that run over the network (every one ``medfed simulate`` runs)."""


class PeerJob(SiteJob):
    """A peer-to-peer job (YAML), e.g.::

        name: lesions-p2p
        model: {name: unet, params: {channels: [16, 32, 64], strides: [2, 2]}}
        federation: {rounds: 20, topology: braintorrent}
        call_timeout_s: 30
        finish_timeout_s: 600

    Attributes:
        name: The run's name.
        call_timeout_s: Deadline of one call to a peer, transfer included; a peer that misses
            it is skipped for that round.
        wait_for_peers_s: Longest wait before a round: before the first, for every peer to
            answer; later, for peers that answer but lag more than one round behind (gossip:
            for the peers that answer to train the round). Cyclic: a site waits this long per
            missing step for the model of the step before its own, then skips the missing sites.
        finish_timeout_s: After its last round, how long a site waits for its peers' final
            models (a peer still missing then is left out of the consensus), and then how long
            it keeps serving its own final model to peers that have not fetched it.
    """

    federation: FederationConfig = FederationConfig(topology=TopologyConfig(name="braintorrent"))
    name: str = "job"
    call_timeout_s: float = Field(30.0, gt=0, le=3600)
    wait_for_peers_s: float = Field(600.0, ge=0, le=7 * 24 * 3600)
    finish_timeout_s: float = Field(600.0, gt=0, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _over_the_network(self) -> PeerJob:
        topology = self.federation.topology.name
        if topology not in NETWORK_TOPOLOGIES:
            raise ValueError(
                f"federation.topology '{topology}': over the network medfed peer runs "
                f"{list(NETWORK_TOPOLOGIES)} ({topology} runs in 'medfed simulate')"
            )
        if self.federation.topology.pulls_per_round is not None:
            raise ValueError(
                "federation.topology.pulls_per_round is for 'medfed simulate': every peer pulls once a round"
            )
        if self.federation.engine != "in_memory":
            raise ValueError(f"federation.engine '{self.federation.engine}' is for 'medfed simulate'")
        if self.federation.fraction != 1.0:
            raise ValueError(f"topology '{topology}' decides who trains: leave federation.fraction at 1")
        check_serverless(topology, [self.strategy], self.privacy)
        return self

    def job_json(self) -> str:
        """The site-relevant part as canonical JSON (what ``SiteBuilder`` builds a site from)."""
        site = SiteJob.model_validate(self.model_dump(include=set(SiteJob.model_fields)))
        return json.dumps(site.model_dump(mode="json"), sort_keys=True)


def load_peers(path: Path) -> dict[str, str]:
    """Every site's address, from a YAML mapping of site name to ``host:port``::

        hospital_a: 10.0.0.5:9443
        hospital_b: fl.hospital-b.org:9443

    Raises:
        ConfigError: The file is unreadable, or a name or an address is malformed.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"peers file '{path}': {error}") from None
    if not isinstance(raw, dict) or len(raw) < 2:
        raise ConfigError(f"peers file '{path}' must map at least two site names to host:port")
    peers = {}
    for name, address in raw.items():
        host, _, port = str(address).rpartition(":")
        if not (isinstance(name, str) and SITE_NAME.fullmatch(name)):
            raise ConfigError(f"peers file '{path}': '{name}' is not a site name")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ConfigError(
                f"peers file '{path}': site '{name}' has address '{address}', expected host:port"
            )
        peers[name] = str(address)
    return peers
