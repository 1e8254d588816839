"""The server's half of secure and CKKS aggregation over gRPC: connectors for the round loop.

They replace ``GrpcConnector`` when the job's ``privacy:`` section asks for protection, and hand
the loop the same single aggregate ``TrainResult`` as the in-process connectors of
``medfed.privacy`` do, computed by the same protocol code:

- ``GrpcSecureAggregationConnector`` posts each site's task with a ``SecAggInvitation``; the
  sites' answers are their ``AdvertiseKeys``, and ``serve_aggregation`` runs rounds 1-3 as
  protocol steps on the board. A site that misses a step's deadline has dropped out.
- ``GrpcCkksConnector`` posts the tasks; the answers are encrypted weighted updates, which the
  server adds with its keyless context; then one contributing site is asked to decrypt the sum
  (the next one if it does not answer).

A round that cannot be completed (too few sites, a failed protocol) yields no result, so the
server's loop retries it as a missed quorum, from the same state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import tenseal as ts

from medfed.errors import UpdateRejected
from medfed.privacy.ckks import DEFAULT_PARAMETERS, CkksParameters, EncryptedVector, EncryptionError, require_public
from medfed.privacy.ckks_connector import DECRYPT, server_sum
from medfed.privacy.protected_sum import aggregate_result
from medfed.privacy.secagg import SecAggServer, SecureAggregationError, new_config, threshold_for
from medfed.privacy.secagg.encoding import DEFAULT_CODE, FixedPoint
from medfed.privacy.secagg.messages import AdvertiseKeys, SecAggInvitation
from medfed.privacy.secagg.rounds import STEPS, serve_aggregation
from medfed.privacy.secagg.vectors import layout_of, mean_of_weighted_sum, size_of
from medfed.transport.board import Accept, RoundBoard, accept_train_result
from medfed.transport.protobuf import decode_message, encode_message
from medfed.types import TrainResult, TrainTask

logger = logging.getLogger(__name__)

_MESSAGE_ALLOWANCE = 16 * 1024 * 1024
"""Room for a protocol reply beyond its vector (keys, shares, serialization)."""


class GrpcSecureAggregationConnector:
    """Secure aggregation (Bonawitz et al. 2017) of the sites reached through ``board``.

    Args:
        board: The board the servicer serves.
        round_timeout_s: Deadline of the training step; sites that miss it are not in U1.
        step_timeout_s: Deadline of each later protocol step; a site that misses it drops out.
        threshold_fraction: Shamir threshold ``t = floor(fraction * n) + 1`` of the ``n`` asked
            sites; the sum survives ``n - t`` drop-outs.
        code: The fixed-point code.
    """

    def __init__(
        self,
        board: RoundBoard,
        *,
        round_timeout_s: float,
        step_timeout_s: float,
        threshold_fraction: float,
        code: FixedPoint = DEFAULT_CODE,
    ) -> None:
        threshold_for(2, threshold_fraction)  # validates the fraction
        self.board = board
        self.round_timeout_s, self.step_timeout_s = round_timeout_s, step_timeout_s
        self.threshold_fraction = threshold_fraction
        self.code = code

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Trains the sites and returns ``[secure mean]``, or ``[]`` if the round failed."""
        if len(tasks) < 2:
            logger.warning("secure aggregation needs at least 2 sites, %d asked", len(tasks))
            return []
        first = next(iter(tasks.values()))
        round, layout = first.round, layout_of(first.weights)
        participants = tuple(sorted(tasks))
        ids = {site: client for client, site in enumerate(participants, start=1)}
        config = new_config(
            client_ids=ids.values(),
            threshold=threshold_for(len(ids), self.threshold_fraction),
            vector_length=size_of(layout) + 1,
            code=self.code,
        )
        reply_limit = config.vector_length * config.ring_bits // 8 + _MESSAGE_ALLOWANCE
        invitations = {site: encode_message(SecAggInvitation(config, ids[site], participants)) for site in ids}
        self.board.post(
            round, tasks, protocol=invitations, accept=_from_sender(AdvertiseKeys, ids), reply_limit=reply_limit
        )
        adverts = self.board.collect(self.round_timeout_s)
        names = {client: site for site, client in ids.items()}

        def exchange(step: str, outgoing: Mapping[int, object]) -> dict[int, object]:
            messages = {names[client]: encode_message(message) for client, message in outgoing.items()}
            accept = _from_sender(STEPS[step][1], ids)
            self.board.post_step(round, step, messages, accept=accept, reply_limit=reply_limit)
            return {ids[site]: reply for site, reply in self.board.collect(self.step_timeout_s).items()}

        server = SecAggServer(config)
        try:
            total = serve_aggregation(server, list(adverts.values()), exchange, consistency=True)
            mean, weight = mean_of_weighted_sum(total, layout, error=SecureAggregationError)
        except SecureAggregationError as error:
            logger.warning("round %d: secure aggregation failed: %s", round, error)
            return []
        contributors = sorted(names[client] for client in server.contributors)
        logger.info("round %d: secure sum of %s", round, contributors)
        return [aggregate_result(round, mean, weight, len(contributors))]


