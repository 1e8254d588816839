"""Preprocessing to a common grid: defaults unchanged, CT window, padding, patches, checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import NormalizeIntensity

from medfed.config.schema import ModelConfig, PreprocessingConfig
from medfed.data import Case, build_dataset, load_site
from medfed.data.formats.geometry import Volume, oriented, voxel_spacing
from medfed.data.preprocessing import Normalisation, PaddedInferer, Preprocessing
from medfed.data.synthetic import DEFAULT_SITES, generate_site
from medfed.errors import ConfigError, DataError


def _case(shape: tuple[int, ...], seed: int, classes: int = 2, case_id: str = "c") -> Case:
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 30.0, (1, *shape)).astype(np.float32)
    mask = rng.integers(0, classes, (1, *shape)).astype(np.int64)
    return Case(case_id, image, mask, None, Path(case_id))


def test_default_pipeline_is_bit_identical_to_the_old_normalisation(tmp_path: Path) -> None:
    site = replace(DEFAULT_SITES[0], num_cases=3)
    cases = load_site("a", generate_site(site, tmp_path, image_size=32, dims=2, seed=0)).cases
    dataset = build_dataset(cases, task="segmentation", augment=False, seed=0, training=True)
    for index, case in enumerate(cases):
        old = NormalizeIntensity(nonzero=True, channel_wise=True)(torch.from_numpy(np.array(case.image)))
        assert torch.equal(dataset[index]["image"], torch.as_tensor(old))
        assert torch.equal(dataset[index]["label"], torch.from_numpy(case.mask))


def test_ct_window_clips_and_scales_hounsfield_units() -> None:
    hu = np.array([[[-2000.0, -1000.0, 0.0, 500.0, 1000.0, 3000.0]]], dtype=np.float32)
    case = Case("ct", hu, np.zeros((1, 1, 6), dtype=np.int64), None, Path("ct"))
    settings = Preprocessing(intensity=(Normalisation("ct_window", (-1000.0, 1000.0)),))
    image = build_dataset([case], task="segmentation", augment=False, seed=0, preprocessing=settings)[0][
        "image"
    ]
    assert image.flatten().tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]


def test_each_channel_has_its_own_normalisation() -> None:
    hu = np.array([-2000.0, 0.0, 500.0, 3000.0], dtype=np.float32)
    pet = np.array([0.0, 2.0, 4.0, 6.0], dtype=np.float32)
    case = Case("ct_pet", np.stack([hu, pet])[:, None, :], np.zeros((1, 1, 4), np.int64), None, Path("c"))
    settings = Preprocessing(intensity=(Normalisation("ct_window", (-1000.0, 1000.0)), Normalisation()))
    image = build_dataset([case], task="segmentation", augment=False, seed=0, preprocessing=settings)[0][
        "image"
    ]
    assert image[0].flatten().tolist() == [0.0, 0.5, 0.75, 1.0]
    # z-score over the non-zero voxels 2, 4, 6 (mean 4, population std sqrt(8/3)); zero stays zero
    assert image[1].flatten().tolist() == pytest.approx([0.0, *(np.array([-2.0, 0.0, 2.0]) / np.sqrt(8 / 3))])


def test_a_per_channel_normalisation_must_match_the_channels() -> None:
    settings = PreprocessingConfig.model_validate({"intensity": [{"mode": "ct_window"}, {}, {}]}).settings(
        ModelConfig()
    )
    assert len(settings.intensity) == 3 and settings.intensity[0].mode == "ct_window"
    with pytest.raises(
        DataError, match="site 'h3'.*case 'c' has 1 channels, preprocessing.intensity 3 entries"
    ):
        build_dataset(
            [_case((8, 8), 0)], task="segmentation", augment=False, seed=0, site="h3", preprocessing=settings
        )


def test_mixed_sizes_are_padded_to_the_largest_and_to_the_stride() -> None:
    cases = [_case((10, 13), 0), _case((17, 9), 1)]
    settings = Preprocessing(divisible_by=8)
    dataset = build_dataset(
        cases, task="segmentation", augment=False, seed=0, preprocessing=settings, training=True
    )
    assert [dataset[i]["image"].shape for i in range(2)] == [(1, 24, 16)] * 2
    assert torch.equal(dataset[0]["label"][:, :10, :13], torch.from_numpy(cases[0].mask))
    assert int(dataset[0]["label"][:, 10:].abs().sum()) == 0
    evaluation = build_dataset(cases, task="segmentation", augment=False, seed=0, preprocessing=settings)
    assert [evaluation[i]["image"].shape for i in range(2)] == [(1, 10, 13), (1, 17, 9)]


def test_patches_have_the_patch_size_even_from_small_images() -> None:
    cases = [_case((6, 20, 12), 0), _case((20, 20, 20), 1)]
    settings = Preprocessing(patch_size=(8, 8, 8))
    dataset = build_dataset(
        cases, task="segmentation", augment=True, seed=0, preprocessing=settings, training=True
    )
    for index in range(2):
        assert dataset[index]["image"].shape == dataset[index]["label"].shape == (1, 8, 8, 8)


def test_crop_foreground_keeps_the_bounding_box_of_non_zero_voxels() -> None:
    image = np.zeros((1, 12, 12), dtype=np.float32)
    image[0, 3:7, 2:10] = np.arange(1, 33, dtype=np.float32).reshape(4, 8)
    case = Case("c", image, (image > 16).astype(np.int64), None, Path("c"))
    dataset = build_dataset(
        [case], task="segmentation", augment=False, seed=0, preprocessing=Preprocessing(crop_foreground=True)
    )
    assert dataset[0]["image"].shape == dataset[0]["label"].shape == (1, 4, 8)
    assert torch.equal(dataset[0]["label"][0], torch.from_numpy(case.mask[0, 3:7, 2:10]))


def test_spacing_resamples_to_the_target_grid() -> None:
    case = Case(
        "c",
        np.ones((1, 8, 8), dtype=np.float32),
        np.ones((1, 8, 8), dtype=np.int64),
        None,
        Path("c"),
        spacing=(2.0, 1.0),
    )
    dataset = build_dataset(
        [case],
        task="segmentation",
        augment=False,
        seed=0,
        preprocessing=Preprocessing(spacing=(1.0, 1.0), intensity=(Normalisation("ct_window", (0, 2)),)),
    )
    assert dataset[0]["image"].shape[1:] == dataset[0]["label"].shape[1:] == (15, 8)


def test_spacing_without_known_spacing_names_the_site() -> None:
    with pytest.raises(DataError, match="site 'h1'.*no known voxel spacing"):
        build_dataset(
            [_case((8, 8), 0)],
            task="segmentation",
            augment=False,
            seed=0,
            site="h1",
            preprocessing=Preprocessing(spacing=(1.0, 1.0)),
        )


def test_mask_value_beyond_the_model_classes_is_one_clear_error() -> None:
    cases = [_case((8, 8), 0, classes=2), _case((8, 8), 1, classes=4, case_id="big")]
    with pytest.raises(DataError, match="site 'h2'.*case 'big' has mask value 3, but the model outputs 3"):
        build_dataset(cases, task="segmentation", augment=False, seed=0, site="h2", num_classes=3)


def test_patch_size_must_match_the_dimensionality() -> None:
    with pytest.raises(DataError, match="2 spatial axes, preprocessing.patch_size 3"):
        build_dataset(
            [_case((8, 8), 0)],
            task="segmentation",
            augment=False,
            seed=0,
            preprocessing=Preprocessing(patch_size=(8, 8, 8)),
            training=True,
        )


def test_config_derives_the_stride_and_checks_the_patch() -> None:
    model = ModelConfig(params={"strides": [2, 2]})
    assert PreprocessingConfig().settings(model) == Preprocessing(divisible_by=4)
    assert PreprocessingConfig().settings(ModelConfig()).divisible_by == 8
    with pytest.raises(ConfigError, match="multiple of 4"):
        PreprocessingConfig(patch_size=[6, 8]).settings(model)


def test_padded_inferer_returns_the_input_grid() -> None:
    seen: list[tuple[int, ...]] = []

    def network(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return x * 2

    images = torch.randn(2, 1, 10, 13)
    out = PaddedInferer(8)(images, network)
    assert seen == [(2, 1, 16, 16)] and torch.equal(out, images * 2)


def test_segmentation_patches_are_balanced_towards_the_foreground() -> None:
    image = np.random.default_rng(0).normal(0.0, 1.0, (1, 64, 64)).astype(np.float32)
    mask = np.zeros((1, 64, 64), dtype=np.int64)
    mask[0, 60:62, 60:62] = 1  # 4 of 4096 voxels: a uniform 8 x 8 patch holds it 1 time in 64
    case = Case("small_lesion", image, mask, None, Path("c"))
    dataset = build_dataset(
        [case],
        task="segmentation",
        augment=False,
        seed=0,
        preprocessing=Preprocessing(patch_size=(8, 8)),
        training=True,
    )
    patches = [dataset[0] for _ in range(60)]
    assert all(patch["image"].shape == patch["label"].shape == (1, 8, 8) for patch in patches)
    with_lesion = sum(int(patch["label"].any()) for patch in patches)
    assert 12 <= with_lesion <= 30  # about a third (RandCropByPosNegLabeld, pos 1, neg 2)


def test_a_2d_nifti_slice_has_its_in_plane_spacing_in_canonical_order() -> None:
    stored = Volume(np.zeros((6, 4, 1), dtype=np.float32), np.diag([-0.5, 2.0, 3.0, 1.0]))  # LAS
    assert voxel_spacing(stored) == (0.5, 2.0)
    # stored (y, x): voxel axis i runs along y in 0.5 mm steps, axis j along x in 2 mm steps
    swapped = np.array([[0, 2.0, 0, 0], [0.5, 0, 0, 0], [0, 0, 3.0, 0], [0, 0, 0, 1]])
    assert oriented(Volume(np.zeros((6, 4, 1)), swapped))[0].shape == (1, 4, 6)  # (x, y)
    assert voxel_spacing(Volume(np.zeros((6, 4, 1)), swapped)) == (2.0, 0.5)
    assert voxel_spacing(Volume(np.zeros((6, 4, 5)), swapped)) == (2.0, 0.5, 3.0)
