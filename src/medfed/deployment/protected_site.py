"""A site's half of secure and CKKS aggregation over gRPC: what it sends instead of its update.

After training, a site in a protected round answers its task with a protocol message, never
with its weights: its ``AdvertiseKeys`` (secure aggregation) or its encrypted weighted update
(CKKS). It then answers the round's protocol steps from the same ``ProtectedRound`` object,
which the protocol code shared with simulation drives (``Participant``, the CKKS functions).
"""

from __future__ import annotations

import builtins
import logging
from typing import Protocol

import tenseal as ts

from medfed.privacy.ckks import EncryptedVector, decrypt_weighted_mean, encrypt_weighted_update
from medfed.privacy.ckks_connector import DECRYPT
from medfed.privacy.secagg.authentication import KeyAuthenticator
from medfed.privacy.secagg.messages import KeyDirectory, SecAggInvitation
from medfed.privacy.secagg.rounds import STEPS, Participant
from medfed.privacy.secagg.vectors import layout_of, weighted_vector
from medfed.transport.codec import encode_result
from medfed.transport.errors import PayloadError
from medfed.transport.protocol_codec import decode_message, encode_message
from medfed.types import TrainResult, TrainTask

logger = logging.getLogger(__name__)


class ProtectedRound(Protocol):
    """A site's part of one protected round, after it trained."""

    def upload(self) -> bytes:
        """The answer to the task, in place of the trained weights."""
        ...

    def answer(self, step: str, message: bytes) -> bytes:
        """The reply to the server's message of protocol ``step``."""
        ...


class SecureAggregationRound:
    """The site's ``Participant`` in one secure aggregation, with its weighted input.

    Args:
        task: The round's task (its weights give the vector layout).
        invitation: The ``SecAggInvitation`` sent with the task (protobuf bytes).
        result: The site's trained result; only its masked, weighted weights leave the site.
        authenticator: The site's provisioned identity: signs its keys and checks the other
            participants' (``None``: anonymous, as with ``--insecure``).

    Raises:
        PayloadError: The invitation is missing or malformed.
        SecureAggregationError: An authenticated site is invited without named participants.
    """

    def __init__(
        self,
        task: TrainTask,
        invitation: bytes,
        result: TrainResult,
        authenticator: KeyAuthenticator | None = None,
    ) -> None:
        if not invitation:
            raise PayloadError("a secure-aggregation task came without its invitation")
        values = weighted_vector(result.weights, float(result.num_samples), layout_of(task.weights))
        self.participant = Participant(decode_message(SecAggInvitation, invitation), values, authenticator)
        self.authenticated = authenticator is not None

    def upload(self) -> bytes:
        return encode_message(self.participant.start())

    def answer(self, step: str, message: bytes) -> bytes:
        if step not in STEPS:
            raise PayloadError(f"unknown secure-aggregation step '{step}'")
        request_type, _ = STEPS[step]
        request = decode_message(request_type, message)
        reply = self.participant.answer(request)
        if isinstance(request, KeyDirectory) and self.authenticated:
            logger.info("secure aggregation: the keys of all %d participants are signed by their sites", len(request.keys))
        return encode_message(reply)


class CkksRound:
    """The site's encrypted update of one CKKS round, and the decryption of the sum.

    Args:
        context: The sites' shared secret-key context (``ckks.ctx`` of the site's kit).
        task: The round's task (its weights give the vector layout).
        result: The site's trained result; it leaves the site only encrypted.
    """

    def __init__(self, context: ts.Context, task: TrainTask, result: TrainResult) -> None:
        self.context, self.result = context, result
        self.layout = layout_of(task.weights)

    def upload(self) -> bytes:
        result = self.result
        upload = encrypt_weighted_update(
            self.context, result.weights, float(result.num_samples), self.layout, site=result.site
        )
        return encode_message(upload)

    def answer(self, step: str, message: bytes) -> bytes:
        """Decrypts the encrypted sum the server sends and returns the mean as a result.

        Under an honest-but-curious server this is the sum of two or more sites; a malicious
        server could send one site's ciphertext instead, which no CKKS site can tell apart.
        """
        if step != DECRYPT:
            raise PayloadError(f"unknown CKKS step '{step}'")
        mean, weight = decrypt_weighted_mean(self.context, decode_message(EncryptedVector, message), self.layout)
        return encode_result(TrainResult(self.result.site, self.result.round, mean, builtins.round(weight)))
