"""``medfed peer``: one site of a serverless federation over the network (BrainTorrent here;
cyclic weight transfer and gossip averaging in ``medfed.deployment.peer_topologies``, with the
same links, checkpoints, chain and final consensus).

Every site is both a server and a client under its own kit identity: it serves its current model
to its peers (``medfed.transport.peer``) and, in each of the job's rounds, fetches every peer's
model that is newer than the one it last merged, then merges and trains with BrainTorrent's own
``pull`` (``medfed.topology.braintorrent``, the code ``medfed simulate`` runs) over a grid of
this one site. A site starts once every peer answers (or ``wait_for_peers_s`` passed) and never
runs more than one round ahead of a peer that answers (again up to ``wait_for_peers_s``). A peer that does not answer within ``call_timeout_s`` (offline, refused, revoked,
or with an invalid model) is skipped for that round, with one log line; the federation goes on.

Each round is checkpointed atomically before the new model is served, so a restarted site
resumes from its last round and catches up: its next pull fetches every model its peers trained
in the meantime. With a ledger key in its kit, a site records each round in its own provenance
chain (``medfed.deployment.peer_ledger``) before checkpointing it, serves its chain and its copies
of its peers' chains, merges a peer's model only once that peer's chain records it, and after
each round brings those copies up to date (``medfed.deployment.peer_replication``). After its last round a site fetches each peer's final
model (waiting up to ``finish_timeout_s``) and takes their consensus, the plain average a
simulation reports: every site that gathered the same final models holds the same bits; it then
keeps serving until its peers fetched its final model and all of its chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from medfed.aggregation import consensus
from medfed.deployment.client import check_certificate
from medfed.deployment.peer_job import PeerJob
from medfed.deployment.peer_ledger import PeerChain
from medfed.deployment.peer_replication import ChainCopies, chain_copies
from medfed.deployment.peer_topologies import PeerSite, opening_shelf, publish_model, run_rounds
from medfed.deployment.provenance import LedgerKeys, keep_signers, ledger_folder
from medfed.deployment.site_builder import SiteBuilder
from medfed.errors import CheckpointError, MedfedError, UpdateRejected
from medfed.models import build_model
from medfed.orchestration.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    load_checkpoint,
    model_metadata,
    save_checkpoint,
    save_round,
)
from medfed.orchestration.grid import InMemoryGrid
from medfed.orchestration.site import cpu_weights
from medfed.orchestration.topologies import build_topology
from medfed.orchestration.validation import validate_result
from medfed.privacy.setup import prepare_model
from medfed.provenance.digests import weights_digest
from medfed.topology.braintorrent import BrainTorrent
from medfed.topology.peers import PeerRound, PeerState, restored_state, saved_states
from medfed.transport.errors import AuthenticationError, PayloadError, TransportError
from medfed.transport.payload import decode_result
from medfed.transport.peer import (
    NONCE_BYTES,
    ModelRequest,
    ModelShelf,
    PeerAnswer,
    PeerChannel,
    PeerServicer,
    Signer,
    Verifier,
    call_failure,
    start_peer_server,
)
from medfed.transport.protobuf import Kind
from medfed.transport.server import Authenticator
from medfed.transport.tls import TlsFiles, server_credentials
from medfed.types import ServerState, TrainResult, TrainTask, Weights

logger = logging.getLogger(__name__)

MAX_VERSION = 10**9
"""Largest model version a peer may announce (versions count trainings)."""
MAX_MODEL_BYTES = 1 << 36
"""Largest model accepted from a peer (64 GiB): it must also match this site's model exactly."""
PEER_DIR = "peer"
"""The folder of a site's state folder that holds one folder per ``medfed peer`` job."""
FINAL_FILE = "final.safetensors"
"""The consensus a site ends with, in its run folder."""


