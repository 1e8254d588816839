"""2D training on the slices of 3D volumes (``model.slices``) and slice-wise inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medfed.config.schema import ModelConfig, PreprocessingConfig
from medfed.data.cases import Case
from medfed.data.dataset import build_dataset
from medfed.data.preprocessing import PaddedInferer, Preprocessing, SliceWiseInferer, inferer
from medfed.errors import DataError


def _case(index: int, shape: tuple[int, ...] = (1, 6, 5, 4), patient: str | None = None) -> Case:
    rng = np.random.default_rng(index)
    image = rng.normal(size=shape).astype(np.float32) + 1.0
    mask = rng.integers(0, 2, size=(1, *shape[1:])).astype(np.int64)
    return Case(f"c{index}", image, mask, None, Path(f"c{index}"), patient_id=patient)


@pytest.mark.parametrize(
    ("axis", "count", "shape"), [("sagittal", 6, (5, 4)), ("coronal", 5, (6, 4)), ("axial", 4, (6, 5))]
)
def test_each_training_sample_is_one_slice_of_its_patients_volume(
    axis: str, count: int, shape: tuple[int, int]
) -> None:
    cases = [_case(0, patient="p"), _case(1, patient="p"), _case(2)]
    dataset = build_dataset(
        cases,
        task="segmentation",
        augment=False,
        seed=0,
        training=True,
        preprocessing=Preprocessing(slices=axis),  # type: ignore[arg-type]
    )
    assert len(dataset) == 3 * count
    assert dataset.patients == ["p"] * (2 * count) + ["c2"] * count
    dim = {"sagittal": 1, "coronal": 2, "axial": 3}[axis]
    for k in range(count):
        sample = dataset[count + k]  # the second case's k-th slice
        assert sample["image"].shape[1:] == shape
        expected = torch.from_numpy(cases[1].mask).select(dim, k)
        torch.testing.assert_close(sample["label"], expected)


def test_an_evaluation_set_keeps_whole_volumes() -> None:
    dataset = build_dataset(
        [_case(0)], task="segmentation", augment=False, seed=0, preprocessing=Preprocessing(slices="axial")
    )
    assert len(dataset) == 1 and dataset[0]["image"].shape == (1, 6, 5, 4)


def test_slicing_a_2d_case_or_a_3d_patch_is_one_clear_error() -> None:
    with pytest.raises(DataError, match="case 'c0' has 2 spatial axes; model.slices cuts 3D volumes"):
        build_dataset(
            [_case(0, (1, 6, 5))],
            task="segmentation",
            augment=False,
            seed=0,
            training=True,
            preprocessing=Preprocessing(slices="axial"),
        )
    with pytest.raises(DataError, match="case 'c0' has 2 spatial axes per slice, preprocessing.patch_size 3"):
        settings = Preprocessing(slices="axial", patch_size=(4, 4, 4))
        build_dataset(
            [_case(0)], task="segmentation", augment=False, seed=0, training=True, preprocessing=settings
        )
    patches = build_dataset(
        [_case(0)],
        task="segmentation",
        augment=False,
        seed=0,
        training=True,
        preprocessing=Preprocessing(slices="axial", patch_size=(4, 4)),
    )
    assert patches[0]["image"].shape == (1, 4, 4)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_wise_inference_is_the_2d_network_on_every_slice(axis: int) -> None:
    torch.manual_seed(0)
    network = torch.nn.Conv2d(2, 3, kernel_size=3, padding=1)
    volume = torch.randn(2, 2, 7, 6, 5)
    logits = SliceWiseInferer(PaddedInferer(4), axis, slices_per_pass=2)(volume, network)
    expected = torch.stack([network(plane) for plane in volume.unbind(axis + 2)], dim=axis + 2)
    assert logits.shape == (2, 3, 7, 6, 5)
    torch.testing.assert_close(logits, expected)


def test_model_slices_makes_the_network_2d_and_reaches_the_preprocessing() -> None:
    model = ModelConfig(slices="axial")
    assert model.network_dims(3) == 2 and ModelConfig().network_dims(3) == 3
    settings = PreprocessingConfig().settings(model)
    assert settings.slices == "axial" and isinstance(inferer(settings), SliceWiseInferer)
