"""User-level DP-SGD: patients are sampled, each patient's gradients summed and clipped together."""

from __future__ import annotations

from pathlib import Path

import dp_accounting
import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from torch import nn
from torch.utils.data import Dataset

from medfed.data.cases import Case
from medfed.data.dataset import build_dataset
from medfed.data.preprocessing import Preprocessing
from medfed.orchestration.site import cpu_weights
from medfed.privacy.dp import Budget, DPTrainer, SitePrivacy
from medfed.privacy.dp.accounting import Accountant, Mechanism
from medfed.privacy.dp.ledger import append_entry, load_ledger, release_entry
from medfed.privacy.dp.noise import GeneratorNoise, NoiseMode
from medfed.privacy.dp.patients import (
    PatientPoissonSampler,
    PrivacyUnit,
    patient_batch_size,
    patient_groups,
    summed_per_patient,
)
from medfed.training import LocalTrainer, TrainSettings

CLIP = 1.0


class _Slices(Dataset):
    """2D samples ``(1, 8, 8)`` with masks (default: the positive pixels), and their patients."""

    def __init__(self, images: torch.Tensor, patients: list[str], labels: torch.Tensor | None = None) -> None:
        self.images, self.patients = images, patients
        self.labels = (images > 0).long() if labels is None else labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def _pixel_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(1, 2, kernel_size=1)


def _trainer(
    *, batch: int, unit: PrivacyUnit = PrivacyUnit.PATIENT, lr: float = 1.0, **policy: object
) -> DPTrainer:
    inner = LocalTrainer(
        task="segmentation",
        settings=TrainSettings(batch_size=batch, local_epochs=1, lr=lr, optimizer="sgd"),
        device=torch.device("cpu"),
    )
    policy.setdefault("noise_multiplier", 1.0)
    privacy = SitePrivacy(
        budget=Budget(50.0, 1e-5),
        accountant=Accountant.RDP,
        max_grad_norm=CLIP,
        noise=NoiseMode.REPRODUCIBLE,  # the same noise in runs to compare (NOT PRIVATE)
        unit=unit,
        **policy,  # type: ignore[arg-type]
    )
    return DPTrainer(inner, site="a", policy=privacy)


def _released_sum(dataset: _Slices, unit: PrivacyUnit) -> torch.Tensor:
    """The noisy sum of clipped gradients of one step that takes every patient (q = 1): with SGD
    at lr 1, the update times the expected batch (the patients)."""
    model = _pixel_model()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    _trainer(batch=10_000, unit=unit).fit(model, dataset, seed=3)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    units = len(set(dataset.patients)) if unit is PrivacyUnit.PATIENT else len(dataset)
    return (before - after).double() * units


def _neighbours() -> tuple[_Slices, _Slices]:
    """Two sites that differ in one patient: in the first ``p0`` has 20 bright mislabelled slices
    (each gradient of norm about 6 C), in the second 3 dark ones; the other 4 patients have 2
    slices each."""
    generator = torch.Generator().manual_seed(0)
    others = torch.randn(8, 1, 8, 8, generator=generator)
    other_patients = [f"p{1 + i // 2}" for i in range(8)]
    bright = 3.0 * (1 + torch.rand(1, 1, 8, 8, generator=generator)).expand(20, 1, 8, 8)
    dark = -torch.rand(3, 1, 8, 8, generator=generator)
    labels = (others > 0).long()
    first = _Slices(torch.cat([bright, others]), ["p0"] * 20 + other_patients)
    first.labels = torch.cat([torch.zeros(20, 1, 8, 8, dtype=torch.long), labels])
    second = _Slices(torch.cat([dark, others]), ["p0"] * 3 + other_patients)
    return first, second


def test_one_patient_moves_the_released_sum_by_at_most_two_clips_however_many_slices() -> None:
    first, second = _neighbours()
    change = (_released_sum(first, PrivacyUnit.PATIENT) - _released_sum(second, PrivacyUnit.PATIENT)).norm()
    assert 0.1 < change <= 2 * CLIP + 1e-4  # the same noise in both runs: it cancels
    sample_level = (
        _released_sum(first, PrivacyUnit.SAMPLE) - _released_sum(second, PrivacyUnit.SAMPLE)
    ).norm()
    assert sample_level > 10 * CLIP  # per slice, the 20 aligned slices add up: no patient-level bound


def _rdp_epsilon(q: float, z: float, steps: int) -> float:
    """Google's dp-accounting, Rényi DP at Opacus's orders."""
    accountant = dp_accounting.rdp.RdpAccountant(orders=RDPAccountant.DEFAULT_ALPHAS)
    accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
    return float(accountant.get_epsilon(1e-5))