@dataclass(frozen=True)
class PeerSettings:
    """Where and as whom a site runs (the job says what it runs).

    Attributes:
        name: This site's name (its certificate's).
        peers: The other sites' addresses (``host:port``) by name.
        listen: ``host:port`` this site serves its model on.
        state_dir: Checkpoints and the final model, under ``peer/<job name>/``.
        tls: This site's certificate, key and the project CA.
        authenticate: Maps a calling peer's certificate to its name (CA, dates, CRL).
        verify: Checks an answering peer's signed answer (CA, dates, CRL, name, signature).
        sign: Signs this site's answers with its kit key.
        poll_s: Pause between attempts while waiting for peers' final models.
        ledger: This site's provenance-ledger key and the signer list (``None``: no chain).
    """

    name: str
    peers: Mapping[str, str]
    listen: str
    state_dir: Path
    tls: TlsFiles
    authenticate: Authenticator
    verify: Verifier
    sign: Signer
    poll_s: float = 1.0
    ledger: LedgerKeys | None = None


@dataclass(frozen=True)
class PeerOutcome:
    """How a site's run ended: its rounds, the sites whose final models it averaged, the
    consensus's metrics on its held-out cases (empty when it holds none out)."""

    rounds: int
    consensus_of: list[str]
    metrics: dict[str, float]


def run_peer(job: PeerJob, settings: PeerSettings, builder: SiteBuilder) -> PeerOutcome:
    """Runs ``job`` at this site until its last round and the consensus; see the module docstring.

    Raises:
        PolicyRefusal: The job is weaker than the site's privacy policy.
        CheckpointError: The run folder holds another job's or another federation's checkpoint.
        TransportError: This site cannot listen on ``settings.listen``.
    """
    job_json = job.job_json()
    site = builder.site_for(job_json)
    folder = settings.state_dir / PEER_DIR / job.name
    state = _resumed(folder, settings, job_json) or PeerState.start(_initial_model(job), _sites(settings))
    chain = _chain(settings, job.name)
    copies = chain_copies(
        settings.ledger, ledger_folder(settings.state_dir, job.name), job.name, settings.name, settings.peers
    )
    topology = build_topology(job.federation.topology, _sites(settings), seed=job.seed)
    shelf = opening_shelf(topology, state, settings.name)
    server = _serve(shelf, settings, copies)
    links = PeerLinks(settings, timeout_s=job.call_timeout_s, copies=copies)
    try:
        logger.info(
            "peer '%s' serving on %s; round %d of %d done",
            settings.name,
            settings.listen,
            state.round,
            job.federation.rounds,
        )
        grid = InMemoryGrid({settings.name: site})
        if not isinstance(topology, BrainTorrent):  # cyclic, gossip: every round in peer_topologies
            here = _peer_site(settings, job, job_json, folder, links, grid, shelf, chain)
            state = run_rounds(topology, state, here, rounds=job.federation.rounds)
        while isinstance(topology, BrainTorrent) and state.round < job.federation.rounds:
            _await_peers(links, state.round, job.wait_for_peers_s, settings.poll_s)
            state, pulled = _pull_round(state, settings.name, links, grid, topology)
            if chain is not None:
                chain.record(pulled, state.round)
            _save_round(folder, state, settings.name, job, job_json)
            publish_model(shelf, state, settings.name)
            links.replicate()
        final = publish_model(shelf, state, settings.name, final=True)
        finals = _final_models(final, links, job.finish_timeout_s, settings.poll_s)
        links.replicate()  # complete once final
        agreed = consensus(finals[name].weights for name in sorted(finals))
        _save_final(folder, state.round, agreed, sorted(finals), job)
        metrics = _evaluate(builder, job_json, state.round, agreed)
        logger.info("consensus of %s after %d rounds: %s", sorted(finals), state.round, metrics)
        behind = copies.behind if copies is not None else set
        _serve_final(shelf, set(finals) - {settings.name}, job.finish_timeout_s, settings.poll_s, behind)
        return PeerOutcome(state.round, sorted(finals), metrics)
    finally:
        links.close()
        server.stop(grace=1.0).wait(timeout=10.0)


