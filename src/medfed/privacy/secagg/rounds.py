"""The rounds of secure aggregation over any grid: written once for simulation and deployment.

``serve_aggregation`` is the server's side after round 0 and ``Participant`` a site's side;
between them stands an ``Exchange``, which delivers one message per client and returns the
replies of the clients that answered. ``SecureAggregationRound`` runs a federated round's
aggregation over a ``Grid`` (in memory in ``medfed simulate``, over gRPC in a deployment), and
``SecureAggregationSite`` is the site's half that answers it (in a simulated site, or in the
``medfed client`` process). ``medfed.privacy.secagg.driver`` plays the protocol in process for
tests and benchmarks. A client that does not answer a step has dropped out.

A round that cannot be completed (fewer than 2 sites, fewer survivors than the threshold, a
malformed reply) gives no result: the round loop counts it as a missed quorum and retries it
from the same state (``max_attempts``), in simulation and deployment alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from medfed.errors import UpdateRejected
from medfed.orchestration.grid import Grid, Reply
from medfed.privacy.protected_sum import aggregate_result
from medfed.privacy.secagg.authentication import KeyAuthenticator
from medfed.privacy.secagg.config import new_config
from medfed.privacy.secagg.encoding import DEFAULT_CODE, FixedPoint
from medfed.privacy.secagg.errors import SecureAggregationError
from medfed.privacy.secagg.messages import (
    AdvertiseKeys,
    ConsistencyCheck,
    ConsistencySignature,
    KeyDirectory,
    MaskedInput,
    SecAggInvitation,
    ShareDelivery,
    ShareKeys,
    SignedSurvivors,
    UnmaskRequest,
    UnmaskResponse,
)
from medfed.privacy.secagg.server_machine import SecAggServer
from medfed.privacy.secagg.site_machine import SecAggClient
from medfed.privacy.secagg.strategy import threshold_for
from medfed.privacy.secagg.vectors import layout_of, mean_of_weighted_sum, size_of, weighted_vector
from medfed.types import TrainResult, TrainTask

logger = logging.getLogger(__name__)

SHARE_KEYS, MASKED_INPUT, UNMASK = "secagg/share-keys", "secagg/masked-input", "secagg/unmask"
CONSISTENCY, UNMASK_SIGNED = "secagg/consistency", "secagg/unmask-signed"

STEPS: dict[str, tuple[type, type]] = {
    SHARE_KEYS: (KeyDirectory, ShareKeys),
    MASKED_INPUT: (ShareDelivery, MaskedInput),
    UNMASK: (UnmaskRequest, UnmaskResponse),
    CONSISTENCY: (ConsistencyCheck, ConsistencySignature),
    UNMASK_SIGNED: (SignedSurvivors, UnmaskResponse),
}
"""Each step after round 0: (the server's message type, the client's reply type)."""

MESSAGE_ALLOWANCE = 16 * 1024 * 1024
"""Room for a protocol reply beyond its vector (keys, shares, serialization), in bytes."""

Exchange = Callable[[str, Mapping[int, object]], Mapping[int, object]]
"""``exchange(step, {client_id: message})`` -> ``{client_id: reply}`` of those who answered."""


def serve_aggregation(
    server: SecAggServer, adverts: Sequence[AdvertiseKeys], exchange: Exchange, *, consistency: bool = False
) -> np.ndarray:
    """The rounds after the clients' ``adverts``; the sum of the survivors' inputs.

    Args:
        server: The aggregation's server.
        adverts: The clients' round-0 keys.
        exchange: Delivers each step's messages.
        consistency: Run the paper's ConsistencyCheck before unmasking (deployments; required
            by authenticated clients).

    Raises:
        SecureAggregationError: Too few clients answered a step, or a reply is malformed.
    """
    directory = server.collect_keys(adverts)
    shares = exchange(SHARE_KEYS, {advert.sender: directory for advert in directory.keys})
    deliveries = server.route_shares(_replies(shares, ShareKeys))
    masked = exchange(MASKED_INPUT, deliveries)
    request = server.collect_masked(_replies(masked, MaskedInput))
    if not consistency:
        responses = exchange(UNMASK, {client: request for client in request.survivors})
        return server.unmask(_replies(responses, UnmaskResponse))
    check = ConsistencyCheck(request.session, request.survivors)
    signatures = exchange(CONSISTENCY, {client: check for client in check.survivors})
    signed = server.collect_signatures(_replies(signatures, ConsistencySignature))
    responses = exchange(UNMASK_SIGNED, {entry.sender: signed for entry in signed.signatures})
    return server.unmask(_replies(responses, UnmaskResponse))


class Participant:
    """A site's side of one aggregation: its ``SecAggClient`` and its input.

    Args:
        invitation: The aggregation's parameters, this site's client id and the participants.
        values: This site's input, shape ``(config.vector_length,)``.
        authenticator: Signs this site's keys and checks the others' (``SecAggClient``).
    """

    def __init__(
        self, invitation: SecAggInvitation, values: np.ndarray, authenticator: KeyAuthenticator | None = None
    ) -> None:
        self.client = SecAggClient(
            invitation.client_id,
            invitation.config,
            authenticator=authenticator,
            participants=invitation.participants,
        )
        self.values = values

    def start(self) -> AdvertiseKeys:
        """Round 0: this site's public keys."""
        return self.client.advertise_keys()

    def answer(self, message: object) -> object:
        """The reply to the server's message of the rounds after round 0.

        Raises:
            SecureAggregationError: The message is out of order, of another session or forged.
        """
        if isinstance(message, KeyDirectory):
            return self.client.share_keys(message)
        if isinstance(message, ShareDelivery):
            return self.client.masked_input(message, self.values)
        if isinstance(message, UnmaskRequest):
            return self.client.unmask(message)
        if isinstance(message, ConsistencyCheck):
            return self.client.sign_survivors(message)
        if isinstance(message, SignedSurvivors):
            return self.client.unmask_signed(message)
        raise SecureAggregationError(f"unexpected message {type(message).__name__}")


