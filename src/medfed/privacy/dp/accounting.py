"""Privacy accounting: pure functions over a history of sampled Gaussian mechanisms.

A history is Opacus's: a sequence of ``(noise_multiplier, sample_rate, steps)``, each entry
``steps`` compositions of the Poisson-subsampled Gaussian mechanism. Two accountants are offered:

- ``prv`` (the default): privacy loss random variables (Gopi, Lee and Wutschitz, NeurIPS 2021),
  Opacus's ``PRVAccountant``; it returns an upper bound on epsilon within about 1 % of the tight
  privacy-loss-distribution bound (``docs/privacy-ledger.md`` has the measured table).
- ``rdp``: Rényi DP (Mironov 2017; Mironov, Talwar and Zhang 2019), Opacus's ``RDPAccountant``;
  8-15 % above the tight bound in the same measurements.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

import numpy as np
from opacus.accountants import IAccountant, PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis


class Accountant(str, Enum):
    """The privacy accountants medfed offers (names as in configuration files)."""

    RDP = "rdp"
    PRV = "prv"


DEFAULT_ACCOUNTANT = Accountant.PRV
"""The accountant used unless a site's configuration names another."""

MAX_NOISE_MULTIPLIER = 100.0
"""The largest noise multiplier ``calibrate_noise`` considers: a budget that needs more noise
leaves too little to learn anything, and the site declines instead."""


@dataclass(frozen=True)
class Mechanism:
    """``steps`` compositions of a Poisson-subsampled Gaussian mechanism.

    Attributes:
        noise_multiplier: Noise standard deviation divided by the L2 sensitivity (z).
        sample_rate: Probability that one record takes part in one step (q).
        steps: Number of compositions.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(f"noise_multiplier must be > 0, got {self.noise_multiplier}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


@dataclass(frozen=True)
class Budget:
    """An (epsilon, delta) differential-privacy budget."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"epsilon must be a finite number > 0, got {self.epsilon}")
        if not 0.0 < self.delta < 1.0:
            raise ValueError(f"delta must lie in (0, 1), got {self.delta}")


def opacus_accountant(accountant: Accountant | str, history: Iterable[Mechanism] = ()) -> IAccountant:
    """A fresh Opacus accountant of kind ``accountant`` holding ``history``."""
    kind = Accountant(accountant)
    opacus = RDPAccountant() if kind is Accountant.RDP else PRVAccountant()
    opacus.history = [(m.noise_multiplier, m.sample_rate, m.steps) for m in merged(history)]
    return opacus


def merged(history: Iterable[Mechanism]) -> list[Mechanism]:
    """``history`` with the steps of equal (noise, sample rate) pairs summed, in first-seen order.

    Composition is additive in RDP and in the PRV's convolution, so this changes no epsilon; it
    only keeps the accountant's cost independent of the number of rounds.
    """
    steps: dict[tuple[float, float], int] = {}
    for mechanism in history:
        key = (mechanism.noise_multiplier, mechanism.sample_rate)
        steps[key] = steps.get(key, 0) + mechanism.steps
    return [Mechanism(z, q, n) for (z, q), n in steps.items() if n > 0]


def epsilon_spent(history: Iterable[Mechanism], *, delta: float, accountant: Accountant | str) -> float:
    """Epsilon at ``delta`` after composing every mechanism of ``history`` (0 when empty).

    RDP is computed as Opacus's ``RDPAccountant`` does (same orders, same conversion), with the
    per-step RDP curve of each (noise, rate) pair cached: RDP composes linearly in the steps.
    """
    mechanisms = merged(history)
    if not mechanisms:
        return 0.0
    return _epsilon(tuple(mechanisms), delta, Accountant(accountant))


@functools.lru_cache(maxsize=256)
def _epsilon(mechanisms: tuple[Mechanism, ...], delta: float, accountant: Accountant) -> float:
    """Cached: a PRV evaluation takes 0.1-1 s, and the same history is asked for several times."""
    if accountant is Accountant.PRV:
        return float(opacus_accountant(Accountant.PRV, mechanisms).get_epsilon(delta=delta))
    rdp = sum(m.steps * _rdp_per_step(m.noise_multiplier, m.sample_rate) for m in mechanisms)
    epsilon, _ = rdp_analysis.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
    return float(epsilon)


@functools.lru_cache(maxsize=1024)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> np.ndarray:
    curve = rdp_analysis.compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=RDPAccountant.DEFAULT_ALPHAS
    )
    curve.setflags(write=False)
    return curve


def calibrate_noise(
    budget: Budget,
    *,
    sample_rate: float,
    steps: int,
    accountant: Accountant | str,
    spent: Iterable[Mechanism] = (),
    tolerance: float = 1e-3,
) -> float:
    """The smallest noise multiplier (to ``tolerance * epsilon``) that spends what ``spent``
    left of ``budget`` in ``steps`` steps at ``sample_rate``; the epsilon of ``spent`` and the new
    steps together is never above the budget.

    Bisection as Opacus's ``get_noise_multiplier``, over ``epsilon_spent`` so that earlier
    releases of the same data (other jobs) count. For PRV, whose evaluations are slow, the
    bisection starts from the RDP answer: RDP's epsilon is higher, so its ``z`` is enough.

    Raises:
        ValueError: ``steps`` is not positive, or what is left of the budget is too small for any
            noise level up to ``MAX_NOISE_MULTIPLIER``.
    """
    if steps <= 0:
        raise ValueError(f"steps must be > 0 to calibrate noise, got {steps}")
    earlier = list(spent)
    too_little = f"the budget {budget} leaves too little for {steps} more steps at rate {sample_rate}"
    if epsilon_spent(earlier, delta=budget.delta, accountant=accountant) >= budget.epsilon:
        raise ValueError(too_little)

    def epsilon(z: float) -> float:
        return epsilon_spent(
            [*earlier, Mechanism(z, sample_rate, steps)], delta=budget.delta, accountant=accountant
        )

    low, high = 0.0, 1.0
    if Accountant(accountant) is not Accountant.RDP:
        with contextlib.suppress(ValueError):  # RDP may see no room where PRV still sees some
            high = calibrate_noise(
                budget,
                sample_rate=sample_rate,
                steps=steps,
                accountant=Accountant.RDP,
                spent=earlier,
                tolerance=tolerance,
            )
            low = high / 2
    while (reached := epsilon(high)) > budget.epsilon:
        low, high = high, 2.0 * high
        if high > MAX_NOISE_MULTIPLIER:
            raise ValueError(too_little)
    while budget.epsilon - reached > tolerance * budget.epsilon and high - low > 1e-9 * high:
        middle = (low + high) / 2
        if (value := epsilon(middle)) <= budget.epsilon:
            high, reached = middle, value
        else:
            low = middle
    return high
