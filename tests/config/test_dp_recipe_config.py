"""The DP recipe's configuration fields: bounds, the augmentation they need, and their way to
each site's policy."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medfed.config.schema import PrivacyConfig, SimulationConfig
from medfed.privacy.dp.config import site_policy
from medfed.privacy.dp.noise import NoiseMode


def _privacy(**dp_sgd: object) -> PrivacyConfig:
    return PrivacyConfig.model_validate({"dp_sgd": dp_sgd})


def test_the_knobs_reach_every_sites_policy() -> None:
    plan = _privacy(augmentation_multiplicity=4, ema=0.9).plan()
    policy = site_policy(plan, "a", planned_rounds=2, noise=NoiseMode.SYSTEM)
    assert (policy.augmentation_multiplicity, policy.ema_decay) == (4, 0.9)
    default = site_policy(_privacy().plan(), "a", planned_rounds=2, noise=NoiseMode.SYSTEM)
    assert (default.augmentation_multiplicity, default.ema_decay) == (1, None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("augmentation_multiplicity", 0),
        ("augmentation_multiplicity", 33),
        ("augmentation_multiplicity", 2.5),
        ("ema", 0.0),
        ("ema", 1.0),
        ("ema", float("nan")),
    ],
)
def test_out_of_range_knobs_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        _privacy(**{field: value})


def test_several_views_need_augmentation() -> None:
    privacy = {"dp_sgd": {"augmentation_multiplicity": 2}}
    with pytest.raises(ValidationError, match="data.augment"):
        SimulationConfig.model_validate({"privacy": privacy, "data": {"augment": False}})
    config = SimulationConfig.model_validate({"privacy": privacy, "data": {"augment": True}})
    assert config.privacy.dp_sgd is not None and config.privacy.dp_sgd.augmentation_multiplicity == 2
