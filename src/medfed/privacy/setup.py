"""From the ``privacy:`` section to the pieces a run uses, the same in simulation and deployment:
the protected strategy, the DP-compatible model and the number of sites a round expects."""

from __future__ import annotations

import math

from torch import nn

from medfed.config.schema import FederationConfig, PrivacyConfig
from medfed.errors import ConfigError
from medfed.strategies.base import Strategy
from medfed.strategies.robust import RobustAggregation


def protect_strategy(privacy: PrivacyConfig, strategy: Strategy, *, expected_sites: int, seed: int) -> Strategy:
    """``strategy`` wrapped as ``privacy`` says: client-level DP, then secure aggregation or
    CKKS (each imports its libraries only when configured).

    Raises:
        ConfigError: If ``strategy`` aggregates robustly and ``privacy`` hides or clips the
            sites' individual updates (see ``refuse_robust_with``).
    """
    if isinstance(strategy, RobustAggregation):
        refuse_robust_with(privacy, strategy.rule.name)
    if privacy.client_dp is not None:
        from medfed.privacy.dp.config import client_dp

        strategy = client_dp(privacy, strategy, expected_sites=expected_sites, seed=seed)
    if privacy.secure_aggregation is not None:
        from medfed.privacy.secagg import SecureAggregation

        strategy = SecureAggregation(strategy)
    if privacy.encryption is not None:
        from medfed.privacy.ckks_connector import EncryptedAggregation

        strategy = EncryptedAggregation(strategy)
    return strategy


def privacy_warning(privacy: PrivacyConfig) -> str | None:
    """What a run's logs and report must say about its privacy (``privacy.reproducible_noise``
    under DP: NOT PRIVATE), or ``None``."""
    if not privacy.reproducible_noise or (privacy.dp_sgd is None and privacy.client_dp is None):
        return None
    from medfed.privacy.dp.noise import NOT_PRIVATE

    return NOT_PRIVATE


def refuse_robust_with(privacy: PrivacyConfig, rule: str) -> None:
    """Raises ``ConfigError`` if robust aggregation by ``rule`` cannot run under ``privacy``.

    A robust rule must see each site's update to find the outlier. Secure aggregation and CKKS
    show the server only the sum, so no robust rule can run after them; clipping at the sites
    before the sum is not robust either, since nothing proves that a malicious site clipped.
    Client-level DP calibrates its noise to the sum of clipped updates; a robust rule in place
    of that sum changes the sensitivity the guarantee rests on. DP-SGD at the sites is
    compatible: it changes how each site trains, not what the server sees.
    """
    reasons = {
        "secure_aggregation": "secure aggregation shows the server only the sum of the updates",
        "encryption": "CKKS encryption shows the server only the sum of the updates",
        "client_dp": "client-level DP's noise is calibrated to the plain sum of clipped updates",
    }
    for section, reason in reasons.items():
        if getattr(privacy, section) is not None:
            raise ConfigError(
                f"robust aggregation ('{rule}') cannot be combined with privacy.{section}: {reason}, "
                "while a robust rule needs every site's update in the clear (clipping at the sites "
                "instead is not robust: nothing proves a malicious site clipped)"
            )


def prepare_model(privacy: PrivacyConfig, model: nn.Module) -> nn.Module:
    """``model`` made DP-compatible (Opacus's ``ModuleValidator.fix``) under DP-SGD, else as is.

    Server and sites call it on the same initial model, so they agree on the architecture.
    """
    if privacy.dp_sgd is None:
        return model
    from medfed.privacy.dp import make_dp_compatible  # imports Opacus: only when DP is on

    fixed, _ = make_dp_compatible(model)
    return fixed


def expected_sites(federation: FederationConfig, num_sites: int) -> int:
    """Sites a round asks: the sampled fraction of ``num_sites``, at least ``min_sites``."""
    sampled = math.ceil(federation.fraction * num_sites)
    return min(num_sites, max(federation.min_sites, sampled))