class GrpcCkksConnector:
    """CKKS encrypted aggregation of the sites reached through ``board``.

    Args:
        board: The board the servicer serves.
        context: The server's keyless CKKS context (``ckks_public.ctx`` of its kit).
        round_timeout_s: Deadline of the training step.
        step_timeout_s: Deadline of the decryption step, per site asked.
        params: The CKKS parameters the sites' context was made with.

    Raises:
        EncryptionError: If ``context`` holds the secret key.
    """

    def __init__(
        self,
        board: RoundBoard,
        context: ts.Context,
        *,
        round_timeout_s: float,
        step_timeout_s: float,
        params: CkksParameters = DEFAULT_PARAMETERS,
    ) -> None:
        require_public(context)
        self.board, self.context, self.params = board, context, params
        self.round_timeout_s, self.step_timeout_s = round_timeout_s, step_timeout_s

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Trains the sites and returns ``[decrypted mean of the encrypted sum]``, or ``[]``."""
        first = next(iter(tasks.values()))
        round, reference = first.round, first.weights
        length = size_of(layout_of(reference)) + 1
        self.board.post(
            round, tasks, accept=self._upload(length), reply_limit=128 * length + _MESSAGE_ALLOWANCE
        )
        uploads = self.board.collect(self.round_timeout_s)
        if len(uploads) < 2:
            logger.warning("round %d: %d encrypted updates; a sum needs at least 2", round, len(uploads))
            return []
        try:
            total = encode_message(server_sum(self.context, list(uploads.values())))
        except EncryptionError as error:
            logger.warning("round %d: the encrypted updates could not be added: %s", round, error)
            return []
        for site in uploads:  # one contributor decrypts the sum; the next if it does not answer
            accept = accept_train_result(round, {site: reference})
            self.board.post_step(round, DECRYPT, {site: total}, accept=accept, reply_limit=3 * len(total))
            mean = self.board.collect(self.step_timeout_s).get(site)
            if mean is not None:
                return [aggregate_result(round, mean.weights, mean.num_samples, len(uploads))]
        logger.warning("round %d: no site decrypted the encrypted sum", round)
        return []

    def _upload(self, length: int) -> Accept:
        chunks = math.ceil(length / self.params.slots)

        def accept(site: str, payload: bytes) -> EncryptedVector:
            upload = decode_message(EncryptedVector, payload)
            if (upload.length, len(upload.chunks)) != (length, chunks):
                raise UpdateRejected(
                    site, f"encrypted update of {upload.length} values in {len(upload.chunks)} "
                    f"ciphertexts, expected {length} in {chunks}"
                )
            return upload

        return accept


def _from_sender(kind: type, ids: Mapping[str, int]) -> Accept:
    """Accepts a ``kind`` message whose ``sender`` is the answering site's own client id."""

    def accept(site: str, payload: bytes) -> object:
        message = decode_message(kind, payload)
        if message.sender != ids[site]:
            raise UpdateRejected(site, f"signs as client {message.sender}, but is client {ids[site]}")
        return message

    return accept