def _peer_site(
    settings: PeerSettings,
    job: PeerJob,
    job_json: str,
    folder: Path,
    links: PeerLinks,
    grid: InMemoryGrid,
    shelf: ModelShelf,
    chain: PeerChain | None,
) -> PeerSite:
    """What a cyclic or gossip site's rounds use: its links, grid, shelf and chain, and this
    module's checkpoint (in ``folder``), then its chain copies brought up to date, and wait for
    peers."""

    def save(state: PeerState) -> None:
        _save_round(folder, state, settings.name, job, job_json)
        links.replicate()

    return PeerSite(
        name=settings.name,
        links=links,
        grid=grid,
        shelf=shelf,
        chain=chain,
        save=save,
        await_peers=lambda done: _await_peers(links, done, job.wait_for_peers_s, settings.poll_s),
        wait_s=job.wait_for_peers_s,
        poll_s=settings.poll_s,
    )


def _sites(settings: PeerSettings) -> list[str]:
    return sorted([settings.name, *settings.peers])


def _initial_model(job: PeerJob) -> Weights:
    """The model every site starts from (the job's seed makes it the same everywhere)."""
    return cpu_weights(
        prepare_model(job.privacy.plan(), build_model(job.model.name, job.model.params, seed=job.seed))
    )


def _serve(shelf: ModelShelf, settings: PeerSettings, copies: ChainCopies | None) -> grpc.Server:
    servicer = PeerServicer(
        shelf,
        name=settings.name,
        peers=settings.peers,
        authenticate=settings.authenticate,
        sign=settings.sign,
        chains=copies.serve if copies is not None else None,
    )
    try:
        server, _ = start_peer_server(
            servicer, address=settings.listen, credentials=server_credentials(settings.tls)
        )
    except RuntimeError as error:
        raise TransportError(f"peer '{settings.name}' cannot listen on {settings.listen}: {error}") from None
    return server


class PeerLinks:
    """This site's connections to its peers: fetches and checks their models, and logs each
    peer's trouble once (until it changes) rather than at every attempt.

    Args:
        settings: This site's name, peers, TLS files and answer check.
        timeout_s: Deadline of one call.
        copies: This site's copies of its peers' chains: a model is returned only once its
            owner's chain records it (``ChainCopies.unrecorded``); ``None``: no chains kept.
    """

    def __init__(
        self, settings: PeerSettings, *, timeout_s: float, copies: ChainCopies | None = None
    ) -> None:
        self.channels = {
            peer: PeerChannel(
                address,
                name=settings.name,
                peer=peer,
                tls=settings.tls,
                verify=settings.verify,
                timeout_s=timeout_s,
                limit=MAX_MODEL_BYTES,
            )
            for peer, address in sorted(settings.peers.items())
        }
        self._trouble: dict[str, str] = {}
        self.unreachable: set[str] = set()  # last call: offline, or no answer in time
        self.copies = copies

    def fetch(
        self, peer: str, reference: Weights, *, newer_than: int, final: bool = False
    ) -> TrainResult | None:
        """``peer``'s model if it is newer than ``newer_than`` (and final, if asked), checked
        against ``reference`` (names, shapes, dtypes, finite bounded values); ``None`` when the
        peer has nothing newer or cannot be used now (logged)."""
        answer = self._ask(peer, ModelRequest(os.urandom(NONCE_BYTES), newer_than=newer_than, final=final))
        if answer is None:
            return None
        if answer.kind is Kind.WAIT:
            self._fine(peer)
            return None
        try:
            if not newer_than < answer.version <= MAX_VERSION:
                raise PayloadError(f"version {answer.version} is not in ({newer_than}, {MAX_VERSION}]")
            result = decode_result(answer.payload, site=peer)
            validate_result(result, reference, round=answer.version, extras={})
        except (PayloadError, UpdateRejected) as error:
            self._trouble_with(peer, f"answer refused: {error}")
            return None
        if self.copies is not None:
            digest = weights_digest(result.weights)
            why = self.copies.unrecorded(peer, digest, self.channels[peer], final=final)
            if why is not None:
                self._trouble_with(peer, f"its model of version {answer.version} is not merged: {why}")
                return None
        self._fine(peer)
        return result

    def replicate(self) -> None:
        """Brings this site's chain copies up to date (``ChainCopies.update``), calling no peer
        whose last call failed; nothing without copies."""
        if self.copies is not None:
            self.copies.update(self.channels, offline=self.unreachable)

    def version(self, peer: str) -> int | None:
        """The version of ``peer``'s model now (no model travels); ``None`` when it cannot be
        reached or its answer is refused (logged)."""
        answer = self._ask(peer, ModelRequest(os.urandom(NONCE_BYTES), newer_than=MAX_VERSION))
        if answer is None:
            return None
        self._fine(peer)
        return answer.version

    def _ask(self, peer: str, request: ModelRequest) -> PeerAnswer | None:
        self.unreachable.discard(peer)
        try:
            answer = self.channels[peer].fetch(request)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                self.unreachable.add(peer)
            self._trouble_with(peer, call_failure(error))
            return None
        except (PayloadError, AuthenticationError) as error:
            self._trouble_with(peer, f"answer refused: {error}")
            return None
        return answer

    def _trouble_with(self, peer: str, problem: str) -> None:
        if self._trouble.get(peer) != problem:
            logger.warning("peer '%s' skipped: %s", peer, problem)
        self._trouble[peer] = problem

    def _fine(self, peer: str) -> None:
        if self._trouble.pop(peer, None) is not None:
            logger.info("peer '%s' answers again", peer)

    def close(self) -> None:
        """Closes every connection."""
        for channel in self.channels.values():
            channel.close()


