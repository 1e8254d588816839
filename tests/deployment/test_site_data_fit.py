"""A deployed site checks its data against the job's model before building anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medfed.data.cases import Case, SiteData
from medfed.deployment.job import SiteJob
from medfed.deployment.site_builder import SiteBuilder, SiteOptions
from medfed.errors import DataError, DataProblems


def _data(channels: int, mask_value: int = 1) -> SiteData:
    cases = []
    for i in range(3):
        mask = np.zeros((1, 8, 8), np.int64)
        mask[0, 0, 0] = mask_value
        cases.append(
            Case(f"c{i}", np.ones((channels, 8, 8), np.float32), mask, None, Path(f"/d/c{i}.nii.gz"))
        )
    return SiteData(name="a", cases=tuple(cases))


def _job(**params: Any) -> str:
    model = {"name": "unet", "params": {"channels": [4, 8], "strides": [2], **params}}
    return json.dumps(SiteJob(model=model).model_dump(mode="json"))


@pytest.mark.parametrize(
    ("data", "params", "reason"),
    [
        (_data(2), {}, "images have 2 channels, the model takes 1"),
        (_data(1), {"spatial_dims": 3}, "images are 2D, the model is 3D"),
        (
            _data(1, mask_value=2),
            {},
            "case 'c0' has mask value 2 (and 2 more cases), but the model outputs 2 classes",
        ),
    ],
)
def test_data_that_do_not_fit_the_jobs_model_are_one_line(
    tmp_path: Path, data: SiteData, params: dict[str, Any], reason: str
) -> None:
    builder = SiteBuilder(data, SiteOptions(state_dir=tmp_path / "state"))
    with pytest.raises(DataError) as info:
        builder.site_for(_job(**params))
    assert info.value.site == "a" and info.value.reason.startswith(reason)


def test_several_misfits_are_listed_together(tmp_path: Path) -> None:
    builder = SiteBuilder(_data(2, mask_value=4), SiteOptions(state_dir=tmp_path / "state"))
    with pytest.raises(DataProblems) as info:
        builder.site_for(_job())
    assert len(info.value.problems) == 2


def test_fitting_data_build_the_site(tmp_path: Path) -> None:
    builder = SiteBuilder(_data(1), SiteOptions(state_dir=tmp_path / "state"))
    assert builder.site_for(_job()) is builder.site_for(_job())
