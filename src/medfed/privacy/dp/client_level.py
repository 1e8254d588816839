"""Client-level DP at the server: DP-FedAvg with adaptive clipping, wrapping another strategy.

McMahan, Ramage, Talwar and Zhang, "Learning Differentially Private Recurrent Language Models",
ICLR 2018 (DP-FedAvg); Andrew, Thakkar, McMahan and Ramaswamy, "Differentially Private
Learning with Adaptive Clipping", NeurIPS 2021 (Algorithm 1).

Each round: every site's update ``delta_i = w_i - w`` is clipped to L2 norm ``C``; the sum gets
``N(0, z_delta^2 C^2)`` noise and is divided by the *expected* number of sites ``m`` (never the
number that arrived); the wrapped strategy then aggregates that single private update (so
anything it does is post-processing). With adaptive clipping, ``C`` moves geometrically toward
the target quantile of the update norms using the noisy count of unclipped sites, and
``z_delta`` is raised so that the round is one Gaussian mechanism of multiplier ``z``.

The server draws the noise from its own ``NoiseSource`` (a CSPRNG keyed from OS entropy by
default): a site that knows the run's seed cannot regenerate it and recover the noise-free mean.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from medfed.aggregation import subtract
from medfed.privacy.dp.accounting import Accountant, Mechanism, epsilon_spent
from medfed.privacy.dp.clipping import add_gaussian_noise, clip_to_norm, summed
from medfed.privacy.dp.noise import NoiseMode, NoiseSource, noise_source
from medfed.privacy.dp.quantile import (
    centred_count,
    count_noise_std,
    geometric_update,
    noisy_fraction,
    sum_noise_multiplier,
)
from medfed.seeding import derive_seed
from medfed.strategies.base import Strategy, WrappedStrategy
from medfed.strategies.common import check_results, require_non_negative, require_positive
from medfed.types import Scalar, ServerState, TrainResult, TrainTask, Weights

GROUP = "client_dp"
"""The ``ServerState.extra`` group holding the clipping threshold and the accounting."""


class ClientDP(WrappedStrategy):
    """Client-level DP-FedAvg with (adaptive) clipping around ``inner``.

    Args:
        inner: The strategy that aggregates the private mean update (FedAvg, FedAdam...).
        noise_multiplier: ``z``, noise std over sensitivity ``C`` for the whole round (0 = no DP).
        clip: The (initial) clipping norm ``C`` of a site's update.
        target_quantile: Quantile of update norms ``C`` tracks (gamma); ``None`` keeps ``C`` fixed.
        clip_lr: Geometric learning rate of ``C`` (eta_C).
        count_budget_fraction: Share of ``z^-2`` spent on the unclipped count (adaptive only).
        expected_sites: Sites expected per round ``m``; ``None``: every site of the federation.
        accountant: ``rdp`` or ``prv``.
        noise: Where the noise comes from; ``REPRODUCIBLE`` (NOT PRIVATE) derives each round's
            noise from ``seed`` and the round, which every site knows.
        seed: The run's seed, used only by ``NoiseMode.REPRODUCIBLE``.
    """

    name = GROUP

    def __init__(
        self,
        inner: Strategy,
        *,
        noise_multiplier: float,
        clip: float = 1.0,
        target_quantile: float | None = 0.5,
        clip_lr: float = 0.2,
        count_budget_fraction: float = 0.05,
        expected_sites: int | None = None,
        accountant: Accountant | str = Accountant.RDP,
        noise: NoiseMode = NoiseMode.SECURE,
        seed: int = 0,
    ) -> None:
        if isinstance(inner, ClientDP):
            raise ValueError("ClientDP wraps a plain strategy, not another ClientDP")
        super().__init__(inner)
        self.noise_multiplier = require_non_negative("noise_multiplier", noise_multiplier)
        self.initial_clip = require_positive("clip", clip)
        if target_quantile is not None and not 0.0 < target_quantile < 1.0:
            raise ValueError(f"target_quantile must lie in (0, 1), got {target_quantile}")
        self.target_quantile = target_quantile
        self.clip_lr = require_positive("clip_lr", clip_lr)
        adaptive = target_quantile is not None and self.noise_multiplier > 0
        self.count_std = count_noise_std(self.noise_multiplier, count_budget_fraction) if adaptive else 0.0
        self.sum_noise = (
            sum_noise_multiplier(self.noise_multiplier, self.count_std) if adaptive else self.noise_multiplier
        )
        if expected_sites is not None and expected_sites < 1:
            raise ValueError(f"expected_sites must be >= 1, got {expected_sites}")
        self.expected_sites = expected_sites
        self.accountant = Accountant(accountant)
        self.noise = NoiseMode(noise)
        self.seed = seed

    # ----- server half -------------------------------------------------------------------------
    def init(self, weights: Weights) -> ServerState:
        """The inner strategy's initial state plus the initial clip and an empty account."""
        state = self.inner.init(weights)
        return _with_group(state, _group(self.initial_clip, rounds=0, sample_rate=1.0))

    def configure(self, state: ServerState, round: int, config: Mapping[str, Scalar]) -> TrainTask:
        """The inner strategy's task (it never sees the DP state)."""
        return self.inner.configure(_inner(state), round, config)

    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        """Clips, sums, noises and averages the updates; ``inner`` aggregates the private mean."""
        check_results(state.weights, results)
        _refuse_extras(results)
        expected = self.expected_sites or num_sites
        clip = self.clip(state)
        keys = [key for key, tensor in state.weights.items() if tensor.is_floating_point()]
        clipped, norms = zip(
            *(clip_to_norm(subtract(r.weights, state.weights, keys), clip) for r in results), strict=True
        )
        source = noise_source(self.noise, derive_seed(self.seed, GROUP, state.round + 1))
        noisy = add_gaussian_noise(summed(clipped, keys), self.sum_noise * clip, source)
        private = {
            key: state.weights[key] + noisy[key] / expected if key in noisy else state.weights[key]
            for key in state.weights
        }
        pseudo = TrainResult(site=GROUP, round=state.round + 1, weights=private, num_samples=1)
        new_inner = self.inner.aggregate(_inner(state), [pseudo], num_sites)
        new_clip = self._next_clip(clip, torch.tensor(norms), expected, source)
        rounds = int(state.extra.get(GROUP, {}).get("rounds", torch.tensor(0))) + 1
        return _with_group(
            new_inner, _group(new_clip, rounds=rounds, sample_rate=min(1.0, expected / num_sites))
        )

    def clip(self, state: ServerState) -> float:
        """The clipping norm ``C`` the next round will use."""
        group = state.extra.get(GROUP)
        return self.initial_clip if group is None else float(group["clip"])

    def epsilon(self, state: ServerState, *, delta: float) -> float:
        """Client-level epsilon at ``delta`` spent by the rounds aggregated so far (inf: no noise).

        Rounds are accounted as Poisson-subsampled Gaussian mechanisms at rate ``m / N``; with
        fixed-size site sampling this is the usual approximation (exact when every site takes part).
        """
        group = state.extra.get(GROUP, {})
        rounds = int(group.get("rounds", torch.tensor(0)))
        if rounds == 0:
            return 0.0
        if self.noise_multiplier == 0:
            return math.inf
        mechanism = Mechanism(self.noise_multiplier, float(group["sample_rate"]), rounds)
        return epsilon_spent([mechanism], delta=delta, accountant=self.accountant)

    def _next_clip(self, clip: float, norms: torch.Tensor, expected: int, source: NoiseSource) -> float:
        if self.target_quantile is None:
            return clip
        fraction = noisy_fraction(
            centred_count(norms, clip), count_std=self.count_std, expected_count=expected, source=source
        )
        return geometric_update(
            clip, fraction, target_quantile=self.target_quantile, lr=self.clip_lr, bounds=(1e-12, 1e12)
        )


def _group(clip: float, *, rounds: int, sample_rate: float) -> Weights:
    return {
        "clip": torch.tensor(clip, dtype=torch.float64),
        "rounds": torch.tensor(rounds, dtype=torch.int64),
        "sample_rate": torch.tensor(sample_rate, dtype=torch.float64),
    }


def _inner(state: ServerState) -> ServerState:
    extra = {group: tensors for group, tensors in state.extra.items() if group != GROUP}
    return ServerState(round=state.round, weights=state.weights, extra=extra)


def _with_group(state: ServerState, group: Weights) -> ServerState:
    return ServerState(round=state.round, weights=state.weights, extra={**state.extra, GROUP: group})


def _refuse_extras(results: Sequence[TrainResult]) -> None:
    for result in results:
        if result.extra:
            raise ValueError(
                f"site '{result.site}' sent extra tensors {sorted(result.extra)}: client-level DP "
                "protects only the model update, so a strategy that sends more cannot be wrapped"
            )