class SecureAggregationRound:
    """The server's half of a secure round over a grid: the sites' sample-weighted mean.

    Each asked site gets its task with a ``SecAggInvitation`` and answers with its
    ``AdvertiseKeys``; the later rounds run as protocol steps (with the paper's consistency
    check), so the server only ever sees masked vectors and the survivors' sum.

    Args:
        threshold_fraction: Shamir threshold ``t = floor(fraction * n) + 1`` of the ``n`` asked
            sites; the sum survives ``n - t`` drop-outs.
        code: The fixed-point code (``|n_u * x_u|`` must stay below ``code.max_abs(n)``).
    """

    def __init__(self, *, threshold_fraction: float = 0.5, code: FixedPoint = DEFAULT_CODE) -> None:
        threshold_for(2, threshold_fraction)  # validates the fraction
        self.threshold_fraction = threshold_fraction
        self.code = code

    def __call__(self, grid: Grid, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Trains the sites and returns ``[secure mean]``, or ``[]`` if the round failed."""
        if len(tasks) < 2:
            logger.warning("secure aggregation needs at least 2 sites, %d asked", len(tasks))
            return []
        first = next(iter(tasks.values()))
        round, layout = first.round, layout_of(first.weights)
        participants = tuple(sorted(tasks))
        ids = {site: client for client, site in enumerate(participants, start=1)}
        names = {client: site for site, client in ids.items()}
        config = new_config(
            client_ids=ids.values(),
            threshold=threshold_for(len(ids), self.threshold_fraction),
            vector_length=size_of(layout) + 1,
            code=self.code,
        )
        limit = config.vector_length * config.ring_bits // 8 + MESSAGE_ALLOWANCE
        invitations = {site: SecAggInvitation(config, ids[site], participants) for site in ids}
        adverts = grid.train_protected(tasks, invitations, Reply(AdvertiseKeys, _from_sender(ids), limit))

        def exchange(step: str, outgoing: Mapping[int, object]) -> dict[int, object]:
            messages = {names[client]: message for client, message in outgoing.items()}
            replies = grid.step(round, step, messages, Reply(STEPS[step][1], _from_sender(ids), limit))
            return {ids[site]: reply for site, reply in replies.items()}

        server = SecAggServer(config)
        try:
            total = serve_aggregation(server, list(adverts.values()), exchange, consistency=True)  # type: ignore[arg-type]
            mean, weight = mean_of_weighted_sum(total, layout, error=SecureAggregationError)
        except SecureAggregationError as error:
            logger.warning("round %d: secure aggregation failed: %s", round, error)
            return []
        contributors = sorted(names[client] for client in server.contributors)
        logger.info("round %d: secure sum of %s", round, contributors)
        return [aggregate_result(round, mean, weight, len(contributors))]


class SecureAggregationSite:
    """A site's half of one secure round: its ``Participant``, with its weighted input.

    Args:
        task: The round's task (its weights give the vector layout).
        invitation: The ``SecAggInvitation`` sent with the task.
        result: The site's trained result; only its masked, weighted weights leave the site.
        authenticator: The site's provisioned identity: signs its keys and checks the other
            participants' (``None``: anonymous, as in simulation or with ``--insecure``).

    Raises:
        SecureAggregationError: The invitation is missing, or an authenticated site is invited
            without named participants.
    """

    requests: Mapping[str, type] = {step: request for step, (request, _) in STEPS.items()}

    def __init__(
        self,
        task: TrainTask,
        invitation: object,
        result: TrainResult,
        authenticator: KeyAuthenticator | None = None,
    ) -> None:
        if not isinstance(invitation, SecAggInvitation):
            raise SecureAggregationError("a secure-aggregation task came without its invitation")
        values = weighted_vector(result.weights, float(result.num_samples), layout_of(task.weights))
        self.participant = Participant(invitation, values, authenticator)
        self.authenticated = authenticator is not None

    def upload(self) -> AdvertiseKeys:
        """Round 0: this site's public keys, in place of its weights."""
        return self.participant.start()

    def answer(self, step: str, message: object) -> object:
        """The reply to the server's ``message`` of ``step``.

        Raises:
            SecureAggregationError: The step is unknown, or the message is not its request,
                out of order, of another session or forged.
        """
        if not isinstance(message, self.requests.get(step, type(None))):
            raise SecureAggregationError(f"unexpected {type(message).__name__} in step '{step}'")
        reply = self.participant.answer(message)
        if isinstance(message, KeyDirectory) and self.authenticated:
            logger.info(
                "secure aggregation: the keys of all %d participants are signed by their sites",
                len(message.keys),
            )
        return reply


def _from_sender(ids: Mapping[str, int]) -> Callable[[str, Any], None]:
    """Refuses a reply whose ``sender`` is not the answering site's own client id."""

    def check(site: str, message: Any) -> None:
        if message.sender != ids[site]:
            raise UpdateRejected(site, f"signs as client {message.sender}, but is client {ids[site]}")

    return check


def _replies(replies: Mapping[int, object], kind: type) -> list:
    """The replies, each checked to be a ``kind`` sent by the client it came from."""
    checked = []
    for client, reply in sorted(replies.items()):
        if not isinstance(reply, kind) or reply.sender != client:  # type: ignore[attr-defined]
            raise SecureAggregationError(f"client {client} answered with a wrong or forged message")
        checked.append(reply)
    return checked
