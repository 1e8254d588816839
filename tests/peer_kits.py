"""Peers of a provisioned test project talking over mutual TLS in this process: the certificate
gate of a site's kit, a peer serving on a free loopback port, and a channel to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from medfed.deployment.peer import PeerLinks, PeerSettings
from medfed.deployment.peer_replication import ChainCopies
from medfed.deployment.site_identity import PeerVerifier, ProvisionedIdentity
from medfed.provision import CertificateGate, load_client_kit
from medfed.transport.peer import (
    ChainSource,
    ModelShelf,
    PeerChannel,
    PeerServicer,
    Signer,
    start_peer_server,
)
from medfed.transport.tls import server_credentials


def kit_gate(kits: Path, site: str) -> CertificateGate:
    """The CA and revocation list of ``site``'s kit, as it checks its peers."""
    kit = load_client_kit(kits / site)
    assert kit.crl is not None
    return CertificateGate(kit.tls.ca_certificate, kit.crl)


def kit_signer(kits: Path, site: str, tamper: Callable[[bytes], bytes] = bytes) -> Signer:
    """``site`` signing its answers with its kit's key (over ``tamper(what it should sign)``)."""
    identity = ProvisionedIdentity(load_client_kit(kits / site).tls)
    return lambda data: (identity.certificate, identity.sign(tamper(data)))


@contextmanager
def serving_peer(
    kits: Path,
    site: str,
    shelf: ModelShelf,
    *,
    peers: Sequence[str],
    sign: Signer | None = None,
    chains: ChainSource | None = None,
) -> Iterator[str]:
    """``site`` serving ``shelf`` (and ``chains``) to ``peers`` on a free loopback port; yields
    its address."""
    servicer = PeerServicer(
        shelf,
        name=site,
        peers=peers,
        authenticate=kit_gate(kits, site),
        sign=sign or kit_signer(kits, site),
        chains=chains,
    )
    credentials = server_credentials(load_client_kit(kits / site).tls)
    server, port = start_peer_server(servicer, address="127.0.0.1:0", credentials=credentials)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=0).wait(timeout=10)


def peer_channel(kits: Path, address: str, *, peer: str, site: str) -> PeerChannel:
    """``site``'s channel to ``peer`` at ``address``."""
    return PeerChannel(
        address,
        name=site,
        peer=peer,
        tls=load_client_kit(kits / site).tls,
        verify=PeerVerifier(kit_gate(kits, site)),
        timeout_s=10,
        limit=1 << 20,
    )


def peer_links(
    kits: Path, site: str, peers: dict[str, str], *, copies: ChainCopies | None = None
) -> PeerLinks:
    """``site``'s links to ``peers`` (name: address), as ``medfed peer`` builds them."""
    kit = load_client_kit(kits / site)
    settings = PeerSettings(
        name=site,
        peers=peers,
        listen="127.0.0.1:0",
        state_dir=kits,
        tls=kit.tls,
        authenticate=kit_gate(kits, site),
        verify=PeerVerifier(kit_gate(kits, site)),
        sign=kit_signer(kits, site),
    )
    return PeerLinks(settings, timeout_s=10, copies=copies)
