"""The study's data checks: every problem in one pass, before the run directory exists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from builders import synthetic_site

from medfed.config.loading import parse_config
from medfed.data import generate_site
from medfed.errors import DataError, DataProblems
from medfed.orchestration.data_checks import check_study
from medfed.simulator import run_simulation

SITE = synthetic_site()


def _msd_site(root: Path, name: str, dims: int = 2) -> Path:
    from dataclasses import replace

    return generate_site(replace(SITE, name=name), root, image_size=16, dims=dims, seed=0)


def _config(tmp_path: Path, sites: dict[str, Path], **settings: Any) -> Any:
    listed = [{"name": name, "path": str(path)} for name, path in sites.items()]
    data = {"synthetic": None, "sites": listed, "unseen_site": None, **settings.pop("data", {})}
    return parse_config({"output_dir": str(tmp_path / "run"), "data": data, **settings})


def test_every_sites_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    sites = {
        "a": _msd_site(tmp_path, "a"),
        "b": _msd_site(tmp_path, "b", dims=3),
        "c": tmp_path / "missing",
    }
    found = check_study(_config(tmp_path, sites), tmp_path / "data")
    assert [(p.site, p.reason) for p in found.problems if isinstance(p, DataError)] == [
        ("c", "site path does not exist"),
        ("b", "images are 3D, those of site 'a' 2D; every site needs the same"),
    ]
    assert [s.name for s in found.summaries] == ["a", "b"]
    assert found.data is None


def test_a_one_case_training_site_is_refused_unless_it_is_the_unseen_site(tmp_path: Path) -> None:
    one = tmp_path / "one.npz"
    np.savez(one, train_images=np.zeros((1, 16, 16), np.uint8), train_labels=np.zeros(1, np.int64))
    many = tmp_path / "many.npz"
    np.savez(many, train_images=np.zeros((4, 16, 16), np.uint8), train_labels=np.arange(4) % 2)
    settings = {"task": "classification", "model": {"name": "resnet"}}
    found = check_study(_config(tmp_path, {"one": one, "many": many}, **settings), tmp_path / "data")
    [problem] = found.problems
    assert str(problem).startswith(f"site 'one', file '{one}': site has only 1 case ('train_00000')")
    as_unseen = _config(tmp_path, {"one": one, "many": many}, data={"unseen_site": "one"}, **settings)
    assert check_study(as_unseen, tmp_path / "data").problems == []


def test_mask_values_beyond_out_channels_are_named(tmp_path: Path) -> None:
    a, b = _msd_site(tmp_path, "a"), _msd_site(tmp_path, "b")
    label = b / "labelsTr" / "b_001.nii.gz"
    stored = nib.load(label)
    mask = np.asarray(stored.dataobj).copy()
    mask[0, 0] = 2
    nib.save(nib.Nifti1Image(mask, stored.affine), label)
    index = json.loads((b / "dataset.json").read_text())
    index["labels"]["2"] = "oedema"  # declared, so only the model's 2 outputs are too few
    (b / "dataset.json").write_text(json.dumps(index))
    found = check_study(_config(tmp_path, {"a": a, "b": b}, model={"params": {"out_channels": 2}}), tmp_path)
    [problem] = found.problems
    assert str(problem) == (
        f"site 'b', file '{b / 'imagesTr' / 'b_001.nii.gz'}': case 'b_001' has mask value 2, "
        "but the model outputs 2 classes (0..1); fix the data or set model.params.out_channels"
    )
    assert found.summaries[1].classes[2] == pytest.approx(1 / (3 * 16 * 16))


def test_simulate_reports_every_problem_and_creates_no_run_directory_until_fixed(tmp_path: Path) -> None:
    a, b = _msd_site(tmp_path, "a"), _msd_site(tmp_path, "b", dims=3)
    broken = _config(tmp_path, {"a": a, "b": b, "c": tmp_path / "missing"})
    with pytest.raises(DataProblems) as info:
        run_simulation(broken)
    assert str(info.value).splitlines() == [
        "2 problems with the data:",
        f"site 'c', file '{tmp_path / 'missing'}': site path does not exist",
        f"site 'b', file '{b / 'imagesTr' / 'b_000.nii.gz'}': images are 3D, those of site 'a' 2D; "
        "every site needs the same",
    ]
    assert not (tmp_path / "run").exists()


def test_each_bad_case_of_a_site_is_its_own_line(tmp_path: Path) -> None:
    a, b = _msd_site(tmp_path, "a"), _msd_site(tmp_path, "b")
    for case in ("b_000", "b_002"):
        (b / "labelsTr" / f"{case}.nii.gz").unlink()
    found = check_study(_config(tmp_path, {"a": a, "b": b}), tmp_path)
    assert [(p.site, p.path) for p in found.problems if isinstance(p, DataError)] == [
        ("b", b / "labelsTr" / "b_000.nii.gz"),
        ("b", b / "labelsTr" / "b_002.nii.gz"),
    ]
