"""The rounds of secure aggregation over any messenger: shared by simulation and deployment.

``serve_aggregation`` is the server's side after round 0 and ``Participant`` a site's side;
between them stands an ``Exchange``, which delivers one message per client and returns the
replies of the clients that answered. In process it calls the participants directly
(``medfed.privacy.secagg.driver``); in a deployment it posts the messages to the sites over
gRPC (``medfed.deployment.protected_server`` and ``protected_site``). A client that does not answer a step has dropped out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from medfed.privacy.secagg.authentication import KeyAuthenticator
from medfed.privacy.secagg.client import SecAggClient
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
from medfed.privacy.secagg.server import SecAggServer

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


def _replies(replies: Mapping[int, object], kind: type) -> list:
    """The replies, each checked to be a ``kind`` sent by the client it came from."""
    checked = []
    for client, reply in sorted(replies.items()):
        if not isinstance(reply, kind) or reply.sender != client:  # type: ignore[attr-defined]
            raise SecureAggregationError(f"client {client} answered with a wrong or forged message")
        checked.append(reply)
    return checked