def _chain(settings: PeerSettings, job: str) -> PeerChain | None:
    """This site's provenance chain for ``job`` (``None`` without a ledger key)."""
    if settings.ledger is None:
        logger.warning("no ledger key in this site's kit: it keeps no provenance chain")
        return None
    keep_signers(settings.state_dir, settings.ledger)
    return PeerChain(ledger_folder(settings.state_dir, job), settings.name, settings.ledger)


def _pull_round(
    state: PeerState, me: str, links: PeerLinks, grid: InMemoryGrid, topology: BrainTorrent
) -> tuple[PeerState, PeerRound]:
    """One round at ``me``: fetch the peers' newer models into this site's view of the
    federation, then BrainTorrent's ``pull`` (merge, train): the new state and the pull's record."""
    seen = state.seen[me]
    models, samples, versions = dict(state.models), dict(state.samples), dict(state.versions)
    for peer in links.channels:
        fetched = links.fetch(peer, state.models[me], newer_than=seen[peer])
        versions[peer] = seen[peer] if fetched is None else fetched.round
        if fetched is not None:
            models[peer], samples[peer] = fetched.weights, fetched.num_samples
    view = replace(state, models=models, samples=samples, versions=versions)
    pulled = topology.pull(view, me, grid)
    merged = {transfer.sender: transfer.model.round for transfer in pulled.transfers}
    if not pulled.results:
        logger.warning("round %d: training failed; the merge of %s is dropped", state.round + 1, merged)
    else:
        logger.info(
            "round %d: merged %s, trained version %d", state.round + 1, merged, pulled.state.versions[me]
        )
    return replace(pulled.state, round=state.round + 1), pulled


def _await_peers(links: PeerLinks, done: int, timeout_s: float, poll_s: float) -> None:
    """Waits, up to ``timeout_s``, until this site may start round ``done + 1``: before its
    first round, until every peer can be reached (a peer that refuses this site, or whose
    answers are refused, is not waited for); later, until every peer that answers has trained
    ``done`` times, so that no site runs more than one round ahead of it (a peer that does not
    answer is not waited for)."""
    deadline = time.monotonic() + timeout_s
    waiting: list[str] = []
    while time.monotonic() < deadline:
        versions = {peer: links.version(peer) for peer in links.channels}
        if done == 0:
            waiting = sorted(links.unreachable)
        else:
            waiting = [peer for peer, version in versions.items() if version is not None and version < done]
        if not waiting:
            return
        time.sleep(poll_s)
    logger.warning("round %d starts without waiting longer for %s (wait_for_peers_s)", done + 1, waiting)


