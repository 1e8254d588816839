"""The ``privacy:`` section parsed at the edge into a ``ProtectionPlan``."""

from __future__ import annotations

from medfed.config.schema import PrivacyConfig
from medfed.privacy.plan import (
    CkksSettings,
    ClientDPSettings,
    DPSGDSettings,
    ProtectionPlan,
    SecureSumSettings,
)


def test_an_empty_section_protects_nothing() -> None:
    assert PrivacyConfig().plan() == ProtectionPlan()


def test_every_setting_reaches_the_plan() -> None:
    privacy = PrivacyConfig.model_validate(
        {
            "accountant": "rdp",
            "epsilon": 3.0,
            "delta": 1e-6,
            "sites": {"a": {"epsilon": 1.0}, "b": {"epsilon": 2.0, "delta": 1e-7}},
            "dp_sgd": {
                "max_grad_norm": 0.5,
                "clipping": "adaptive",
                "target_quantile": 0.6,
                "secure_mode": False,
            },
            "secure_aggregation": {"threshold_fraction": 0.6},
        }
    )
    plan = privacy.plan()
    assert (plan.accountant, plan.epsilon, plan.delta) == ("rdp", 3.0, 1e-6)
    assert plan.site_budget("a") == (1.0, 1e-6) and plan.site_budget("b") == (2.0, 1e-7)
    assert plan.site_budget("c") == (3.0, 1e-6)
    assert plan.dp_sgd == DPSGDSettings(None, 0.5, (0.6, 0.2, 0.05), secure_mode=False)
    assert plan.secure_sum == SecureSumSettings(0.6) and plan.client_dp is None


def test_client_dp_and_ckks_reach_the_plan() -> None:
    fixed = PrivacyConfig.model_validate(
        {"client_dp": {"noise_multiplier": 1.0, "clip": 2.0, "adaptive": False}}
    )
    assert fixed.plan().client_dp == ClientDPSettings(1.0, 2.0, None, 0.2, 0.05)
    assert fixed.plan().secure_sum is None
    assert (
        PrivacyConfig.model_validate({"encryption": {"scheme": "ckks"}}).plan().secure_sum == CkksSettings()
    )
