"""Secure aggregation played in process through explicit messages, and the weighted mean on it.

``secure_sum`` runs the four rounds of Bonawitz et al. 2017 between
``Participant`` objects and one ``SecAggServer`` through ``serve_aggregation``, the code a
deployment runs over gRPC; everything that passes between them is a message of
``medfed.privacy.secagg.messages``. Drop-outs are simulated by withholding a client's messages
from a round onward.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from medfed.privacy.secagg.config import new_config
from medfed.privacy.secagg.encoding import DEFAULT_CODE, FixedPoint
from medfed.privacy.secagg.errors import SecureAggregationError
from medfed.privacy.secagg.messages import SecAggInvitation
from medfed.privacy.secagg.rounds import MASKED_INPUT, SHARE_KEYS, UNMASK, Participant, serve_aggregation
from medfed.privacy.secagg.server_machine import SecAggServer
from medfed.privacy.secagg.vectors import layout_of, mean_of_weighted_sum, weighted_vector
from medfed.types import Weights

Dropouts = Collection[str] | int
"""Names of the clients that drop out, or how many to pick at random (with ``seed``)."""


@dataclass(frozen=True)
class SecureSum:
    """The result of one secure aggregation.

    Attributes:
        total: Sum of the contributors' inputs, float64, shape ``(d,)``.
        contributors: Names of the clients whose inputs are in ``total``.
    """

    total: np.ndarray
    contributors: tuple[str, ...]


def secure_sum(
    client_inputs: Mapping[str, np.ndarray],
    threshold: int,
    *,
    drop_after_advertising: Dropouts = (),
    drop_after_sharing: Dropouts = (),
    drop_after_masking: Dropouts = (),
    seed: int | None = None,
    code: FixedPoint = DEFAULT_CODE,
) -> SecureSum:
    """The sum of the inputs of the clients that sent masked inputs, computed securely, and who
    they are.

    Args:
        client_inputs: Each client's real vector, all of shape ``(d,)``.
        threshold: Shamir threshold ``t`` (``n / 2 < t <= n``).
        drop_after_advertising: Clients silent from round 1 on (they never share).
        drop_after_sharing: Clients silent from round 2 on (shared, never send an input; their
            input is left out and their pairwise masks are removed via their key shares).
        drop_after_masking: Clients silent in round 3 (their input is in the sum).
        seed: Picks the drop-outs given as counts; the protocol's own randomness always comes
            from the operating system and is never seeded.
        code: The fixed-point code.

    Returns:
        The float64 sum of the inputs of every client that did not drop out before round 2,
        and those clients' names.

    Raises:
        SecureAggregationError: If fewer than ``threshold`` clients are left at some round.
    """
    names = sorted(client_inputs)
    ids = {name: i + 1 for i, name in enumerate(names)}
    lengths = {np.asarray(client_inputs[name]).shape for name in names}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise ValueError(f"every input must be a vector of one shape, got shapes {sorted(lengths)}")
    config = new_config(
        client_ids=ids.values(),
        threshold=threshold,
        vector_length=next(iter(lengths))[0],
        code=code,
    )
    rng = random.Random(seed)
    alive = set(names)
    by_id = {i: name for name, i in ids.items()}
    participants = {
        name: Participant(SecAggInvitation(config, ids[name]), client_inputs[name]) for name in names
    }
    drops = {SHARE_KEYS: drop_after_advertising, MASKED_INPUT: drop_after_sharing, UNMASK: drop_after_masking}

    def exchange(step: str, outgoing: Mapping[int, object]) -> dict[int, object]:
        alive.difference_update(_pick(drops[step], alive, rng))
        return {
            client: participants[by_id[client]].answer(message)
            for client, message in outgoing.items()
            if by_id[client] in alive
        }

    server = SecAggServer(config)
    adverts = [participants[name].start() for name in names]
    total = serve_aggregation(server, adverts, exchange)
    return SecureSum(total, tuple(by_id[i] for i in server.contributors))


def secure_weighted_mean(
    updates: Mapping[str, tuple[Weights, float]],
    threshold: int,
    *,
    code: FixedPoint = DEFAULT_CODE,
    **dropouts: Dropouts,
) -> tuple[Weights, float, tuple[str, ...]]:
    """The weighted mean ``sum(n_u x_u) / sum(n_u)`` of sites' weights, by secure aggregation.

    Each site's input is ``[n_u * flatten(x_u), n_u]``; the server learns only the two sums.
    Integer tensors (e.g. ``num_batches_tracked``) get the rounded weighted mean (the plain
    ``weighted_mean`` takes their maximum, which a sum cannot give).

    Args:
        updates: Each site's (weights, weight ``n_u`` > 0); all weights with one layout.
        threshold: Shamir threshold ``t`` (``n / 2 < t <= n``).
        code: The fixed-point code; ``|n_u * x_u|`` must stay under ``code.max_abs(n)``.
        **dropouts: ``drop_after_*`` and ``seed`` of ``secure_sum``, for simulations.

    Returns:
        The mean weights, the total weight, and the names of the contributing sites.

    Raises:
        SecureAggregationError: Too few survivors, or an input overflows the ring.
        ValueError: Layouts differ or a weight is not positive.
    """
    if not updates:
        raise ValueError("secure_weighted_mean needs at least one update, got none")
    layout = layout_of(next(iter(updates.values()))[0])
    inputs = {}
    for site, (weights, weight) in updates.items():
        try:
            inputs[site] = weighted_vector(weights, weight, layout)
        except ValueError as error:
            raise ValueError(f"site '{site}': {error}") from None
    result = secure_sum(inputs, threshold, code=code, **dropouts)  # type: ignore[arg-type]
    mean, total_weight = mean_of_weighted_sum(result.total, layout, error=SecureAggregationError)
    return mean, total_weight, result.contributors


def _pick(drop: Dropouts, alive: set[str], rng: random.Random) -> set[str]:
    if isinstance(drop, int):
        return set(rng.sample(sorted(alive), min(drop, len(alive))))
    unknown = set(drop) - alive
    if unknown:
        raise ValueError(f"cannot drop {sorted(unknown)}: not taking part at that round")
    return set(drop)
