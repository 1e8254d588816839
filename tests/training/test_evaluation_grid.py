"""Training and evaluation on images of mixed sizes, sizes the U-Net strides do not divide, and
sliding-window inference; metrics are on each image's own grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medfed.data import Case, build_dataset
from medfed.data.preprocessing import Preprocessing
from medfed.models import build_model
from medfed.training.evaluation import evaluate_cases
from medfed.training.trainer import LocalTrainer, TrainSettings


def _cases(shapes: list[tuple[int, ...]], seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for index, shape in enumerate(shapes):
        mask = np.zeros((1, *shape), dtype=np.int64)
        mask[(0, *(slice(s // 4, s // 2 + 1) for s in shape))] = 1
        image = (rng.normal(0.0, 0.1, mask.shape) + 1.0 + mask).astype(np.float32)
        cases.append(Case(f"c{index}", image, mask, None, Path(f"c{index}")))
    return cases


def _unet(dims: int) -> nn.Module:
    params = {"spatial_dims": dims, "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}
    return build_model("unet", params, seed=0)


@pytest.mark.parametrize(
    ("shapes", "settings"),
    [
        ([(13, 18), (21, 11), (13, 18)], Preprocessing(divisible_by=4)),  # 2D, pad to largest
        ([(13, 18), (21, 11), (9, 7)], Preprocessing(patch_size=(12, 12), divisible_by=4)),
        ([(9, 10, 7), (11, 6, 13)], Preprocessing(divisible_by=4)),  # 3D
        ([(9, 10, 7), (11, 6, 13)], Preprocessing(patch_size=(8, 8, 8), divisible_by=4)),
    ],
)
def test_mixed_and_non_divisible_sizes_train_and_evaluate(
    shapes: list[tuple[int, ...]], settings: Preprocessing
) -> None:
    cases = _cases(shapes, seed=0)
    dims = len(shapes[0])
    train = build_dataset(
        cases, task="segmentation", augment=True, seed=0, preprocessing=settings, training=True
    )
    model = _unet(dims)
    trainer = LocalTrainer(task="segmentation", settings=TrainSettings(local_epochs=1, batch_size=2, lr=0.01))
    report = trainer.fit(model, train, seed=0)
    assert report.steps == (len(shapes) + 1) // 2 and np.isfinite(report.loss)
    held_out = build_dataset(cases, task="segmentation", augment=False, seed=0, preprocessing=settings)
    metrics, _ = evaluate_cases(
        model, held_out, task="segmentation", batch_size=2, device=torch.device("cpu")
    )
    assert 0.0 <= metrics["dice"] <= 1.0


class _Oracle(nn.Module):
    """Predicts foreground where the image exceeds 1.5: perfect on the original grid, and
    foreground on every zero-padded voxel (so padding left in the metrics would show)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        foreground = (images[:, :1] > 1.5) | (images[:, :1] == 0)
        return torch.cat([(~foreground).float(), foreground.float()], dim=1) * 10


@pytest.mark.parametrize("patch_size", [None, (8, 8)])
def test_metrics_are_on_the_original_grid(patch_size: tuple[int, int] | None) -> None:
    cases = _cases([(13, 18), (21, 11)], seed=1)
    settings = Preprocessing(patch_size=patch_size, divisible_by=8)
    dataset = build_dataset(cases, task="segmentation", augment=False, seed=0, preprocessing=settings)
    metrics, _ = evaluate_cases(_Oracle(), dataset, task="segmentation", device=torch.device("cpu"))
    assert metrics["dice"] == pytest.approx(1.0) and metrics["hd95"] == pytest.approx(0.0)


def test_sliding_window_equals_whole_image_when_the_patch_covers_it() -> None:
    cases = _cases([(16, 16), (16, 16), (16, 16)], seed=2)
    model = _unet(2)
    settings = TrainSettings(local_epochs=1, batch_size=3, lr=0.05)
    train = build_dataset(cases, task="segmentation", augment=False, seed=0, training=True)
    LocalTrainer(task="segmentation", settings=settings).fit(model, train, seed=0)
    whole = build_dataset(
        cases, task="segmentation", augment=False, seed=0, preprocessing=Preprocessing(divisible_by=4)
    )
    windows = build_dataset(
        cases,
        task="segmentation",
        augment=False,
        seed=0,
        preprocessing=Preprocessing(patch_size=(16, 16), divisible_by=4),
    )
    cpu = torch.device("cpu")
    metrics = [evaluate_cases(model, data, task="segmentation", device=cpu)[0] for data in (whole, windows)]
    assert metrics[0] == metrics[1]


def test_adabn_runs_on_mixed_non_divisible_sizes() -> None:
    from medfed.training.adaptation import adapt_norm_statistics

    cases = _cases([(13, 18), (21, 11)], seed=3)
    dataset = build_dataset(
        cases, task="segmentation", augment=False, seed=0, preprocessing=Preprocessing(divisible_by=4)
    )
    model = build_model("unet", {"channels": [4, 8, 16], "strides": [2, 2], "norm": "batch"}, seed=0)
    assert adapt_norm_statistics(model, dataset, device=torch.device("cpu")) > 0
