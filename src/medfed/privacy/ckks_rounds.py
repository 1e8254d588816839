"""CKKS encrypted aggregation over any grid: the server's round, the site's half, the strategy
that insists on the sum.

Cheon, Kim, Kim and Song, ASIACRYPT 2017 (see ``medfed.privacy.ckks``). Mirrors secure
aggregation (``medfed.privacy.secagg.rounds``): in ``EncryptedAggregationRound`` each asked site
trains and answers with ``[n_u * x_u, n_u]`` encrypted under the sites' shared secret-key
context (``CkksSite``); the server adds the ciphertexts with a keyless context
(``server_sum``) and asks one contributing site to decrypt the sum (the next one if it does
not answer). The round loop gets one ``TrainResult`` holding only the sample-weighted mean.
``EncryptedAggregation`` wraps the strategy and raises if it is ever given individual updates.

The same code runs in ``medfed simulate`` (an in-memory grid; a fresh secret-key context per
experiment) and in a deployment (the gRPC grid; the contexts of the startup kits). A round
with fewer than 2 encrypted updates, or whose sum nobody decrypts, gives no result: the round
loop retries it as a missed quorum. As in ``secure_weighted_mean``, integer tensors (e.g.
``num_batches_tracked``) get the rounded weighted mean.
"""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import tenseal as ts

from medfed.errors import UpdateRejected
from medfed.orchestration.grid import Grid, Reply
from medfed.orchestration.validation import validate_result
from medfed.privacy.ckks import (
    DEFAULT_PARAMETERS,
    CkksParameters,
    EncryptedVector,
    EncryptionError,
    add_encrypted,
    decrypt_weighted_mean,
    encrypt_weighted_update,
    require_public,
)
from medfed.privacy.protected_sum import ProtectedAggregation, aggregate_result
from medfed.privacy.secagg.vectors import layout_of, size_of
from medfed.types import TrainResult, TrainTask, Weights

logger = logging.getLogger(__name__)

DECRYPT = "ckks/decrypt"
"""The protocol step in which one site decrypts the summed ciphertexts."""

MESSAGE_ALLOWANCE = 16 * 1024 * 1024
"""Room for a reply beyond its values (serialization), in bytes."""


def server_sum(
    context: ts.Context, uploads: Sequence[EncryptedVector], params: CkksParameters = DEFAULT_PARAMETERS
) -> EncryptedVector:
    """The server's step: the encrypted sum of the sites' uploads.

    Args:
        context: The server's keyless context (``serialize_context(c, include_secret_key=False)``).
        uploads: One ``encrypt_weighted_update`` per site.
        params: The context's parameters (at most ``params.max_summands`` uploads).

    Raises:
        EncryptionError: If ``context`` holds the secret key or the uploads do not match.
    """
    return add_encrypted(context, uploads, params)


class EncryptedAggregationRound:
    """The server's half of a CKKS round over a grid: the sites' sample-weighted mean.

    Args:
        context: The server's keyless CKKS context.
        params: The CKKS parameters the sites' context was made with.

    Raises:
        EncryptionError: If ``context`` holds the secret key.
    """

    def __init__(self, context: ts.Context, *, params: CkksParameters = DEFAULT_PARAMETERS) -> None:
        require_public(context)
        self.context, self.params = context, params

    def __call__(self, grid: Grid, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Trains the sites and returns ``[decrypted mean of the encrypted sum]``, or ``[]``."""
        if not tasks:
            return []
        first = next(iter(tasks.values()))
        round, reference = first.round, first.weights
        length = size_of(layout_of(reference)) + 1
        reply = Reply(EncryptedVector, self._upload_check(length), 128 * length + MESSAGE_ALLOWANCE)
        uploads = grid.train_protected(tasks, {}, reply)
        if len(uploads) < 2:
            logger.warning("round %d: %d encrypted updates; a sum needs at least 2", round, len(uploads))
            return []
        try:
            total = server_sum(self.context, list(uploads.values()), self.params)  # type: ignore[arg-type]
        except EncryptionError as error:
            logger.warning("round %d: the encrypted updates could not be added: %s", round, error)
            return []
        decrypted = Reply(TrainResult, _mean_check(round, reference), 8 * length + MESSAGE_ALLOWANCE)
        for site in uploads:  # one contributor decrypts the sum; the next if it does not answer
            mean = grid.step(round, DECRYPT, {site: total}, decrypted).get(site)
            if isinstance(mean, TrainResult):
                return [aggregate_result(round, mean.weights, mean.num_samples, len(uploads))]
        logger.warning("round %d: no site decrypted the encrypted sum", round)
        return []

    def _upload_check(self, length: int) -> Any:
        chunks = math.ceil(length / self.params.slots)

        def check(site: str, upload: EncryptedVector) -> None:
            if (upload.length, len(upload.chunks)) != (length, chunks):
                raise UpdateRejected(
                    site,
                    f"encrypted update of {upload.length} values in {len(upload.chunks)} "
                    f"ciphertexts, expected {length} in {chunks}",
                )

        return check


def _mean_check(round: int, reference: Weights) -> Any:
    """Refuses a decrypted mean that ``validate_result`` does not pass against the task's weights."""

    def check(site: str, result: TrainResult) -> None:
        validate_result(result, reference, round=round)

    return check


class CkksSite:
    """A site's half of one CKKS round: its encrypted update, and the decryption of the sum.

    Args:
        context: The sites' shared secret-key context (``ckks.ctx`` of the site's kit).
        task: The round's task (its weights give the vector layout).
        result: The site's trained result; it leaves the site only encrypted.
    """

    requests: Mapping[str, type] = {DECRYPT: EncryptedVector}

    def __init__(self, context: ts.Context, task: TrainTask, result: TrainResult) -> None:
        self.context, self.result = context, result
        self.layout = layout_of(task.weights)

    def upload(self) -> EncryptedVector:
        """``[n_u * x_u, n_u]`` encrypted, in place of the trained weights."""
        result = self.result
        return encrypt_weighted_update(
            self.context, result.weights, float(result.num_samples), self.layout, site=result.site
        )

    def answer(self, step: str, message: object) -> TrainResult:
        """Decrypts the encrypted sum the server sends and returns the mean as a result.

        Under an honest-but-curious server this is the sum of two or more sites; a malicious
        server could send one site's ciphertext instead, which no CKKS site can tell apart.

        Raises:
            EncryptionError: The step is not ``DECRYPT`` or the message no encrypted vector.
        """
        if step != DECRYPT or not isinstance(message, EncryptedVector):
            raise EncryptionError(f"unexpected {type(message).__name__} in CKKS step '{step}'")
        mean, weight = decrypt_weighted_mean(self.context, message, self.layout)
        return TrainResult(self.result.site, self.result.round, mean, builtins.round(weight))


class EncryptedAggregation(ProtectedAggregation):
    """Wraps a sample-weighted strategy so that it only ever aggregates the CKKS-summed mean
    (see ``ProtectedAggregation``)."""

    kind = "encrypted aggregation"
    prefix = "ckks"
    error = EncryptionError
    collector = "EncryptedAggregationRound"
