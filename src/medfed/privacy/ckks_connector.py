"""CKKS encrypted aggregation in the round loop: a connector that sums ciphertexts, a strategy
that insists on the sum.

Cheon, Kim, Kim and Song, ASIACRYPT 2017 (see ``medfed.privacy.ckks``). Mirrors secure
aggregation (``medfed.privacy.secagg.strategy``): ``CkksAggregationConnector`` wraps the
connector that delivers the sites' trained models, has each site encrypt
``[n_u * x_u, n_u]`` with the sites' secret-key context, lets the server add the ciphertexts
with a keyless context (``server_sum``) and has a site decrypt the sum; the round loop gets one
``TrainResult`` holding only the sample-weighted mean. ``EncryptedAggregation`` wraps the
strategy and raises if it is ever given individual site updates.

In simulation the connector plays the site halves too, so it holds the secret-key context
(one per connector, i.e. per experiment); ``server_sum`` is the only step that touches the
ciphertexts together, and it only ever receives the keyless context. As in
``secure_weighted_mean``, integer tensors (e.g. ``num_batches_tracked``) get the rounded
weighted mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import tenseal as ts

from medfed.privacy.ckks import (
    DEFAULT_PARAMETERS,
    CkksParameters,
    EncryptedVector,
    EncryptionError,
    add_encrypted,
    create_context,
    decrypt_weighted_mean,
    deserialize_context,
    encrypt_weighted_update,
    serialize_context,
)
from medfed.privacy.protected_sum import ProtectedAggregation, aggregate_result, check_site_results
from medfed.privacy.secagg.vectors import layout_of
from medfed.types import TrainResult, TrainTask


DECRYPT = "ckks/decrypt"
"""The protocol step in which one site decrypts the summed ciphertexts (deployments only)."""


class _Connector(Protocol):
    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]: ...


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


class CkksAggregationConnector:
    """Runs the sites through ``inner`` and returns only their mean, summed under CKKS.

    Args:
        inner: Delivers tasks to the sites (e.g. ``InProcessConnector``).
        params: CKKS parameters of the sites' context, created once here.

    Raises:
        EncryptionError: From ``train`` when fewer than 2 sites answer, a site answers twice or
            with strategy extras, or the ciphertexts do not match; the round then fails as a
            whole (the loop keeps the previous state).
    """

    def __init__(self, inner: _Connector, *, params: CkksParameters = DEFAULT_PARAMETERS) -> None:
        self.inner = inner
        self.params = params
        self._site_context = create_context(params)
        public = serialize_context(self._site_context, include_secret_key=False)
        self._server_context = deserialize_context(public)

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Trains the sites, then returns ``[encrypted-sum mean]`` (``[]`` if no site answered)."""
        results = self.inner.train(tasks)
        if not results:
            return []
        check_site_results(results, error=EncryptionError, sum_name="an encrypted sum")
        layout = layout_of(results[0].weights)
        uploads = [
            encrypt_weighted_update(
                self._site_context, r.weights, float(r.num_samples), layout, self.params, site=r.site
            )
            for r in results
        ]
        total = server_sum(self._server_context, uploads, self.params)
        mean, weight = decrypt_weighted_mean(self._site_context, total, layout)
        return [aggregate_result(results[0].round, mean, weight, len(results))]


class EncryptedAggregation(ProtectedAggregation):
    """Wraps a sample-weighted strategy so that it only ever aggregates the CKKS-summed mean
    (see ``ProtectedAggregation``)."""

    kind = "encrypted aggregation"
    prefix = "ckks"
    error = EncryptionError
    connector = "CkksAggregationConnector"
