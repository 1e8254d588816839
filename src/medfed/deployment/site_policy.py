"""A site's own privacy policy: a floor that the job a server sends cannot lower.

A site states its policy in its kit (``site_policy.yaml``), in a file given with ``--policy``
and with ``medfed client`` flags; all of them apply, and the strictest value of each wins
(``stricter``). ``check_job`` lists every way a job is weaker than the policy: a site declines
each task of such a job with a one-line reason and never trains for it. The site's budget
is not a reason to decline: the stricter of the site's and the job's epsilon and delta apply
(``site_privacy``), so a job can only tighten it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from medfed.config.loading import describe_errors
from medfed.config.schema import DPSGDConfig, PrivacyConfig, SiteBudgetConfig
from medfed.errors import ConfigError

ACCOUNTANTS: frozenset[str] = frozenset(get_args(PrivacyConfig.model_fields["accountant"].annotation))
"""The accountants a job may name (``privacy.accountant``)."""

_DP_SGD_BOUNDS = ("epsilon", "delta", "min_noise_multiplier", "max_grad_norm")


@dataclass(frozen=True)
class SitePolicy:
    """What a site requires of every job; the defaults require nothing.

    Attributes:
        epsilon: The site's DP-SGD budget over everything its ledger records; a smaller job
            budget applies instead.
        delta: The site's largest DP-SGD delta; a smaller job delta applies instead.
        require_dp_sgd: Declines jobs without sample-level DP-SGD at the sites (client-level DP
            does not count: it runs on the server, after the site's update arrived there). Every
            DP-SGD bound of this policy (``epsilon``, ``delta``, ``min_noise_multiplier``,
            ``max_grad_norm``) needs it.
        require_secure_aggregation: Declines jobs in which the server receives this site's own
            update: the job must use secure aggregation or CKKS encryption.
        min_noise_multiplier: Declines DP-SGD jobs whose noise multiplier is smaller, or is
            calibrated (only known after the first round's calibration).
        max_grad_norm: Declines DP-SGD jobs that clip per-sample gradients at a larger L2 norm,
            or adaptively (the norm moves during the run).
        accountants: The accountants the site trusts to measure its DP-SGD spending.
        release_training_metrics: Sends metrics (loss, epsilon spent) with each update.
        release_eval_metrics: Sends the global model's metrics on the site's held-out cases.

    Raises:
        ValueError: A value is out of range (named), or the policy contradicts itself.
    """

    epsilon: float | None = None
    delta: float | None = None
    require_dp_sgd: bool = False
    require_secure_aggregation: bool = False
    min_noise_multiplier: float | None = None
    max_grad_norm: float | None = None
    accountants: frozenset[str] = ACCOUNTANTS
    release_training_metrics: bool = True
    release_eval_metrics: bool = True

    def __post_init__(self) -> None:
        for name in ("epsilon", "min_noise_multiplier", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if self.delta is not None and not 0.0 < self.delta < 1.0:
            raise ValueError(f"delta must lie in (0, 1), got {self.delta}")
        if not self.accountants or not self.accountants <= ACCOUNTANTS:
            raise ValueError(
                f"accountants must be a non-empty subset of {sorted(ACCOUNTANTS)}, got {sorted(self.accountants)}"
            )
        bounds = [name for name in _DP_SGD_BOUNDS if getattr(self, name) is not None]
        if bounds and not self.require_dp_sgd:
            raise ValueError(f"{', '.join(bounds)} bound DP-SGD: they need require_dp_sgd")


def check_job(policy: SitePolicy, privacy: PrivacyConfig) -> list[str]:
    """Every way a job's ``privacy`` section is weaker than ``policy``, one phrase each; empty
    when the site may take part."""
    weaknesses = []
    if policy.require_dp_sgd and privacy.dp_sgd is None:
        weaknesses.append("job has no DP-SGD but this site requires it")
    if (
        policy.require_secure_aggregation
        and privacy.secure_aggregation is None
        and privacy.encryption is None
    ):
        weaknesses.append(
            "job sends this site's update to the server in the clear (no secure aggregation or "
            "encryption) but this site requires a secure sum"
        )
    if privacy.dp_sgd is not None:
        weaknesses += _dp_sgd_weaknesses(policy, privacy.dp_sgd)
        if privacy.accountant not in policy.accountants:
            weaknesses.append(
                f"job's accountant '{privacy.accountant}' is not one this site allows {sorted(policy.accountants)}"
            )
    return weaknesses


def _dp_sgd_weaknesses(policy: SitePolicy, dp: DPSGDConfig) -> list[str]:
    weaknesses = []
    floor = policy.min_noise_multiplier
    if floor is not None and dp.noise_multiplier is None:
        weaknesses.append(
            f"job calibrates its DP-SGD noise multiplier but this site requires a fixed one >= {floor:g}"
        )
    elif floor is not None and dp.noise_multiplier is not None and dp.noise_multiplier < floor:
        weaknesses.append(
            f"job's DP-SGD noise multiplier {dp.noise_multiplier:g} is below this site's minimum {floor:g}"
        )
    cap = policy.max_grad_norm
    if cap is not None and dp.clipping == "adaptive":
        weaknesses.append(f"job clips adaptively (the norm may grow) but this site caps it at {cap:g}")
    elif cap is not None and dp.max_grad_norm > cap:
        weaknesses.append(
            f"job clips per-sample gradients at {dp.max_grad_norm:g}, above this site's maximum {cap:g}"
        )
    return weaknesses


def site_privacy(policy: SitePolicy, privacy: PrivacyConfig, site: str) -> PrivacyConfig:
    """``privacy`` with ``site``'s budget the stricter of the job's and the policy's epsilon and
    delta (the job can only tighten the site's budget)."""
    epsilon, delta = privacy.site_budget(site)
    if policy.epsilon is not None:
        epsilon = min(epsilon, policy.epsilon)
    if policy.delta is not None:
        delta = min(delta, policy.delta)
    budget = SiteBudgetConfig(epsilon=epsilon, delta=delta)
    return privacy.model_copy(update={"sites": {**privacy.sites, site: budget}})


def stricter(first: SitePolicy, second: SitePolicy) -> SitePolicy:
    """The policy that requires everything either policy requires.

    Raises:
        ValueError: The two policies allow no accountant in common.
    """
    return SitePolicy(
        epsilon=_optional(min, first.epsilon, second.epsilon),
        delta=_optional(min, first.delta, second.delta),
        require_dp_sgd=first.require_dp_sgd or second.require_dp_sgd,
        require_secure_aggregation=first.require_secure_aggregation or second.require_secure_aggregation,
        min_noise_multiplier=_optional(max, first.min_noise_multiplier, second.min_noise_multiplier),
        max_grad_norm=_optional(min, first.max_grad_norm, second.max_grad_norm),
        accountants=first.accountants & second.accountants,
        release_training_metrics=first.release_training_metrics and second.release_training_metrics,
        release_eval_metrics=first.release_eval_metrics and second.release_eval_metrics,
    )


def _optional(
    pick: Callable[[float, float], float], first: float | None, second: float | None
) -> float | None:
    """``pick(first, second)``, or whichever of the two is given (``None`` when neither)."""
    if first is None or second is None:
        return second if first is None else first
    return pick(first, second)


class _PolicyFile(BaseModel):
    """The YAML form of ``SitePolicy``; ``require_dp_sgd`` defaults to whether a DP-SGD bound
    is given, ``accountants`` to all of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float | None = None
    delta: float | None = None
    require_dp_sgd: bool | None = None
    require_secure_aggregation: bool = False
    min_noise_multiplier: float | None = None
    max_grad_norm: float | None = None
    accountants: list[Literal["rdp", "prv"]] | None = None
    release_training_metrics: bool = True
    release_eval_metrics: bool = True

    def policy(self) -> SitePolicy:
        values = self.model_dump()
        if self.require_dp_sgd is None:
            values["require_dp_sgd"] = any(values[name] is not None for name in _DP_SGD_BOUNDS)
        values["accountants"] = ACCOUNTANTS if self.accountants is None else frozenset(self.accountants)
        return SitePolicy(**values)


def parse_site_policy(raw: Mapping[str, object], *, source: str) -> SitePolicy:
    """The policy in a mapping of settings (a file's content, or flags).

    Raises:
        ConfigError: A setting is unknown, of the wrong type or out of range, naming ``source``
            and the setting.
    """
    try:
        return _PolicyFile.model_validate(raw).policy()
    except ValidationError as error:
        raise ConfigError(f"invalid site policy {source}:\n{describe_errors(error)}") from None
    except ValueError as error:
        raise ConfigError(f"site policy {source}: {error}") from None


def load_site_policy(path: Path) -> SitePolicy:
    """The policy in the YAML file ``path`` (see ``docs/site-policy.md``; empty: no requirement).

    Raises:
        ConfigError: The file is unreadable, not a YAML mapping, or has an invalid setting.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"site policy '{path}': {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"site policy '{path}': must be a mapping of settings")
    return parse_site_policy(raw, source=f"'{path}'")


def combined_policy(flags: Mapping[str, object], files: Iterable[Path]) -> SitePolicy:
    """The strictest combination of the policy given by ``flags`` (settings as in a file) and
    the policy ``files``.

    Raises:
        ConfigError: A source is invalid, or the sources allow no accountant in common.
    """
    combined = parse_site_policy(flags, source="(command-line flags)")
    for path in files:
        try:
            combined = stricter(combined, load_site_policy(path))
        except ValueError as error:
            raise ConfigError(f"site policy '{path}' contradicts the others: {error}") from None
    return combined
