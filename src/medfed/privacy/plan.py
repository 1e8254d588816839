"""A run's protections as plain constructor arguments: the ``ProtectionPlan``.

The ``privacy:`` section of a configuration or job is parsed at the edge
(``medfed.config.schema.PrivacyConfig.plan``) into these frozen dataclasses; everything in
``medfed.privacy`` takes them, never the pydantic model, so privacy does not depend on the
configuration package. ``medfed.privacy.setup`` composes the wrappers from a plan, once for
``medfed simulate`` and the deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from medfed.errors import ConfigError

Accountant = Literal["rdp", "prv"]


@dataclass(frozen=True)
class DPSGDSettings:
    """Sample-level DP-SGD at every site (``medfed.privacy.dp.DPTrainer``).

    Attributes:
        noise_multiplier: Fixed noise ``z``; ``None`` calibrates it to spend each site's budget
            exactly by the last round.
        max_grad_norm: The per-sample clip (the initial one under adaptive clipping).
        adaptive: Adaptive clipping's ``(target_quantile, clip_lr, count_budget_fraction)``, or
            ``None`` for a fixed clip.
        secure_mode: Noise from a CSPRNG (else torch's generator; simulation only).
        augmentation_multiplicity: Augmented views per case, averaged before clipping.
        ema: Decay of the parameters' moving average a site returns, or ``None``.
    """

    noise_multiplier: float | None = None
    max_grad_norm: float = 1.0
    adaptive: tuple[float, float, float] | None = None
    secure_mode: bool = True
    augmentation_multiplicity: int = 1
    ema: float | None = None


@dataclass(frozen=True)
class ClientDPSettings:
    """Client-level DP-FedAvg around the strategy (``medfed.privacy.dp.ClientDP``).

    Attributes:
        noise_multiplier: Noise ``z`` relative to the clip.
        clip: The clip of each site's update (the initial one if adaptive).
        target_quantile: The quantile the clip tracks; ``None`` keeps it fixed.
        clip_lr: Geometric learning rate of the clip.
        count_budget_fraction: Share of the noise spent on the clipped count.
    """

    noise_multiplier: float
    clip: float = 1.0
    target_quantile: float | None = 0.5
    clip_lr: float = 0.2
    count_budget_fraction: float = 0.05


@dataclass(frozen=True)
class SecureSumSettings:
    """Secure aggregation (Bonawitz et al. 2017): ``t = floor(threshold_fraction * n) + 1``."""

    threshold_fraction: float = 0.67


@dataclass(frozen=True)
class CkksSettings:
    """CKKS encrypted aggregation with the default parameters of ``medfed.privacy.ckks``."""


@dataclass(frozen=True)
class ProtectionPlan:
    """Which protections a run uses, with their settings; ``ProtectionPlan()`` protects nothing.

    Attributes:
        accountant: The privacy accountant of DP-SGD and client-level DP.
        epsilon: Every site's DP-SGD budget unless ``site_budgets`` says otherwise.
        delta: The default delta (and that of client-level DP).
        site_budgets: Sites' own ``(epsilon, delta)``.
        dp_sgd: Sample-level DP-SGD at the sites, or ``None``.
        client_dp: Client-level DP on the server, or ``None``.
        secure_sum: How the sites' updates are summed unseen, or ``None`` (in the clear).
        reproducible_noise: DP noise from the run's seed: NOT PRIVATE (simulation only).
    """

    accountant: Accountant = "prv"
    epsilon: float = 8.0
    delta: float = 1e-5
    site_budgets: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    dp_sgd: DPSGDSettings | None = None
    client_dp: ClientDPSettings | None = None
    secure_sum: SecureSumSettings | CkksSettings | None = None
    reproducible_noise: bool = False

    def site_budget(self, site: str) -> tuple[float, float]:
        """``site``'s ``(epsilon, delta)``: its own entry, else the defaults."""
        return self.site_budgets.get(site, (self.epsilon, self.delta))


def refuse_robust_with(privacy: ProtectionPlan, rule: str) -> None:
    """Raises ``ConfigError`` if robust aggregation by ``rule`` cannot run under ``privacy``.

    A robust rule must see each site's update to find the outlier. Secure aggregation and CKKS
    show the server only the sum, so no robust rule can run after them; clipping at the sites
    before the sum is not robust either, since nothing proves that a malicious site clipped.
    Client-level DP calibrates its noise to the sum of clipped updates; a robust rule in place
    of that sum changes the sensitivity the guarantee rests on. DP-SGD at the sites is
    compatible: it changes how each site trains, not what the server sees.
    """
    reasons = []
    if isinstance(privacy.secure_sum, SecureSumSettings):
        reasons.append(
            ("secure_aggregation", "secure aggregation shows the server only the sum of the updates")
        )
    if isinstance(privacy.secure_sum, CkksSettings):
        reasons.append(("encryption", "CKKS encryption shows the server only the sum of the updates"))
    if privacy.client_dp is not None:
        reasons.append(
            ("client_dp", "client-level DP's noise is calibrated to the plain sum of clipped updates")
        )
    if reasons:
        section, reason = reasons[0]
        raise ConfigError(
            f"robust aggregation ('{rule}') cannot be combined with privacy.{section}: {reason}, "
            "while a robust rule needs every site's update in the clear (clipping at the sites "
            "instead is not robust: nothing proves a malicious site clipped)"
        )
