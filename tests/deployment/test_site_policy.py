"""A site's own privacy policy: what it refuses in a job, how its sources combine, and how the
site applies it (no training, no release) without a network."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from site_helpers import tiny_job, tiny_site

from medfed.config.schema import PrivacyConfig
from medfed.deployment.site_builder import SiteBuilder, SiteOptions
from medfed.deployment.site_policy import (
    ACCOUNTANTS,
    SitePolicy,
    check_job,
    combined_policy,
    load_site_policy,
    parse_site_policy,
    site_privacy,
    stricter,
)
from medfed.errors import ConfigError, PolicyRefusal
from medfed.orchestration.site import cpu_weights
from medfed.provision import ProjectConfig, load_client_kit, provision
from medfed.types import TrainTask

FIXED = {"noise": "fixed", "noise_multiplier": 1.0, "max_grad_norm": 1.0}
STRICT = SitePolicy(
    epsilon=2.0,
    delta=1e-6,
    require_dp_sgd=True,
    require_secure_aggregation=True,
    min_noise_multiplier=0.8,
    max_grad_norm=1.0,
    accountants=frozenset({"prv"}),
)


def _privacy(**section: Any) -> PrivacyConfig:
    return PrivacyConfig.model_validate(section)


# ----- check_job: one weakness each ------------------------------------------------------------
@pytest.mark.parametrize(
    ("privacy", "weakness"),
    [
        ({"secure_aggregation": {}}, "job has no DP-SGD but this site requires it"),
        ({"secure_aggregation": {}, "client_dp": None, "dp_sgd": None}, "no DP-SGD"),
        (
            {"dp_sgd": FIXED},
            "in the clear (no secure aggregation or encryption) but this site requires a secure sum",
        ),
        (
            {"dp_sgd": {**FIXED, "noise_multiplier": 0.5}, "encryption": {"scheme": "ckks"}},
            "noise multiplier 0.5 is below this site's minimum 0.8",
        ),
        (
            {"dp_sgd": {"max_grad_norm": 1.0}, "encryption": {"scheme": "ckks"}},
            "job calibrates its DP-SGD noise multiplier but this site requires a fixed one >= 0.8",
        ),
        (
            {"dp_sgd": {**FIXED, "max_grad_norm": 4.0}, "secure_aggregation": {}},
            "clips per-sample gradients at 4, above this site's maximum 1",
        ),
        ({"dp_sgd": {**FIXED, "clipping": "adaptive"}, "secure_aggregation": {}}, "job clips adaptively"),
        (
            {"dp_sgd": FIXED, "secure_aggregation": {}, "accountant": "rdp"},
            "accountant 'rdp' is not one this site allows ['prv']",
        ),
    ],
)
def test_check_job_names_each_way_a_job_is_weaker_than_the_policy(
    privacy: dict[str, Any], weakness: str
) -> None:
    weaknesses = check_job(STRICT, _privacy(**privacy))
    assert len(weaknesses) == 1 and weakness in weaknesses[0]


def test_a_job_that_meets_the_policy_passes_and_a_policy_of_defaults_accepts_anything() -> None:
    for protection in ({"secure_aggregation": {}}, {"encryption": {"scheme": "ckks"}}):
        assert check_job(STRICT, _privacy(dp_sgd={**FIXED, "noise_multiplier": 0.8}, **protection)) == []
    assert check_job(SitePolicy(), _privacy()) == []
    # A job's epsilon and delta are never a reason: the stricter budget applies instead.
    assert check_job(STRICT, _privacy(epsilon=100.0, delta=0.1, dp_sgd=FIXED, secure_aggregation={})) == []


def test_a_plain_job_lists_every_weakness() -> None:
    assert len(check_job(STRICT, _privacy())) == 2  # no DP-SGD, no secure sum


def test_the_job_can_only_tighten_the_sites_budget() -> None:
    site = SitePolicy(epsilon=2.0, delta=1e-6, require_dp_sgd=True)
    looser = _privacy(epsilon=50.0, delta=1e-3, dp_sgd=FIXED)
    assert site_privacy(site, looser, "a").site_budget("a") == (2.0, 1e-6)
    tighter = _privacy(epsilon=50.0, delta=1e-3, sites={"a": {"epsilon": 0.5, "delta": 1e-8}}, dp_sgd=FIXED)
    assert site_privacy(site, tighter, "a").site_budget("a") == (0.5, 1e-8)
    assert site_privacy(site, tighter, "a").site_budget("b") == (50.0, 1e-3)  # other sites: untouched
    assert site_privacy(SitePolicy(), looser, "a").site_budget("a") == (50.0, 1e-3)


# ----- the policy's sources --------------------------------------------------------------------
def test_epsilon_or_any_dp_sgd_bound_implies_require_dp_sgd() -> None:
    assert parse_site_policy({"epsilon": 1.0}, source="x").require_dp_sgd
    assert parse_site_policy({"max_grad_norm": 1.0}, source="x").require_dp_sgd
    assert not parse_site_policy({}, source="x").require_dp_sgd
    assert parse_site_policy({}, source="x") == SitePolicy()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("epsilon: 1\nrequire_dp_sgd: false\n", "epsilon bound DP-SGD: they need require_dp_sgd"),
        ("epsilon: -1\n", "epsilon must be a finite number > 0"),
        ("epsilon: .inf\n", "epsilon must be a finite number > 0"),
        ("delta: 1.5\n", "delta must lie in (0, 1)"),
        ("require_secure_aggregaton: true\n", "require_secure_aggregaton"),
        ("accountants: [rdp, moments]\n", "accountants.1"),
        ("accountants: []\n", "accountants must be a non-empty subset"),
        ("min_noise_multiplier: lots\n", "min_noise_multiplier"),
        ("- epsilon\n", "must be a mapping"),
        ("epsilon: [1\n", "site policy"),
    ],
)
def test_a_bad_policy_file_names_the_file_and_the_setting(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "site_policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_site_policy(path)
    assert str(path) in str(error.value) and named in str(error.value)


def test_stricter_takes_the_strictest_value_of_each_setting() -> None:
    first = SitePolicy(epsilon=3.0, require_dp_sgd=True, min_noise_multiplier=0.5, release_eval_metrics=False)
    second = SitePolicy(
        delta=1e-7,
        require_dp_sgd=True,
        require_secure_aggregation=True,
        epsilon=5.0,
        max_grad_norm=2.0,
        min_noise_multiplier=1.0,
        accountants=frozenset({"prv"}),
    )
    assert stricter(first, second) == SitePolicy(
        epsilon=3.0,
        delta=1e-7,
        require_dp_sgd=True,
        require_secure_aggregation=True,
        min_noise_multiplier=1.0,
        max_grad_norm=2.0,
        accountants=frozenset({"prv"}),
        release_eval_metrics=False,
    )
    assert stricter(first, SitePolicy()) == first == stricter(SitePolicy(), first)
    with pytest.raises(ValueError, match="non-empty"):
        stricter(SitePolicy(accountants=frozenset({"rdp"})), SitePolicy(accountants=frozenset({"prv"})))
    assert SitePolicy().accountants == ACCOUNTANTS == {"rdp", "prv"}


def test_the_kit_file_the_policy_file_and_the_flags_all_apply(tmp_path: Path) -> None:
    provision(
        ProjectConfig(name="t", server={"host": "localhost", "port": 1}, sites=["a"]), tmp_path / "kits"
    )
    assert load_client_kit(tmp_path / "kits" / "a").policy is None  # provision never writes one
    (tmp_path / "kits" / "a" / "site_policy.yaml").write_text(
        "require_secure_aggregation: true\ndelta: 1.0e-7\n"
    )
    kit = load_client_kit(tmp_path / "kits" / "a")
    assert kit.policy == tmp_path / "kits" / "a" / "site_policy.yaml"
    extra = tmp_path / "extra.yaml"
    extra.write_text("release_eval_metrics: false\nepsilon: 4\n")
    assert kit.policy is not None
    policy = combined_policy({"epsilon": 2.0, "require_secure_aggregation": False}, [kit.policy, extra])
    assert policy == SitePolicy(
        epsilon=2.0,
        delta=1e-7,
        require_dp_sgd=True,
        require_secure_aggregation=True,
        release_eval_metrics=False,
    )
    extra.write_text("accountants: [prv]\n")
    (tmp_path / "kits" / "a" / "site_policy.yaml").write_text("accountants: [rdp]\n")
    with pytest.raises(ConfigError, match=re.escape(f"site policy '{extra}' contradicts the others")):
        combined_policy({}, [kit.policy, extra])


# ----- the site applies it ---------------------------------------------------------------------
def _job(**privacy: Any) -> str:
    return tiny_job(1, privacy=privacy)


def test_a_site_refuses_a_weaker_job_before_building_anything(tmp_path: Path) -> None:
    builder = SiteBuilder(
        tiny_site(tmp_path, 5),
        SiteOptions(tmp_path / "state", policy=SitePolicy(epsilon=1.0, require_dp_sgd=True)),
    )
    task = TrainTask(round=1, weights={})
    for attempt in (
        lambda: builder.site_for(_job()),
        lambda: builder.train(_job(), task),
        lambda: builder.evaluate(_job(), task),
    ):
        with pytest.raises(PolicyRefusal, match="^site policy: job has no DP-SGD but this site requires it$"):
            attempt()
    assert not (tmp_path / "state").exists()  # no ledger, no state: nothing was trained


def test_a_site_withholds_the_metrics_its_policy_does_not_release(tmp_path: Path) -> None:
    policy = SitePolicy(release_training_metrics=False, release_eval_metrics=False)
    builder = SiteBuilder(tiny_site(tmp_path, 5), SiteOptions(tmp_path / "state", policy=policy))
    task = TrainTask(round=1, weights=cpu_weights(builder.site_for(_job()).model))
    result = builder.train(_job(), task)
    assert result.metrics == {} and result.weights.keys() == task.weights.keys()
    with pytest.raises(PolicyRefusal, match="does not release evaluation metrics"):
        builder.evaluate(_job(), task)
    releasing = SiteBuilder(tiny_site(tmp_path, 5), SiteOptions(tmp_path / "other"))
    assert "loss" in releasing.train(_job(), task).metrics
