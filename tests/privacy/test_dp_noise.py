"""DP noise drawn at the party that adds it: the CSPRNG sampler, replay attacks, the opt-in."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from scipy import stats
from torch import nn
from torch.utils.data import Dataset

from medfed.config.schema import DPSGDConfig, PrivacyConfig
from medfed.deployment.job import parse_site_job
from medfed.errors import ConfigError
from medfed.models import build_model
from medfed.orchestration.site import DP_WEIGHT, LocalSite, cpu_weights
from medfed.privacy.dp import Budget, DPTrainer, SitePrivacy
from medfed.privacy.dp.client_level import ClientDP
from medfed.privacy.dp.config import simulated_noise
from medfed.privacy.dp.noise import (
    NOT_PRIVATE,
    GeneratorNoise,
    NoiseMode,
    PoissonSampler,
    SecureNoise,
    noise_source,
)
from medfed.privacy.setup import privacy_warning
from medfed.report.html import SimulationRun, write_report
from medfed.strategies import FedAvg
from medfed.training import LocalTrainer, TrainSettings
from medfed.types import TrainResult, TrainTask, Weights

JOB_SEED, ROUND, SITE = 7, 1, "hospital_a"


class _Tiny(Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(8, 1, 8, 8, generator=generator)
        self.labels = (torch.rand(8, 1, 8, 8, generator=generator) > 0.8).long()

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def _model() -> nn.Module:
    return build_model(
        "unet", {"channels": (2, 4), "strides": (2,), "num_res_units": 0, "norm": "instance"}, seed=0
    )


def _site(noise: NoiseMode) -> LocalSite:
    inner = LocalTrainer(task="segmentation", settings=TrainSettings(batch_size=4, local_epochs=1))
    policy = SitePrivacy(budget=Budget(50.0, 1e-5), noise_multiplier=1.0, noise=noise)
    return LocalSite(
        SITE,
        _Tiny(),
        model=_model(),
        trainer=DPTrainer(inner, site=SITE, policy=policy),
        strategy=FedAvg(),
        seed=JOB_SEED,
    )


def _release(noise: NoiseMode) -> TrainResult:
    return _site(noise).train(TrainTask(round=ROUND, weights=cpu_weights(_model())))


def _same(a: Weights, b: Weights) -> bool:
    return all(torch.equal(a[key], b[key]) for key in a)


# ----- the CSPRNG sampler ---------------------------------------------------------------------
def test_secure_gaussian_has_the_stated_distribution() -> None:
    values = SecureNoise(key=bytes(range(32))).normal(2.0, (100_000,), dtype=torch.float64).numpy()
    assert abs(values.mean()) < 4 * 2.0 / math.sqrt(len(values))  # 4 standard errors
    assert values.std() == pytest.approx(2.0, rel=0.01)
    assert stats.kstest(values, stats.norm(scale=2.0).cdf).pvalue > 0.05  # this fixed sample: 0.74


def test_secure_uniforms_are_53_bit_grid_points_in_the_unit_interval() -> None:
    values = SecureNoise(key=bytes(32)).uniform(50_000)
    assert values.dtype == torch.float64 and 0.0 <= float(values.min()) and float(values.max()) < 1.0
    assert torch.equal(values * 2.0**53, torch.round(values * 2.0**53))
    assert stats.kstest(values.numpy(), "uniform").pvalue > 0.05  # this fixed sample: 0.65


def test_secure_noise_is_fresh_per_source_and_fixed_only_under_a_given_key() -> None:
    assert not torch.equal(SecureNoise().normal(1.0, (64,)), SecureNoise().normal(1.0, (64,)))
    key = bytes(range(32))
    assert torch.equal(SecureNoise(key).normal(1.0, (64,)), SecureNoise(key).normal(1.0, (64,)))


def test_secure_noise_moves_to_a_new_nonce_past_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SecureNoise, "NONCE_BYTES", 64)
    noise = SecureNoise(key=bytes(32))
    first, second = noise.uniform(8), noise.uniform(8)  # 64 bytes each: the second takes nonce 1
    assert noise._nonce == 1 and not torch.equal(first, second)


def test_the_noise_modes() -> None:
    assert isinstance(noise_source(NoiseMode.SECURE, 1), SecureNoise)
    system = [noise_source(NoiseMode.SYSTEM, 1).normal(1.0, (16,)) for _ in range(2)]
    assert not torch.equal(*system)  # seeded from OS entropy, not from the seed
    replayable = [noise_source(NoiseMode.REPRODUCIBLE, 1).normal(1.0, (16,)) for _ in range(2)]
    assert torch.equal(*replayable)


def test_poisson_sampler_takes_each_case_with_the_sample_rate() -> None:
    sampler = PoissonSampler(1000, 0.25, GeneratorNoise(torch.Generator().manual_seed(0)), steps=40)
    sizes = [len(batch) for batch in sampler]
    assert len(sizes) == len(sampler) == 40
    assert sum(sizes) / 40 == pytest.approx(250, rel=0.03)
    with pytest.raises(ValueError, match="sample_rate"):
        PoissonSampler(10, 0.0, SecureNoise(), steps=1)


# ----- nobody else can replay a site's noise ----------------------------------------------------
def test_identical_dp_sites_release_different_updates_and_a_seed_replay_misses() -> None:
    first, second = _release(NoiseMode.SECURE), _release(NoiseMode.SECURE)
    assert not _same(first.weights, second.weights)
    # The server knows the job seed, the round, the site and the release; replaying the noise
    # from them (how every site's noise used to be derived) does not give the release back.
    replay = _site(NoiseMode.REPRODUCIBLE).train(TrainTask(round=ROUND, weights=cpu_weights(_model())))
    assert not _same(replay.weights, first.weights)


def test_reproducible_noise_repeats_bit_for_bit_and_says_not_private(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        first, second = _release(NoiseMode.REPRODUCIBLE), _release(NoiseMode.REPRODUCIBLE)
    assert _same(first.weights, second.weights)
    assert "NOT PRIVATE" in caplog.text


def test_client_dp_noise_is_not_derived_from_the_seed() -> None:
    def aggregate(noise: NoiseMode) -> torch.Tensor:
        strategy = ClientDP(FedAvg(), noise_multiplier=1.0, target_quantile=None, noise=noise, seed=JOB_SEED)
        state = strategy.init({"w": torch.zeros(32)})
        result = TrainResult(site="a", round=1, weights={"w": torch.ones(32)}, num_samples=1)
        return strategy.aggregate(state, [result], num_sites=1).weights["w"]

    assert not torch.equal(aggregate(NoiseMode.SECURE), aggregate(NoiseMode.SECURE))
    assert torch.equal(aggregate(NoiseMode.REPRODUCIBLE), aggregate(NoiseMode.REPRODUCIBLE))


# ----- what leaves a DP site ----------------------------------------------------------------------
def test_a_dp_result_carries_no_loss_steps_or_case_count() -> None:
    result = _release(NoiseMode.SECURE)
    assert result.metrics == {} and result.num_samples == DP_WEIGHT
    plain = LocalSite(
        SITE,
        _Tiny(),
        model=_model(),
        strategy=FedAvg(),
        seed=JOB_SEED,
        trainer=LocalTrainer(task="segmentation", settings=TrainSettings(batch_size=4)),
    )
    sent = plain.train(TrainTask(round=ROUND, weights=cpu_weights(_model())))
    assert sent.num_samples == 8 and set(sent.metrics) == {"loss", "steps"}


# ----- the opt-in is explicit, simulated only, and labelled ---------------------------------------
def test_only_the_explicit_opt_in_makes_simulated_noise_reproducible() -> None:
    dp = DPSGDConfig(noise="fixed", noise_multiplier=1.0)
    assert simulated_noise(PrivacyConfig(dp_sgd=dp).plan()) is NoiseMode.SECURE
    assert (
        simulated_noise(PrivacyConfig(dp_sgd=dp.model_copy(update={"secure_mode": False})).plan())
        is NoiseMode.SYSTEM
    )
    opted_in = PrivacyConfig(dp_sgd=dp, reproducible_noise=True).plan()
    assert simulated_noise(opted_in) is NoiseMode.REPRODUCIBLE
    assert (
        privacy_warning(opted_in) == NOT_PRIVATE and privacy_warning(PrivacyConfig(dp_sgd=dp).plan()) is None
    )


def test_the_report_of_a_reproducible_run_says_not_private(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    run = SimulationRun(
        title="t", summary=[], unseen_site=None, samples=[], config_yaml="", warning=NOT_PRIVATE
    )
    write_report(path, rows=[], metric="dice", run=run)
    assert "NOT PRIVATE" in path.read_text()


def test_a_job_cannot_switch_sites_to_replayable_noise() -> None:
    with pytest.raises(ConfigError, match="reproducible_noise"):
        parse_site_job('{"privacy": {"reproducible_noise": true}}')


def test_a_deployed_site_uses_the_csprng_whatever_the_job_says(tmp_path: Path) -> None:
    from medfed.data import SiteData
    from medfed.deployment.site_builder import SiteOptions, build_local_site

    unet = {"spatial_dims": 2, "in_channels": 1, "channels": [2, 4], "strides": [2], "num_res_units": 0}
    dp_sgd = {"noise": "fixed", "noise_multiplier": 1.0, "secure_mode": False}  # the job asks for torch's RNG
    job = parse_site_job(
        json.dumps({"model": {"name": "unet", "params": unet}, "privacy": {"dp_sgd": dp_sgd}})
    )
    site = build_local_site(SiteData("a", []), job, SiteOptions(tmp_path))
    assert isinstance(site.trainer, DPTrainer) and site.trainer.policy.noise is NoiseMode.SECURE
