"""DPTrainer: DP-SGD behind LocalTrainer's interface, budgets, calibration, adaptive clipping."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from opacus.accountants import RDPAccountant
from torch import nn
from torch.utils.data import Dataset

from medfed.errors import ConfigError, PrivacyBudgetExceeded
from medfed.models import build_model
from medfed.orchestration.connector import InProcessConnector
from medfed.orchestration.site import LocalSite, cpu_weights
from medfed.privacy.dp import AdaptiveClipping, Budget, DPTrainer, SitePrivacy, make_dp_compatible
from medfed.privacy.dp.noise import NoiseMode
from medfed.strategies import FedAvg
from medfed.training import LocalTrainer, TrainSettings
from medfed.types import TrainTask

CASES, BATCH = 12, 4  # sample rate 1/3, 3 steps per epoch
SAMPLE_RATE, STEPS = 1 / 3, 3


class _Tiny(Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(CASES, 1, 16, 16, generator=generator)
        self.labels = (torch.rand(CASES, 1, 16, 16, generator=generator) > 0.8).long()

    def __len__(self) -> int:
        return CASES

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def _model(norm: str = "instance") -> nn.Module:
    params = {"channels": (4, 8), "strides": (2,), "num_res_units": 0, "norm": norm}
    return build_model("unet", params, seed=0)


def _trainer(path: Path | None = None, **policy: object) -> DPTrainer:
    inner = LocalTrainer(
        task="segmentation", settings=TrainSettings(batch_size=BATCH, local_epochs=1), device=torch.device("cpu")
    )
    policy.setdefault("budget", Budget(50.0, 1e-5))
    policy.setdefault("noise", NoiseMode.REPRODUCIBLE)  # deterministic tests (NOT PRIVATE)
    return DPTrainer(inner, site="a", policy=SitePrivacy(**policy), ledger_path=path)  # type: ignore[arg-type]


def _opacus_epsilon(z: float, steps: int, delta: float = 1e-5) -> float:
    accountant = RDPAccountant()
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


def test_a_site_stops_exactly_when_the_next_round_would_exceed_its_budget(caplog: pytest.LogCaptureFixture) -> None:
    after_two, after_three = _opacus_epsilon(1.0, 2 * STEPS), _opacus_epsilon(1.0, 3 * STEPS)
    trainer, model = _trainer(noise_multiplier=1.0, budget=Budget((after_two + after_three) / 2, 1e-5)), _model()
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
    assert trainer.ledger.clip == pytest.approx(1e-3 * 1.284, rel=0.05)
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


def test_the_ledger_survives_a_restart_and_a_replayed_round_counts_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    first, model = _trainer(path, noise_multiplier=1.0), _model()
    first.fit(model, _Tiny(), seed=1)
    restarted = _trainer(path, noise_multiplier=1.0)
    assert restarted.epsilon == first.epsilon > 0
    restarted.fit(model, _Tiny(), seed=1)  # the same round replayed after a crash
    assert restarted.epsilon == first.epsilon


def test_a_declining_site_is_a_drop_out_for_the_round() -> None:
    model = _model()
    sites = {
        name: LocalSite(name, _Tiny(), model=model, trainer=_trainer(noise_multiplier=1.0, budget=budget),  # type: ignore[arg-type]
                        strategy=FedAvg(), seed=0)
        for name, budget in (("rich", Budget(50.0, 1e-5)), ("poor", Budget(0.01, 1e-5)))
    }
    task = TrainTask(round=1, weights=cpu_weights(model))
    results = InProcessConnector(sites).train({"poor": task, "rich": task})
    assert [result.site for result in results] == ["rich"]
