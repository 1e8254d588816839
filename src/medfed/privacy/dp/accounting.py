"""Privacy accounting: pure functions over a history of sampled Gaussian mechanisms.

A history is Opacus's: a sequence of ``(noise_multiplier, sample_rate, steps)``, each entry
``steps`` compositions of the Poisson-subsampled Gaussian mechanism. Two accountants are offered:

- ``rdp``: Rényi DP (Mironov 2017; Mironov, Talwar and Zhang 2019), Opacus's ``RDPAccountant``.
- ``prv``: privacy loss random variables (Gopi, Lee and Wutschitz, NeurIPS 2021), Opacus's
  ``PRVAccountant``; tighter, and it returns an upper bound on epsilon.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

import numpy as np
from opacus.accountants import IAccountant, PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.utils import get_noise_multiplier


class Accountant(str, Enum):
    """The privacy accountants medfed offers (names as in configuration files)."""

    RDP = "rdp"
    PRV = "prv"


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
    if Accountant(accountant) is Accountant.PRV:
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
    tolerance: float = 1e-3,
) -> float:
    """The smallest noise multiplier (to ``tolerance * epsilon``) that spends ``budget`` in
    ``steps`` steps at ``sample_rate``; the epsilon it reaches is never above the budget.

    Raises:
        ValueError: ``steps`` is not positive, or the budget is too small for any noise level.
    """
    if steps <= 0:
        raise ValueError(f"steps must be > 0 to calibrate noise, got {steps}")
    return float(
        get_noise_multiplier(
            target_epsilon=budget.epsilon,
            target_delta=budget.delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=Accountant(accountant).value,
            epsilon_tolerance=tolerance * budget.epsilon,
        )
    )
