"""Scientific preconditions: one ConfigError line each, before the run directory exists."""

from pathlib import Path
from typing import Any

import pytest

from medfed.config.loading import parse_config
from medfed.errors import ConfigError
from medfed.orchestration.preconditions import check_config
from medfed.simulator import run_simulation


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"task": "classification"},
            r"model 'unet' is a segmentation network but task is 'classification'; "
            r"use model.name one of \['densenet', 'resnet'\]",
        ),
        (
            {"model": {"name": "densenet"}},
            "model 'densenet' is a classification network but task is 'segmentation'",
        ),
        (
            {"preprocessing": {"divisible_by": 4}},
            "preprocessing.divisible_by 4 must be a multiple of 8, the product of model.params.strides",
        ),
        (
            {"preprocessing": {"patch_size": [12, 12]}},
            r"preprocessing.patch_size \[12, 12\] must be a multiple of 8",
        ),
        (
            {"strategies": [{"name": "fedbn"}]},
            "strategy 'fedbn' keeps each site's normalisation layers, but model 'unet' has none",
        ),
        (
            {"task": "classification", "model": {"name": "resnet"}, "training": {"batch_size": 1}},
            "training.batch_size 1 with model 'resnet', which has BatchNorm layers",
        ),
    ],
)
def test_a_failed_precondition_stops_the_run_before_its_directory_exists(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    config = parse_config({**settings, "output_dir": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match=message):
        run_simulation(config)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"task": "classification", "model": {"name": "resnet"}},
        {"strategies": [{"name": "fedbn"}], "model": {"params": {"norm": "batch"}}},
        {
            "preprocessing": {"divisible_by": 4, "patch_size": [12, 12]},
            "model": {"params": {"channels": [8, 16, 32], "strides": [2, 2]}},
        },
        {"data": {"synthetic": {"image_size": 60}}},
        {"training": {"batch_size": 1}},
    ],
)
def test_sound_configurations_pass(settings: dict[str, Any]) -> None:
    check_config(parse_config(settings))