def _final_models(
    final: TrainResult, links: PeerLinks, timeout_s: float, poll_s: float
) -> dict[str, TrainResult]:
    """This site's final model and each peer's that arrives within ``timeout_s`` (a peer whose
    chain diverged is not waited for: none of its models is merged)."""
    finals = {final.site: final}
    waiting = set(links.channels)
    deadline = time.monotonic() + timeout_s
    while waiting:
        for peer in sorted(waiting):
            fetched = links.fetch(peer, final.weights, newer_than=0, final=True)
            if fetched is not None:
                finals[peer] = fetched
                waiting.discard(peer)
        if links.copies is not None:
            waiting -= links.copies.diverged
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    for peer in sorted(waiting):
        logger.warning(
            "no final model from peer '%s' within %.0f s: left out of the consensus", peer, timeout_s
        )
    return finals


def _serve_final(
    shelf: ModelShelf, peers: set[str], timeout_s: float, poll_s: float, behind: Callable[[], set[str]]
) -> None:
    """Keeps serving until every peer in ``peers`` fetched this site's final model and none of
    them is ``behind`` on this site's chain, or ``timeout_s`` passed."""
    deadline = time.monotonic() + timeout_s
    while (not peers <= shelf.served_final_to() or peers & behind()) and time.monotonic() < deadline:
        time.sleep(poll_s)


def _fingerprint(job_json: str) -> str:
    return hashlib.sha256(job_json.encode()).hexdigest()


def _save_round(folder: Path, state: PeerState, me: str, job: PeerJob, job_json: str) -> None:
    """This site's view of the federation after a round (its own model as the shared one),
    atomically (``saved_states``)."""
    server, sites = saved_states(state, state.models[me])
    metadata = {**model_metadata(job.model.name, job.model.params), "job": _fingerprint(job_json)}
    save_round(
        folder / "checkpoints", Checkpoint(server, sites, metadata), keep_last=job.federation.keep_last
    )


def _resumed(folder: Path, settings: PeerSettings, job_json: str) -> PeerState | None:
    """The state of this site's last checkpointed round (``None`` before its first).

    Raises:
        CheckpointError: The checkpoint is of another job or of other sites.
    """
    path = latest_checkpoint(folder / "checkpoints")
    if path is None:
        return None
    checkpoint = load_checkpoint(path)
    if checkpoint.metadata.get("job") != _fingerprint(job_json):
        raise CheckpointError(f"'{path}' is the checkpoint of another job: move it away or rename the job")
    state = restored_state(checkpoint.server, checkpoint.sites)
    if sorted(state.models) != _sites(settings):
        raise CheckpointError(
            f"'{path}' is the checkpoint of sites {sorted(state.models)}, not {_sites(settings)}"
        )
    logger.info("resuming after round %d from '%s'", state.round, path)
    return state


def _save_final(folder: Path, round: int, weights: Weights, sites: list[str], job: PeerJob) -> None:
    metadata = {**model_metadata(job.model.name, job.model.params), "consensus_of": json.dumps(sites)}
    save_checkpoint(folder / FINAL_FILE, Checkpoint(ServerState(round, weights), metadata=metadata))


def _evaluate(builder: SiteBuilder, job_json: str, round: int, weights: Weights) -> dict[str, float]:
    """The consensus's metrics on this site's held-out cases (empty when it cannot)."""
    try:
        return builder.evaluate(job_json, TrainTask(round=round, weights=weights))
    except MedfedError as error:
        logger.info("the consensus is not evaluated here: %s", error)
        return {}


def check_peer_certificate(files: TlsFiles) -> None:
    """Checks that this site's certificate is usable and can serve its peers over TLS.

    Raises:
        AuthenticationError: It is expired, foreign or not a site's, or it was issued before
            site certificates served peers (no TLS server usage): the message says what to do.
    """
    check_certificate(files)
    certificate = x509.load_pem_x509_certificate(files.certificate.read_bytes())
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        raise AuthenticationError(
            f"this site's certificate {files.certificate} cannot serve peers (issued before "
            "peer-to-peer deployment): ask the project to revoke it and issue a new kit"
        )
