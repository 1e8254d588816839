"""Poisoning attacks: update transforms, poisoned datasets and the backdoor success rate."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch
from torch import nn

from medfed.attacks.poisoning import (
    TRIGGER_VALUE,
    PoisonedDataset,
    UpdateAttack,
    alie_z,
    backdoor_success,
    stamp_trigger,
)
from medfed.config.schema import PoisoningConfig
from medfed.types import TrainResult, TrainTask, Weights

GLOBAL: Weights = {"w": torch.tensor([1.0, 1.0]), "n": torch.tensor(5)}
MODELS = {
    "a": {"w": torch.tensor([2.0, 1.0]), "n": torch.tensor(6)},
    "b": {"w": torch.tensor([4.0, 1.0]), "n": torch.tensor(6)},
    "bad": {"w": torch.tensor([1.5, 3.0]), "n": torch.tensor(6)},
}


def _attack(kind: str, **extra: object) -> dict[str, Weights]:
    attack = PoisoningConfig.model_validate({"sites": ["bad"], "kind": kind, **extra})
    tasks = {name: TrainTask(round=1, weights=GLOBAL) for name in MODELS}
    results = [TrainResult(name, task.round, MODELS[name], 10) for name, task in tasks.items()]
    return {r.site: r.weights for r in UpdateAttack(attack, seed=0)(tasks, results)}


def test_sign_flip_and_scale_change_only_the_malicious_update() -> None:
    flipped = _attack("sign_flip", factor=2.0)
    assert flipped["bad"]["w"].tolist() == [0.0, -3.0]  # 1 - 2 * (0.5, 2)
    assert int(flipped["bad"]["n"]) == 6
    assert flipped["a"] is MODELS["a"] and flipped["b"] is MODELS["b"]
    assert _attack("scale", factor=3.0)["bad"]["w"].tolist() == [2.5, 7.0]


def test_alie_sends_mean_minus_z_std_of_the_benign_updates() -> None:
    # benign updates (1, 0) and (3, 0): mean (2, 0), population std (1, 0)
    assert _attack("alie", z=1.5)["bad"]["w"].tolist() == [1.0 + 2.0 - 1.5, 1.0]
    z = alie_z(3, 1)  # s = 1 + 1 - 1 = 1: z = Φ⁻¹(2/3)
    assert z == pytest.approx(NormalDist().inv_cdf(2 / 3))
    assert _attack("alie")["bad"]["w"][0].item() == pytest.approx(3.0 - z)


def test_gaussian_noise_is_seeded() -> None:
    first, second = _attack("gaussian", noise_std=0.1), _attack("gaussian", noise_std=0.1)
    torch.testing.assert_close(first["bad"]["w"], second["bad"]["w"])
    assert not torch.equal(first["bad"]["w"], MODELS["bad"]["w"])


class _Samples(torch.utils.data.Dataset):
    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.seeds: list[int] = []

    def __len__(self) -> int:
        return self.size

    def reseed(self, seed: int) -> None:
        self.seeds.append(seed)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        label = torch.zeros(1, 6, 6, dtype=torch.int64)
        label[0, 2:4, 2:4] = 1
        return {"image": torch.zeros(1, 6, 6), "label": label}


def test_label_flip_inverts_every_mask_and_forwards_reseed() -> None:
    inner = _Samples()
    data = PoisonedDataset(inner, PoisoningConfig(sites=["a"], kind="label_flip"), num_classes=2, seed=0)
    data.reseed(7)
    assert inner.seeds == [7]
    for index in range(len(data)):
        assert int(data[index]["label"].sum()) == 36 - 4


def test_backdoor_stamps_the_chosen_fraction_and_labels_them_as_target() -> None:
    attack = PoisoningConfig(sites=["a"], kind="backdoor", poison_fraction=0.25, patch=2, target=0)
    data = PoisonedDataset(_Samples(), attack, num_classes=2, seed=0)
    stamped = [i for i in range(len(data)) if float(data[i]["image"][0, 0, 0]) == TRIGGER_VALUE]
    assert len(stamped) == 2 and set(stamped) == data.poisoned
    for index in stamped:
        assert int(data[index]["label"].sum()) == 0
        assert float(data[index]["image"].sum()) == 4 * TRIGGER_VALUE
    with pytest.raises(ValueError, match="target"):
        PoisonedDataset(_Samples(), attack.model_copy(update={"target": 2}), num_classes=2, seed=0)


class _Backdoored(nn.Module):
    """Predicts the lesion unless the corner voxel carries the trigger."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        triggered = images[:, :1, :1, :1] == TRIGGER_VALUE
        foreground = torch.zeros(images.shape[0], 1, 6, 6)
        foreground[:, :, 2:4, 2:4] = 1.0
        foreground = torch.where(triggered, torch.zeros_like(foreground), foreground)
        return torch.cat([1 - foreground, foreground], dim=1)


def test_backdoor_success_rate() -> None:
    rate = backdoor_success(_Backdoored(), _Samples(), task="segmentation", target=0, patch=1)
    assert rate == 1.0
    # a model that never finds the lesion is not counted as backdoored: no case is eligible
    blind = nn.Conv2d(1, 2, 1)
    nn.init.zeros_(blind.weight)
    blind.bias.data = torch.tensor([1.0, 0.0])
    assert math.isnan(backdoor_success(blind, _Samples(), task="segmentation", target=0, patch=1))
    assert stamp_trigger(torch.zeros(2, 4, 4, 4), 2).sum() == 2 * 8 * TRIGGER_VALUE
