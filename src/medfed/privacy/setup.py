"""From a ``ProtectionPlan`` to the pieces a run uses, composed in one place for
``medfed simulate`` and ``medfed server``/``client`` alike: the protected strategy with the way
its rounds are gathered (``protect``), a site's half of a protected round (``site_protocol``),
a site's trainer stack (``site_trainer``), the DP-compatible model and the number of sites a
round expects."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn

from medfed.data.cases import SiteData
from medfed.errors import ConfigError
from medfed.orchestration.grid import Collect, OpenProtocol, train_in_clear
from medfed.privacy.plan import CkksSettings, ProtectionPlan, SecureSumSettings, refuse_robust_with
from medfed.strategies.base import Strategy
from medfed.strategies.robust import RobustAggregation
from medfed.training.trainer import LocalTrainer, Trainer

if TYPE_CHECKING:
    from pathlib import Path

    import tenseal as ts

    from medfed.privacy.dp.noise import NoiseMode
    from medfed.privacy.secagg.authentication import KeyAuthenticator


def protect(
    privacy: ProtectionPlan,
    strategy: Strategy,
    *,
    expected_sites: int,
    seed: int,
    ckks_context: ts.Context | None = None,
) -> tuple[Strategy, Collect]:
    """``strategy`` wrapped as ``privacy`` says, and how its rounds are gathered over the grid.

    The wrappers, innermost first: client-level DP, then secure aggregation or CKKS (each
    imports its libraries only when configured). A protected sum comes with its round
    (``SecureAggregationRound``, ``EncryptedAggregationRound``); otherwise the sites' updates are
    gathered in the clear.

    Args:
        ckks_context: The server's keyless CKKS context (jobs with encryption).

    Raises:
        ConfigError: The job uses CKKS but no context is given, or ``strategy`` aggregates
            robustly while ``privacy`` hides or clips the sites' updates (``refuse_robust_with``).
    """
    if isinstance(strategy, RobustAggregation):
        refuse_robust_with(privacy, strategy.rule.name)
    if privacy.client_dp is not None:
        from medfed.privacy.dp.config import client_dp

        strategy = client_dp(privacy, strategy, expected_sites=expected_sites, seed=seed)
    if isinstance(privacy.secure_sum, SecureSumSettings):
        from medfed.privacy.secagg import SecureAggregation, SecureAggregationRound

        threshold = privacy.secure_sum.threshold_fraction
        return SecureAggregation(strategy), SecureAggregationRound(threshold_fraction=threshold)
    if isinstance(privacy.secure_sum, CkksSettings):
        from medfed.privacy.ckks_rounds import EncryptedAggregation, EncryptedAggregationRound

        if ckks_context is None:
            raise ConfigError(
                "the job uses CKKS encryption but the server has no CKKS context; provision the "
                "kits with 'encryption: ckks' and start the server with its kit"
            )
        return EncryptedAggregation(strategy), EncryptedAggregationRound(ckks_context)
    return strategy, train_in_clear


def site_protocol(
    privacy: ProtectionPlan,
    *,
    site: str,
    ckks_context: ts.Context | None = None,
    identity: KeyAuthenticator | None = None,
) -> OpenProtocol | None:
    """How ``site`` opens its half of a protected round (``None``: rounds in the clear).

    Args:
        site: The site's name (in messages).
        ckks_context: The sites' shared secret-key CKKS context (jobs with encryption).
        identity: Signs the site's secure-aggregation keys (``None``: anonymous).

    Raises:
        ConfigError: The job uses CKKS but the site has no context.
    """
    if isinstance(privacy.secure_sum, SecureSumSettings):
        from medfed.privacy.secagg import SecureAggregationSite

        return lambda task, invitation, result: SecureAggregationSite(task, invitation, result, identity)
    if isinstance(privacy.secure_sum, CkksSettings):
        from medfed.privacy.ckks_rounds import CkksSite

        if ckks_context is None:
            raise ConfigError(
                f"site '{site}': the job uses CKKS encryption but this site has no CKKS context; "
                "provision the kits with 'encryption: ckks'"
            )
        context = ckks_context
        return lambda task, invitation, result: CkksSite(context, task, result)
    return None


def site_trainer(
    privacy: ProtectionPlan,
    inner: LocalTrainer,
    data: SiteData,
    *,
    planned_rounds: int,
    ledger_dir: Path,
    job: str,
    noise: NoiseMode,
) -> Trainer:
    """The trainer stack of the site of ``data``: ``inner``, wrapped in a ``DPTrainer`` with the
    site's budget (``privacy.site_budget``), the ledger of ``data`` in ``ledger_dir`` and the
    ``noise`` the caller chose (a deployed site: always ``SECURE``) under DP-SGD."""
    if privacy.dp_sgd is None:
        return inner
    from medfed.privacy.dp.config import site_policy  # imports Opacus: only when DP is on
    from medfed.privacy.dp.ledger import ledger_file
    from medfed.privacy.dp.trainer import DPTrainer

    policy = site_policy(privacy, data.name, planned_rounds=planned_rounds, noise=noise)
    ledger = ledger_file(ledger_dir, data)  # one per dataset: shared by every job on the same cases
    return DPTrainer(inner, site=data.name, policy=policy, ledger_path=ledger, job=job)


def privacy_warning(privacy: ProtectionPlan) -> str | None:
    """What a run's logs and report must say about its privacy (``privacy.reproducible_noise``
    under DP: NOT PRIVATE), or ``None``."""
    if not privacy.reproducible_noise or (privacy.dp_sgd is None and privacy.client_dp is None):
        return None
    from medfed.privacy.dp.noise import NOT_PRIVATE

    return NOT_PRIVATE


def prepare_model(privacy: ProtectionPlan, model: nn.Module) -> nn.Module:
    """``model`` made DP-compatible (Opacus's ``ModuleValidator.fix``) under DP-SGD, else as is.

    Server and sites call it on the same initial model, so they agree on the architecture.
    """
    if privacy.dp_sgd is None:
        return model
    from medfed.privacy.dp import make_dp_compatible  # imports Opacus: only when DP is on

    fixed, _ = make_dp_compatible(model)
    return fixed


def expected_sites(num_sites: int, *, fraction: float, min_sites: int) -> int:
    """Sites a round asks: the sampled ``fraction`` of ``num_sites``, at least ``min_sites``."""
    sampled = math.ceil(fraction * num_sites)
    return min(num_sites, max(min_sites, sampled))
