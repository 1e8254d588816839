from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import refused
from torch.utils.data import DataLoader

from medfed.data import Case, build_dataset, load_site


@pytest.fixture
def cases(msd_site: Path) -> tuple[Case, ...]:
    return load_site("small", msd_site).cases


def test_segmentation_samples(cases: tuple[Case, ...]) -> None:
    dataset = build_dataset(cases, task="segmentation", augment=False, seed=0)
    sample = dataset[0]
    assert len(dataset) == len(cases)
    assert type(sample["image"]) is torch.Tensor and sample["image"].dtype == torch.float32
    assert sample["image"].shape == (1, 32, 32)
    assert sample["label"].dtype == torch.int64 and sample["label"].shape == (1, 32, 32)
    np.testing.assert_array_equal(sample["label"].numpy(), cases[0].mask)


def test_classification_samples_batch(cases: tuple[Case, ...]) -> None:
    dataset = build_dataset(cases, task="classification", augment=True, seed=0)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["label"].shape == (4,)
    assert batch["label"].dtype == torch.int64
    assert batch["label"].tolist() == [c.label for c in cases[:4]]


def test_normalised_on_foreground(cases: tuple[Case, ...]) -> None:
    dataset = build_dataset(cases, task="segmentation", augment=False, seed=0)
    for index, case in enumerate(cases):
        foreground = dataset[index]["image"][torch.from_numpy(case.image != 0)]
        assert abs(foreground.mean().item()) < 1e-4
        assert abs(foreground.std(unbiased=False).item() - 1) < 1e-3


def test_normalisation_is_cached(cases: tuple[Case, ...]) -> None:
    dataset = build_dataset(cases, task="segmentation", augment=False, seed=0)
    assert dataset[1]["image"].data_ptr() == dataset[1]["image"].data_ptr()


def test_augmentation_is_seeded(cases: tuple[Case, ...]) -> None:
    def draws(seed: int) -> list[torch.Tensor]:
        dataset = build_dataset(cases, task="segmentation", augment=True, seed=seed)
        return [dataset[i % len(cases)]["image"] for i in range(12)]

    first, again, other = draws(1), draws(1), draws(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_building_a_dataset_leaves_the_cases_unchanged(cases: tuple[Case, ...]) -> None:
    before = [case.image.copy() for case in cases]
    build_dataset(cases, task="segmentation", augment=False, seed=0)
    assert all(np.array_equal(a, c.image) for a, c in zip(before, cases, strict=True))


def test_flips_move_image_and_mask_together() -> None:
    mask = np.zeros((1, 8, 8), np.int64)
    mask[0, :3, :2] = 1
    image = (1.0 + 10.0 * mask).astype(np.float32)
    case = Case("x", image, mask, 1, Path("x"))
    dataset = build_dataset([case], task="segmentation", augment=True, seed=0)
    for _ in range(20):
        sample = dataset[0]
        inside = sample["image"][sample["label"] == 1]
        outside = sample["image"][sample["label"] == 0]
        assert inside.min() > outside.max()


def test_segmentation_needs_masks(cases: tuple[Case, ...]) -> None:
    bad = replace(cases[2], mask=None)
    with refused("has no mask", "small", bad.source):
        build_dataset([cases[0], bad], task="segmentation", augment=False, seed=0, site="small")


def test_classification_needs_labels(cases: tuple[Case, ...]) -> None:
    bad = replace(cases[0], label=None)
    with refused("has no label", "small", bad.source):
        build_dataset([bad], task="classification", augment=False, seed=0, site="small")


def test_unknown_task(cases: tuple[Case, ...]) -> None:
    with pytest.raises(ValueError, match="task"):
        build_dataset(cases, task="detection", augment=False, seed=0)  # type: ignore[arg-type]


def test_3d_samples(tmp_path: Path) -> None:
    from data_helpers import SMALL_SITE

    from medfed.data import generate_site

    folder = generate_site(replace(SMALL_SITE, num_cases=2), tmp_path, image_size=16, dims=3)
    site = load_site("s", folder)
    sample = build_dataset(site.cases, task="segmentation", augment=True, seed=0)[0]
    assert sample["image"].shape == sample["label"].shape == (1, 16, 16, 16)


def test_a_given_transform_replaces_the_augmentation_of_training_data(cases: tuple[Case, ...]) -> None:
    from monai.transforms import Compose, RandGaussianNoised

    transform = Compose([RandGaussianNoised("image", prob=1.0, std=5.0, sample_std=False)])

    def draws(seed: int) -> list[torch.Tensor]:
        dataset = build_dataset(cases, task="segmentation", augment=True, seed=seed, transform=transform)
        return [dataset[i]["image"] for i in range(3)]

    plain = build_dataset(cases, task="segmentation", augment=False, seed=0, transform=transform)
    first, again = draws(1), draws(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))  # reseeded per dataset
    assert all(not torch.equal(a, plain[i]["image"]) for i, a in enumerate(first))
    assert all(
        (a - plain[i]["image"]).std() > 2.0 for i, a in enumerate(first)
    )  # std 5: not the built-in's 0.05
    assert all(torch.equal(plain[i]["image"], plain[i]["image"]) for i in range(3))  # held-out: untouched
