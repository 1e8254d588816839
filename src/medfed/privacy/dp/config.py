"""From the ``privacy:`` section of a configuration to DP trainers and strategy wrappers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from medfed.config.schema import PrivacyConfig
from medfed.data.cases import SiteData
from medfed.errors import ConfigError
from medfed.privacy.dp.accounting import Accountant, Budget
from medfed.privacy.dp.client import ClientDP
from medfed.privacy.dp.ledger import ledger_file
from medfed.privacy.dp.trainer import AdaptiveClipping, DPTrainer, SitePrivacy
from medfed.strategies.base import Strategy
from medfed.training.trainer import LocalTrainer
from medfed.types import ServerState


def check_site_names(privacy: PrivacyConfig, sites: Iterable[str]) -> None:
    """Raises ``ConfigError`` when ``privacy.sites`` names a site that does not exist (a typo
    would otherwise silently give that site the default budget)."""
    unknown = sorted(set(privacy.sites) - set(sites))
    if unknown:
        raise ConfigError(f"privacy.sites names unknown sites {unknown}; sites are {sorted(sites)}")


def site_policy(privacy: PrivacyConfig, site: str, *, planned_rounds: int) -> SitePrivacy:
    """The DP-SGD policy of ``site``: its own budget (or the default) and the DP-SGD settings."""
    dp = privacy.dp_sgd
    if dp is None:
        raise ConfigError("privacy.dp_sgd is not configured")
    own = privacy.sites.get(site)
    budget = Budget(
        epsilon=privacy.epsilon if own is None else own.epsilon,
        delta=privacy.delta if own is None or own.delta is None else own.delta,
    )
    adaptive = (
        AdaptiveClipping(dp.target_quantile, dp.clip_lr, dp.count_budget_fraction)
        if dp.clipping == "adaptive"
        else None
    )
    return SitePrivacy(
        budget=budget,
        accountant=Accountant(privacy.accountant),
        noise_multiplier=dp.noise_multiplier,
        planned_rounds=planned_rounds,
        max_grad_norm=dp.max_grad_norm,
        adaptive_clipping=adaptive,
        secure_mode=dp.secure_mode,
    )


def dp_trainer(
    privacy: PrivacyConfig, inner: LocalTrainer, data: SiteData, *, planned_rounds: int, ledger_dir: Path, job: str
) -> DPTrainer:
    """A ``DPTrainer`` for the site of ``data`` whose ledger is the one of ``data`` in
    ``ledger_dir`` (``ledger_file``), shared by every job on the same cases."""
    policy = site_policy(privacy, data.name, planned_rounds=planned_rounds)
    return DPTrainer(inner, site=data.name, policy=policy, ledger_path=ledger_file(ledger_dir, data), job=job)


def client_dp(privacy: PrivacyConfig, inner: Strategy, *, expected_sites: int, seed: int) -> ClientDP:
    """``inner`` wrapped in client-level DP as ``privacy.client_dp`` says."""
    settings = privacy.client_dp
    if settings is None:
        raise ConfigError("privacy.client_dp is not configured")
    return ClientDP(
        inner,
        noise_multiplier=settings.noise_multiplier,
        clip=settings.clip,
        target_quantile=settings.target_quantile if settings.adaptive else None,
        clip_lr=settings.clip_lr,
        count_budget_fraction=settings.count_budget_fraction,
        expected_sites=expected_sites,
        accountant=privacy.accountant,
        seed=seed,
    )


def privacy_metrics(
    privacy: PrivacyConfig, trainers: Mapping[str, object], strategy: Strategy, state: ServerState
) -> list[tuple[str, str, float]]:
    """``(site, metric, value)`` after a round: each DP site's ``epsilon`` spent and, under
    client-level DP, the server's ``client_epsilon`` (site ``"server"``)."""
    rows = [
        (site, "epsilon", trainer.epsilon)
        for site, trainer in sorted(trainers.items())
        if isinstance(trainer, DPTrainer)
    ]
    if isinstance(strategy, ClientDP):
        epsilon = strategy.epsilon(state, delta=privacy.delta)
        rows.append(("server", "client_epsilon", epsilon))  # inf when noise_multiplier is 0
    return rows
