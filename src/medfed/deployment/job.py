"""The job a deployed server runs, as YAML: model, strategy, training, rounds, deadlines.

The pieces are those of ``medfed simulate``'s schema, so a configuration tried in simulation
carries over. The server sends the site-relevant part (``SiteJob``) with every task, so sites
build the same model, strategy and trainer from the same registries.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import Field, ValidationError, model_validator

from medfed.config.loading import apply_override, check_strategy
from medfed.config.schema import (
    FederationConfig,
    ModelConfig,
    PreprocessingConfig,
    PrivacyConfig,
    StrategyConfig,
    TrainingConfig,
)
from medfed.config.strict import StrictModel
from medfed.errors import ConfigError
from medfed.orchestration.preconditions import check_batch_of_one


class SiteJob(StrictModel):
    """What every site must agree on to train its part of a round.

    Sites read ``federation.rounds`` to plan their privacy budget, and ``privacy`` to know the
    round's protection (DP-SGD settings, secure aggregation, CKKS).
    """

    seed: int = 0
    task: Literal["segmentation", "classification"] = "segmentation"
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    strategy: StrategyConfig = StrategyConfig(name="fedavg")
    augment: bool = False
    federation: FederationConfig = FederationConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    preprocessing: PreprocessingConfig = PreprocessingConfig()

    @model_validator(mode="after")
    def _no_reproducible_noise(self) -> SiteJob:
        if self.privacy.reproducible_noise:
            raise ValueError(
                "privacy.reproducible_noise makes DP noise removable by anyone who knows the "
                "job's seed; it exists for 'medfed simulate' only"
            )
        return self


class JobConfig(SiteJob):
    """A deployed job (YAML), e.g.::

        name: lesions-v1
        model: {name: unet, params: {channels: [16, 32, 64], strides: [2, 2]}}
        strategy: {name: fedprox, mu: 0.01}
        federation: {rounds: 20, min_sites: 2}
        privacy: {secure_aggregation: {threshold_fraction: 0.5}}
        round_timeout_s: 900

    Attributes:
        name: The run's name in the metrics log.
        sites: Sites taking part (default: every site of the server's kit).
        round_timeout_s: Deadline of a round; sites that miss it are left out of the round.
        step_timeout_s: Deadline of each protocol step of a secure or encrypted round; a site
            that misses it has dropped out.
        poll_s: How long a site's request for work waits before it is told to ask again.
        max_round_attempts: Tries of a round that fails (missed quorum, or an aggregate refused
            as not finite) before the server gives up.
        provenance: Keep the provenance ledger (two short steps after each round, see
            docs/provenance.md) when the server's kit holds a ledger key.
    """

    name: str = "job"
    sites: list[str] | None = None
    round_timeout_s: float = Field(600.0, gt=0)
    step_timeout_s: float = Field(60.0, gt=0)
    poll_s: float = Field(10.0, gt=0)
    max_round_attempts: int = Field(10, ge=1)
    provenance: bool = True

    @model_validator(mode="after")
    def _served(self) -> JobConfig:
        if self.federation.topology.peer_to_peer:
            raise ValueError(
                f"federation.topology '{self.federation.topology.name}' has no server: run it "
                "with 'medfed peer' at every site (docs/peer-to-peer.md)"
            )
        return self

    @model_validator(mode="after")
    def _sites_over_grpc(self) -> JobConfig:
        if self.federation.engine != "in_memory":
            raise ValueError(
                f"federation.engine '{self.federation.engine}' is for 'medfed simulate': a deployed "
                "job reaches its sites over gRPC"
            )
        return self

    def site_job(self) -> SiteJob:
        """The part of the job that sites receive."""
        return SiteJob.model_validate(self.model_dump(include=set(SiteJob.model_fields)))


def site_job_json(job: JobConfig) -> str:
    """``job.site_job()`` as canonical JSON (sent with every task)."""
    return json.dumps(job.site_job().model_dump(mode="json"), sort_keys=True)


def parse_site_job(text: str) -> SiteJob:
    """The site job sent by a server; raises ``ConfigError`` when it is invalid."""
    try:
        return SiteJob.model_validate_json(text)
    except ValidationError as error:
        raise ConfigError(f"the server sent an invalid job: {error}") from None


Job = TypeVar("Job", bound=SiteJob)


def load_job(path: Path, overrides: Sequence[str] = ()) -> JobConfig:
    """Reads and validates a server's job YAML file with ``overrides`` (``KEY=VALUE``, see
    ``apply_override``) applied, including that its strategy can be built and protected as
    ``privacy`` asks; raises ``ConfigError`` naming the problem."""
    return read_job(path, overrides, JobConfig)


def read_job(path: Path, overrides: Sequence[str], kind: type[Job]) -> Job:
    """``load_job`` for a job of schema ``kind`` (``JobConfig``, or ``PeerJob`` for ``medfed peer``)."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"job file '{path}': {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"job file '{path}' must be a mapping of settings at the top level")
    defaults = kind().model_dump(mode="json")
    for override in overrides:
        apply_override(raw, override, defaults)
    try:
        job = kind.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"job file '{path}': {error}") from None
    check_strategy(job.strategy, job.privacy, f"job file '{path}': strategy")
    try:
        check_batch_of_one(job.model, job.training, job.privacy)
    except ConfigError as error:
        raise ConfigError(f"job file '{path}': {error}") from None
    return job
