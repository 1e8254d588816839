"""DPTrainer: DP-SGD behind LocalTrainer's interface, budgets, calibration, adaptive clipping."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from opacus.accountants import IAccountant, PRVAccountant, RDPAccountant
from torch import nn
from torch.utils.data import Dataset

from medfed.errors import ConfigError, PrivacyBudgetExceeded
from medfed.models import build_model
from medfed.orchestration.grid import InMemoryGrid
from medfed.orchestration.site import LocalSite, cpu_weights
from medfed.privacy.dp import AdaptiveClipping, Budget, DPTrainer, SitePrivacy, make_dp_compatible
from medfed.privacy.dp.accounting import Accountant, Mechanism, epsilon_spent
from medfed.privacy.dp.noise import NoiseMode, noise_source
from medfed.privacy.dp.trainer import poisson_loader, poisson_plan
from medfed.strategies import FedAvg
from medfed.training import LocalTrainer, TrainSettings
from medfed.types import TrainTask

CASES, BATCH = 12, 4  # sample rate 1/3, 3 steps per epoch
SAMPLE_RATE, STEPS = 1 / 3, 3


class _Tiny(Dataset):
    def __init__(self, cases: int = CASES, size: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(cases, 1, size, size, generator=generator)
        self.labels = (torch.rand(cases, 1, size, size, generator=generator) > 0.8).long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def _model(norm: str = "instance") -> nn.Module:
    params = {"channels": (4, 8), "strides": (2,), "num_res_units": 0, "norm": norm}
    return build_model("unet", params, seed=0)


def _pixel_model() -> nn.Module:
    """The smallest segmentation model (a per-pixel linear classifier), for tests of many steps."""
    torch.manual_seed(0)
    return nn.Conv2d(1, 2, kernel_size=1)


def _trainer(
    path: Path | None = None, *, job: str = "local", batch: int = BATCH, **policy: object
) -> DPTrainer:
    inner = LocalTrainer(
        task="segmentation",
        settings=TrainSettings(batch_size=batch, local_epochs=1),
        device=torch.device("cpu"),
    )
    policy.setdefault("budget", Budget(50.0, 1e-5))
    policy.setdefault("noise", NoiseMode.REPRODUCIBLE)  # deterministic tests (NOT PRIVATE)
    policy.setdefault("accountant", Accountant.RDP)  # fast; the default (PRV) has its own tests
    return DPTrainer(inner, site="a", policy=SitePrivacy(**policy), ledger_path=path, job=job)  # type: ignore[arg-type]


def _opacus_epsilon(
    z: float, steps: int, delta: float = 1e-5, accountant: IAccountant | None = None
) -> float:
    accountant = RDPAccountant() if accountant is None else accountant
    accountant.history = [(z, SAMPLE_RATE, steps)]
    return accountant.get_epsilon(delta)


def test_epsilon_equals_the_opacus_accountant_for_the_same_steps() -> None:
    trainer, model = _trainer(noise_multiplier=1.3), _model()
    before = cpu_weights(model)
    for seed in (1, 2):
        report = trainer.fit(model, _Tiny(), seed=seed)
        assert report.steps == STEPS
    assert trainer.epsilon == pytest.approx(_opacus_epsilon(1.3, 2 * STEPS), rel=1e-12)
    assert any(not torch.equal(before[k], v) for k, v in cpu_weights(model).items())


def test_the_default_accountant_is_prv() -> None:
    inner = LocalTrainer(
        task="segmentation", settings=TrainSettings(batch_size=BATCH), device=torch.device("cpu")
    )
    trainer = DPTrainer(inner, site="a", policy=SitePrivacy(budget=Budget(50.0, 1e-5), noise_multiplier=1.3))
    before = cpu_weights(model := _model())
    trainer.fit(model, _Tiny(), seed=1)
    assert trainer.epsilon == pytest.approx(_opacus_epsilon(1.3, STEPS, accountant=PRVAccountant()), rel=1e-9)
    assert any(not torch.equal(before[k], v) for k, v in cpu_weights(model).items())


def test_a_site_stops_exactly_when_the_next_round_would_exceed_its_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    after_two, after_three = _opacus_epsilon(1.0, 2 * STEPS), _opacus_epsilon(1.0, 3 * STEPS)
    trainer, model = (
        _trainer(noise_multiplier=1.0, budget=Budget((after_two + after_three) / 2, 1e-5)),
        _model(),
    )
    trainer.fit(model, _Tiny(), seed=1)
    trainer.fit(model, _Tiny(), seed=2)
    untouched = cpu_weights(model)
    with caplog.at_level(logging.WARNING), pytest.raises(PrivacyBudgetExceeded) as declined:
        trainer.fit(model, _Tiny(), seed=3)
    assert declined.value.would_spend == pytest.approx(after_three)
    assert declined.value.spent == pytest.approx(after_two) == trainer.epsilon
    assert "stops contributing" in caplog.text
    assert all(torch.equal(untouched[k], v) for k, v in cpu_weights(model).items())  # not trained


def test_calibrated_noise_spends_the_budget_by_the_planned_end() -> None:
    trainer, model = _trainer(budget=Budget(3.0, 1e-5), planned_rounds=3), _model()
    for seed in (1, 2, 3):
        trainer.fit(model, _Tiny(), seed=seed)
    assert 3.0 * 0.99 <= trainer.epsilon <= 3.0
    with pytest.raises(PrivacyBudgetExceeded):
        trainer.fit(model, _Tiny(), seed=4)


def test_adaptive_clipping_moves_the_threshold_at_the_same_epsilon() -> None:
    adaptive = AdaptiveClipping(target_quantile=0.5, lr=0.5, count_budget_fraction=0.5)
    trainer = _trainer(
        noise_multiplier=0.2, max_grad_norm=1e-3, adaptive_clipping=adaptive, budget=Budget(1e3, 1e-5)
    )
    model = _model()
    trainer.fit(model, _Tiny(), seed=1)
    # every per-sample norm exceeds 1e-3: the private unclipped fraction is ~0, C grows ~exp(0.25)
    assert trainer.ledger.clip("local") == pytest.approx(1e-3 * 1.284, rel=0.05)
    assert trainer.epsilon == pytest.approx(_opacus_epsilon(0.2, STEPS), rel=1e-12)


def test_model_fix_replaces_batchnorm_and_reports_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        fixed, changes = make_dp_compatible(_model(norm="batch"))
    assert changes and all("BatchNorm2d -> GroupNorm" in change for change in changes)
    assert "DP-compatible" in caplog.text and changes[0] in caplog.text
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fixed.modules())
    assert make_dp_compatible(fixed) == (fixed, [])


def test_an_unfixed_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="make_dp_compatible"):
        _trainer(noise_multiplier=1.0).fit(_model(norm="batch"), _Tiny(), seed=1)


def test_a_task_cannot_change_the_site_policy() -> None:
    with pytest.raises(ConfigError, match="noise_multiplier"):
        _trainer(noise_multiplier=1.0).fit(_model(), _Tiny(), seed=1, config={"noise_multiplier": 0.0})


def test_the_ledger_survives_a_restart_and_a_replayed_round_is_charged_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    first, model = _trainer(path, noise_multiplier=1.0), _model()
    first.fit(model, _Tiny(), seed=1)
    before = path.read_bytes()
    restarted = _trainer(path, noise_multiplier=1.0)
    assert restarted.epsilon == first.epsilon == pytest.approx(_opacus_epsilon(1.0, STEPS), rel=1e-9)
    restarted.fit(model, _Tiny(), seed=1)  # the same round replayed after a crash: released twice
    assert restarted.epsilon == pytest.approx(_opacus_epsilon(1.0, 2 * STEPS), rel=1e-9)
    after = path.read_bytes()
    assert after.startswith(before) and len(after) > len(before)  # append-only
    assert len({release.id for release in restarted.ledger.releases}) == 2


def test_two_jobs_with_the_same_seed_on_one_dataset_are_both_charged(tmp_path: Path) -> None:
    path, model = tmp_path / "ledger.jsonl", _model()
    policy = {"noise_multiplier": 1.0, "accountant": Accountant.RDP}
    _trainer(path, job="job-1", **policy).fit(model, _Tiny(), seed=0)
    second = _trainer(path, job="job-2", batch=6, **policy)  # a different release, same seed
    second.fit(model, _Tiny(), seed=0)
    history = [Mechanism(1.0, 1 / 3, 3), Mechanism(1.0, 1 / 2, 2)]
    assert [release.mechanism for release in second.ledger.releases] == history
    assert second.epsilon == pytest.approx(epsilon_spent(history, delta=1e-5, accountant="rdp"), rel=1e-12)
    assert second.epsilon > epsilon_spent(history[1:], delta=1e-5, accountant="rdp")


def test_a_second_job_calibrates_to_what_the_first_left_and_stops_at_the_budget(tmp_path: Path) -> None:
    path, model = tmp_path / "ledger.jsonl", _model()
    _trainer(path, job="job-1", budget=Budget(3.0, 1e-5), planned_rounds=2).fit(model, _Tiny(), seed=0)
    second = _trainer(path, job="job-2", budget=Budget(3.0, 1e-5), planned_rounds=2)
    for seed in (0, 1):
        second.fit(model, _Tiny(), seed=seed)
    assert 3.0 * 0.99 <= second.epsilon <= 3.0
    with pytest.raises(PrivacyBudgetExceeded):
        second.fit(model, _Tiny(), seed=2)
    assert len(second.ledger.releases) == 3


@pytest.mark.parametrize("adaptive", [None, AdaptiveClipping()], ids=["fixed", "adaptive"])
def test_tiny_datasets_train_through_empty_poisson_batches(adaptive: AdaptiveClipping | None) -> None:
    # N=3, B=2: q=1/2, so 1 batch in 8 is empty; before the fix 8/20 (fixed) and 16/20 rounds crashed
    trainer, model = (
        _trainer(noise_multiplier=1.0, batch=2, adaptive_clipping=adaptive, budget=Budget(1e3, 1e-5)),
        _pixel_model(),
    )
    for seed in range(20):
        assert trainer.fit(model, _Tiny(3, size=4), seed=seed).steps == 2
    assert trainer.ledger.history() == [Mechanism(1.0, 1 / 2, 2)] * 20


def test_a_declining_site_is_a_drop_out_for_the_round() -> None:
    model = _model()
    sites = {
        name: LocalSite(
            name,
            _Tiny(),
            model=model,
            trainer=_trainer(noise_multiplier=1.0, budget=budget),  # type: ignore[arg-type]
            strategy=FedAvg(),
            seed=0,
        )
        for name, budget in (("rich", Budget(50.0, 1e-5)), ("poor", Budget(0.01, 1e-5)))
    }
    task = TrainTask(round=1, weights=cpu_weights(model))
    results = InMemoryGrid(sites).train({"poor": task, "rich": task})
    assert [result.site for result in results] == ["rich"]


def test_the_plan_is_what_the_loader_samples_and_opacus_accounts_for_every_size_and_batch() -> None:
    source = noise_source(NoiseMode.SYSTEM, 0)
    for cases in range(1, 1001):
        for batch in range(1, 65):
            plan = poisson_plan(cases, batch, epochs=2)
            loader = poisson_loader(range(cases), plan, source, [[i] for i in range(cases)])  # type: ignore[arg-type]
            assert len(loader) == plan.steps_per_epoch == -(-cases // batch)  # steps sampled per epoch
            assert loader.batch_sampler.sample_rate == plan.sample_rate == 1 / len(loader)  # Opacus's q
            assert plan.steps == 2 * plan.steps_per_epoch


@settings(max_examples=8, deadline=None, derandomize=True)
@given(cases=st.integers(1, 1000), batch=st.integers(1, 64))
@example(cases=93, batch=1).via("int(1 / (1 / 93)) == 92")
@example(cases=3, batch=2).via("empty batches")
@example(cases=1, batch=64).via("q = 1")
@example(cases=49, batch=1).via("Opacus's expected batch int(49 * (1 / 49)) == 0")
def test_every_size_and_batch_trains_and_is_charged_what_was_sampled(cases: int, batch: int) -> None:
    assume(-(-cases // batch) <= 64)  # steps bound the time; the test above plans every (N, B)
    trainer = _trainer(noise_multiplier=1.0, batch=batch, budget=Budget(1e6, 1e-5))
    steps = -(-cases // batch)
    assert trainer.fit(_pixel_model(), _Tiny(cases, size=1), seed=cases).steps == steps
    assert trainer.ledger.history() == [Mechanism(1.0, 1 / steps, steps)]