def test_epsilon_is_per_patient_and_equals_dp_accounting_at_q_over_patients() -> None:
    images = torch.randn(100, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    dataset = _Slices(images, [f"p{i // 20}" for i in range(100)])  # 5 patients of 20 slices
    trainer = _trainer(batch=16, noise_multiplier=1.3, lr=0.01)
    trainer.fit(_pixel_model(), dataset, seed=0)
    (release,) = trainer.ledger.releases
    assert release.unit is PrivacyUnit.PATIENT
    # 16 slices ~ 0.8 patients: 1 patient per batch, 5 steps at q = 1/5 (per slice: 7 at 1/7)
    assert (release.mechanism.sample_rate, release.mechanism.steps) == (1 / 5, 5)
    assert trainer.epsilon == pytest.approx(_rdp_epsilon(1 / 5, 1.3, 5), rel=1e-3)
    assert trainer.epsilon > 1.1 * _rdp_epsilon(1 / 7, 1.3, 7)  # what slice-level would claim (2.45)


def test_with_one_sample_per_patient_user_level_is_sample_level() -> None:
    images = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    names = [f"patient-{k}" for k in (7, 3, 11, 0, 5, 9, 1, 10, 2, 8, 4, 6)]  # not in index order
    models = {}
    for unit in PrivacyUnit:
        trainer, model = _trainer(batch=4, unit=unit, lr=0.1), _pixel_model()
        trainer.fit(model, _Slices(images, names), seed=5)
        models[unit] = cpu_weights(model)
        assert trainer.ledger.history()[0].sample_rate == 1 / 3
    for key, value in models[PrivacyUnit.SAMPLE].items():
        torch.testing.assert_close(models[PrivacyUnit.PATIENT][key], value, rtol=0, atol=1e-6)


def _volumes(patients: int, studies: int) -> list[Case]:
    """3D cases ``(1, 12, 12, 6)``: a bright cube (the mask) on noise, ``studies`` per patient."""
    rng = np.random.default_rng(0)
    cases = []
    for index in range(patients * studies):
        mask = np.zeros((1, 12, 12, 6), dtype=np.int64)
        x, y = rng.integers(0, 6, size=2)
        mask[0, x : x + 6, y : y + 6, 1:5] = 1
        image = (rng.normal(size=mask.shape) + 3.0 * mask).astype(np.float32)
        source = Path(f"case{index}")
        cases.append(Case(f"c{index}", image, mask, None, source, patient_id=f"p{index // studies}"))
    return cases


def test_a_small_dp_run_on_axial_slices_of_volumes_learns_and_charges_per_patient() -> None:
    cases = _volumes(patients=8, studies=2)
    dataset = build_dataset(
        cases,
        task="segmentation",
        augment=False,
        seed=0,
        training=True,
        preprocessing=Preprocessing(slices="axial"),
    )
    assert len(dataset) == 16 * 6 and len(set(dataset.patients)) == 8
    trainer, model = _trainer(batch=20, noise_multiplier=0.8, lr=0.3), _pixel_model()
    loss = trainer.inner.loss
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    labels = torch.stack([dataset[i]["label"] for i in range(len(dataset))])
    before = float(loss(model(images), labels).detach())
    for round in range(4):
        trainer.fit(model, dataset, seed=round)
    after = float(loss(model(images), labels).detach())
    assert after < 0.8 * before
    mechanism = trainer.ledger.history()[0]
    assert mechanism.sample_rate == 1 / 8  # 20 of 96 slices ~ 1 of 8 patients (per slice: 1/5)
    assert {release.unit for release in trainer.ledger.releases} == {PrivacyUnit.PATIENT}
    assert 0 < trainer.epsilon < 50


def test_patients_are_sampled_whole_and_their_gradients_summed() -> None:
    groups = patient_groups(["b", "a", "b", "c", "a"])
    assert groups == [[0, 2], [1, 4], [3]]
    sampler = PatientPoissonSampler(groups, 0.5, GeneratorNoise(torch.Generator().manual_seed(0)), steps=50)
    for batch in sampler:
        assert all(set(group) <= set(batch) or not set(group) & set(batch) for group in groups)
    grads = torch.arange(10.0).view(5, 2)
    summed = summed_per_patient(grads, torch.tensor([1, 0, 1, 2, 0]))
    torch.testing.assert_close(summed, torch.tensor([[10.0, 12.0], [4.0, 6.0], [6.0, 7.0]]))
    assert patient_batch_size(16, samples=200, patients=10) == 1
    assert patient_batch_size(64, samples=200, patients=10) == 3
    assert patient_batch_size(8, samples=8, patients=8) == 8


def test_earlier_releases_per_sample_are_read_as_such_and_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = tmp_path / "a.jsonl"
    entry = release_entry(
        job="old",
        seed=0,
        mechanism=Mechanism(1.0, 0.5, 2),
        clip=1.0,
        budget=Budget(50.0, 1e-5),
        accountant=Accountant.RDP,
        unit=PrivacyUnit.PATIENT,
    )
    del entry["unit"]  # written before medfed recorded the unit
    append_entry(ledger, entry)
    assert load_ledger(ledger).releases[0].unit is PrivacyUnit.SAMPLE
    inner = LocalTrainer(
        task="segmentation", settings=TrainSettings(batch_size=4), device=torch.device("cpu")
    )
    policy = SitePrivacy(budget=Budget(50.0, 1e-5), accountant=Accountant.RDP, noise_multiplier=1.0)
    trainer = DPTrainer(inner, site="a", policy=policy, ledger_path=ledger)
    images = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    trainer.fit(_pixel_model(), _Slices(images, [f"p{i // 2}" for i in range(8)]), seed=0)
    assert "the privacy ledger holds releases per sample" in caplog.text
    assert [release.unit for release in load_ledger(ledger).releases] == [
        PrivacyUnit.SAMPLE,
        PrivacyUnit.PATIENT,
    ]


def test_a_poisoned_dataset_keeps_its_patients() -> None:
    from medfed.attacks.poisoning import PoisonedDataset
    from medfed.config.schema import PoisoningConfig

    honest = _Slices(torch.randn(4, 1, 8, 8), ["a", "a", "b", "b"])
    attack = PoisoningConfig(kind="label_flip", sites=["x"])
    assert PoisonedDataset(honest, attack, num_classes=2, seed=0).patients == ["a", "a", "b", "b"]
