"""`medfed simulate` on real-layout sites whose images differ in size within and across sites,
with sizes the U-Net strides do not divide, and with a mask class the model cannot output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from medfed.config.loading import parse_config
from medfed.data import load_site
from medfed.errors import DataError
from medfed.simulator import run_simulation


def _write_site(
    folder: Path,
    shapes: list[tuple[int, ...]],
    seed: int,
    classes: int = 2,
    spacing: tuple[float, float, float] = (1.5, 1.0, 2.0),
    channels: int = 1,
) -> Path:
    """An MSD site of NIfTI cases (``channels`` > 1: along a fourth axis), ``classes`` labels,
    voxels of ``spacing`` mm."""
    rng = np.random.default_rng(seed)
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    affine = np.diag([*spacing, 1.0])
    entries = []
    for index, shape in enumerate(shapes):
        mask = np.zeros(shape, dtype=np.uint8)
        mask[tuple(slice(s // 4, s // 2 + 1) for s in shape)] = 1
        mask[(0,) * len(shape)] = classes - 1
        image = (rng.normal(0.0, 0.2, shape) + 1.0 + 2.0 * mask).astype(np.float32)
        if channels > 1:
            image = np.stack([image] * channels, axis=-1)
        name = f"case{index}.nii.gz"
        nib.save(nib.Nifti1Image(image, affine), folder / "imagesTr" / name)
        nib.save(nib.Nifti1Image(mask, affine), folder / "labelsTr" / name)
        entries.append({"image": f"imagesTr/{name}", "label": f"labelsTr/{name}"})
    labels = {str(k): f"class{k}" for k in range(classes)}
    (folder / "dataset.json").write_text(json.dumps({"labels": labels, "training": entries}))
    return folder


def _config(tmp_path: Path, sites: dict[str, Path], **overrides: Any) -> Any:
    return parse_config(
        {
            "output_dir": str(tmp_path / "run"),
            "data": {
                "synthetic": None,
                "unseen_site": None,
                "augment": False,
                "sites": [{"name": name, "path": str(path)} for name, path in sites.items()],
            },
            "model": {"params": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0}},
            "training": {"local_epochs": 1, "batch_size": 2},
            "federation": {"rounds": 1},
            "strategies": [{"name": "fedavg"}],
            "baselines": {"centralized": False, "local": False},
            **overrides,
        }
    )


@pytest.mark.integration
def test_sites_of_mixed_non_divisible_3d_sizes_train_and_evaluate(tmp_path: Path) -> None:
    sites = {
        "a": _write_site(tmp_path / "a", [(10, 13, 6), (14, 9, 7), (10, 13, 6), (9, 11, 5)], seed=0),
        "b": _write_site(tmp_path / "b", [(17, 12, 9), (15, 15, 6), (11, 10, 7), (12, 12, 8)], seed=1),
    }
    assert load_site("a", sites["a"]).cases[0].spacing == (1.5, 1.0, 2.0)
    for preprocessing in ({}, {"spacing": [2.0, 2.0, 2.0], "crop_foreground": True, "patch_size": [8, 8, 8]}):
        outcome = run_simulation(
            _config(tmp_path / str(len(preprocessing)), sites, preprocessing=preprocessing)
        )
        fedavg = next(row for row in outcome.summary if row.experiment == "fedavg")
        assert 0.0 <= fedavg.own_sites <= 1.0


@pytest.mark.integration
def test_a_mask_class_beyond_out_channels_stops_before_training(tmp_path: Path) -> None:
    sites = {
        "a": _write_site(tmp_path / "a", [(8, 8, 1)] * 3, seed=0),
        "b": _write_site(tmp_path / "b", [(8, 8, 1)] * 3, seed=1, classes=3),
    }
    config = _config(
        tmp_path, sites, model={"params": {"out_channels": 2, "channels": [4, 8], "strides": [2]}}
    )
    with pytest.raises(DataError, match="site 'b'.*mask value 2.*, but the model outputs 2 classes") as error:
        run_simulation(config)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.integration
def test_preprocessing_auto_plans_from_the_sites_and_saves_plan_json(tmp_path: Path) -> None:
    sites = {
        "a": _write_site(tmp_path / "a", [(12, 12, 6)] * 3, seed=0, spacing=(1.0, 1.0, 2.0)),
        "b": _write_site(tmp_path / "b", [(8, 8, 4)] * 3, seed=1, spacing=(1.5, 1.5, 3.0)),
        "c": _write_site(tmp_path / "c", [(10, 10, 6)] * 3, seed=2, spacing=(1.2, 1.2, 2.0)),
    }
    outcome = run_simulation(_config(tmp_path, sites, preprocessing="auto"))
    plan = json.loads((outcome.run_dir / "plan.json").read_text())
    assert plan["spacing"] == pytest.approx([1.2, 1.2, 2.0])  # per axis, the median of the sites' spacings
    # the training cases' extents 12, 12, 12 mm and 12, 12, 12 mm over 1.2 x 1.2 x 2 mm voxels
    assert plan["median_size"] == pytest.approx([10.0, 10.0, 6.0])
    assert plan["patch_size"] == [12, 12, 8]  # up to multiples of the strides' product, 4
    report = outcome.report.read_text()
    assert "Study plan (from the sites' fingerprints)" in report
    assert "<th>target spacing (mm)</th><td>[1.20, 1.20, 2.00]</td>" in report
    assert "patch_size:\n  - 12\n  - 12\n  - 8" in (outcome.run_dir / "config.yaml").read_text()


@pytest.mark.integration
@pytest.mark.parametrize(
    "odd",
    [{"channels": 2}, {"shapes": [(8, 8, 1)] * 3}],
)
def test_a_site_with_other_channels_or_dimensionality_stops_the_run_naming_it(
    tmp_path: Path, odd: dict[str, Any]
) -> None:
    shapes = odd.pop("shapes", [(8, 8, 4)] * 3)
    sites = {
        "a": _write_site(tmp_path / "a", [(8, 8, 4)] * 3, seed=0),
        "b": _write_site(tmp_path / "b", shapes, seed=1, **odd),
        "c": _write_site(tmp_path / "c", [(8, 8, 4)] * 3, seed=2),
    }
    with pytest.raises(DataError, match="^site 'b'") as error:
        run_simulation(_config(tmp_path, sites))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()
