"""From a ``ProtectionPlan`` to DP trainers and strategy wrappers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from medfed.errors import ConfigError
from medfed.privacy.dp.accounting import Accountant, Budget
from medfed.privacy.dp.client_level import ClientDP
from medfed.privacy.dp.noise import NoiseMode
from medfed.privacy.dp.trainer import AdaptiveClipping, DPTrainer, SitePrivacy
from medfed.privacy.plan import ProtectionPlan
from medfed.strategies.base import Strategy
from medfed.types import ServerState


def check_site_names(privacy: ProtectionPlan, sites: Iterable[str]) -> None:
    """Raises ``ConfigError`` when ``privacy.sites`` names a site that does not exist (a typo
    would otherwise silently give that site the default budget)."""
    unknown = sorted(set(privacy.site_budgets) - set(sites))
    if unknown:
        raise ConfigError(f"privacy.sites names unknown sites {unknown}; sites are {sorted(sites)}")


def simulated_noise(privacy: ProtectionPlan) -> NoiseMode:
    """The noise of a simulated site: ``REPRODUCIBLE`` (NOT PRIVATE) only on the explicit
    ``privacy.reproducible_noise`` opt-in, else ``SECURE`` (``SYSTEM`` if ``secure_mode`` is off).
    Deployed sites do not ask: they always use ``SECURE``."""
    if privacy.reproducible_noise:
        return NoiseMode.REPRODUCIBLE
    secure = privacy.dp_sgd is None or privacy.dp_sgd.secure_mode
    return NoiseMode.SECURE if secure else NoiseMode.SYSTEM


def site_policy(privacy: ProtectionPlan, site: str, *, planned_rounds: int, noise: NoiseMode) -> SitePrivacy:
    """The DP-SGD policy of ``site``: its own budget (or the default), the DP-SGD settings and
    the ``noise`` its caller chose (the site's own decision, never the job's)."""
    dp = privacy.dp_sgd
    if dp is None:
        raise ConfigError("privacy.dp_sgd is not configured")
    epsilon, delta = privacy.site_budget(site)
    budget = Budget(epsilon=epsilon, delta=delta)
    adaptive = None if dp.adaptive is None else AdaptiveClipping(*dp.adaptive)
    return SitePrivacy(
        budget=budget,
        accountant=Accountant(privacy.accountant),
        noise_multiplier=dp.noise_multiplier,
        planned_rounds=planned_rounds,
        max_grad_norm=dp.max_grad_norm,
        adaptive_clipping=adaptive,
        noise=noise,
        augmentation_multiplicity=dp.augmentation_multiplicity,
        ema_decay=dp.ema,
    )


def client_dp(privacy: ProtectionPlan, inner: Strategy, *, expected_sites: int, seed: int) -> ClientDP:
    """``inner`` wrapped in client-level DP as ``privacy.client_dp`` says; the server's noise is
    ``SECURE`` unless ``privacy.reproducible_noise`` (simulation only) makes it replayable."""
    settings = privacy.client_dp
    if settings is None:
        raise ConfigError("privacy.client_dp is not configured")
    return ClientDP(
        inner,
        noise_multiplier=settings.noise_multiplier,
        clip=settings.clip,
        target_quantile=settings.target_quantile,
        clip_lr=settings.clip_lr,
        count_budget_fraction=settings.count_budget_fraction,
        expected_sites=expected_sites,
        accountant=privacy.accountant,
        noise=NoiseMode.REPRODUCIBLE if privacy.reproducible_noise else NoiseMode.SECURE,
        seed=seed,
    )


def privacy_metrics(
    privacy: ProtectionPlan, trainers: Mapping[str, object], strategy: Strategy, state: ServerState
) -> list[tuple[str, str, float]]:
    """``(site, metric, value)`` after a round: each DP site's ``epsilon`` spent at its
    ``delta`` and, under client-level DP, the server's ``client_epsilon`` (site ``"server"``)."""
    rows = [
        (site, name, value)
        for site, trainer in sorted(trainers.items())
        if isinstance(trainer, DPTrainer)
        for name, value in trainer.spent().items()
    ]
    if isinstance(strategy, ClientDP):
        epsilon = strategy.epsilon(state, delta=privacy.delta)
        rows.append(("server", "client_epsilon", epsilon))  # inf when noise_multiplier is 0
    return rows
