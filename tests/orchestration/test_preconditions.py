"""Scientific preconditions: one ConfigError line each, before the run directory exists."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medfed.config.loading import parse_config
from medfed.data import SiteData
from medfed.data.cases import Case
from medfed.errors import ConfigError
from medfed.orchestration.federation_data import FederationData
from medfed.orchestration.preconditions import check_config, check_data
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
            {"data": {"synthetic": {"image_size": 60}}},
            r"data.synthetic.image_size: image size \[60, 60\] is not a multiple of 8, "
            r"the product of model.params.strides \[2, 2, 2\]",
        ),
        (
            {"strategies": [{"name": "fedbn"}]},
            "strategy 'fedbn' keeps each site's normalisation layers, but model 'unet' has none",
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
            "data": {"synthetic": {"image_size": 60}},
            "model": {"params": {"channels": [8, 16, 32], "strides": [2, 2]}},
        },
    ],
)
def test_sound_configurations_pass(settings: dict[str, Any]) -> None:
    check_config(parse_config(settings))


def test_a_loaded_image_whose_size_the_unet_cannot_take_is_named() -> None:
    config = parse_config(
        {"data": {"synthetic": None, "sites": [{"name": "a", "path": "a"}], "unseen_site": None}}
    )
    case = Case("case_7", np.zeros((1, 64, 36), np.float32), None, None, Path("a/case_7.npz"))
    data = FederationData(train={"a": SiteData(name="a", cases=(case,))}, test={}, unseen=None)
    with pytest.raises(
        ConfigError, match=r"site 'a' case 'case_7': image size \[64, 36\] is not a multiple of 8"
    ):
        check_data(config, data)
