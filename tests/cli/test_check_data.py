"""``medfed check-data``: a table per site, each problem one plain line, exit 1 on problems."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from builders import synthetic_site
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.data import generate_site
from medfed.errors import DataError

SITE = synthetic_site()


def _study(tmp_path: Path, sites: dict[str, Path]) -> Path:
    config = tmp_path / "study.yaml"
    listed = [{"name": name, "path": str(path)} for name, path in sites.items()]
    config.write_text(yaml.safe_dump({"data": {"synthetic": None, "sites": listed, "unseen_site": None}}))
    return config


def test_a_sound_study_is_tabled_and_passes(tmp_path: Path) -> None:
    sites = {name: generate_site(replace(SITE, name=name), tmp_path, image_size=16, seed=0) for name in "ab"}
    result = CliRunner().invoke(app, ["check-data", "--config", str(_study(tmp_path, sites))])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│ a ") or line.startswith("│ b ")]
    assert len(rows) == 2
    assert [cell.strip() for cell in rows[0].split("│")[1:-1]][:8] == [
        "a",
        "3",
        "3",
        "1",
        "2D",
        "16x16",
        "1x1",
        "RAS",
    ]
    assert result.output.rstrip().endswith("no problems found")


def test_every_problem_is_one_plain_line_and_the_exit_code_is_1(tmp_path: Path) -> None:
    good = generate_site(replace(SITE, name="a"), tmp_path, image_size=16, seed=0)
    odd = generate_site(replace(SITE, name="[red]b"), tmp_path, image_size=16, dims=3, seed=0)
    missing = tmp_path / "[bold]c"
    result = CliRunner().invoke(
        app, ["check-data", "-c", str(_study(tmp_path, {"a": good, "b": odd, "c": missing}))]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: site 'c', file '{missing}': site path does not exist",
        f"error: site 'b', file '{odd / 'imagesTr' / '[red]b_000.nii.gz'}': images are 3D, those of "
        "site 'a' 2D; every site needs the same",
    ]
    assert "2 problem(s) found" in result.output


def test_one_site_folder_as_the_client_reads_it(tmp_path: Path) -> None:
    archive = tmp_path / "one.npz"
    np.savez(archive, train_images=np.zeros((1, 8, 8), np.uint8), train_labels=np.zeros(1, np.int64))
    result = CliRunner().invoke(app, ["check-data", "--data", str(archive)])
    assert result.exit_code == 1, result.output
    assert (
        "site has only 1 case ('train_00000'), so none is held out to test on; add cases or set "
        in result.output
    )
    assert CliRunner().invoke(app, ["check-data", "--data", str(archive), "--holdout", "0"]).exit_code == 0


def test_the_client_refuses_a_one_case_site_before_connecting(tmp_path: Path) -> None:
    archive = tmp_path / "one.npz"
    np.savez(archive, train_images=np.zeros((1, 8, 8), np.uint8), train_labels=np.zeros(1, np.int64))
    command = ["client", "--insecure", "--site", "a", "--server", "127.0.0.1:1", "--data", str(archive)]
    result = CliRunner().invoke(app, [*command, "--state-dir", str(tmp_path / "state")])
    assert isinstance(result.exception, DataError), result.output
    assert "site has only 1 case ('train_00000')" in str(result.exception)
    assert not (tmp_path / "state").exists()


@pytest.mark.integration
def test_simulate_prints_each_problem_as_an_error_line_and_creates_no_run(tmp_path: Path) -> None:
    good = generate_site(replace(SITE, name="a"), tmp_path, image_size=16, seed=0)
    missing = [tmp_path / "[b]", tmp_path / "c"]
    config = _study(tmp_path, {"a": good, "b": missing[0], "c": missing[1]})
    command = [sys.executable, "-c", "from medfed.cli.app import main; main()", "simulate", "-c", str(config)]
    result = subprocess.run(
        [*command, "-o", str(tmp_path / "run")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: site '{name}', file '{path}': site path does not exist"
        for name, path in zip("bc", missing, strict=True)
    ]
    assert not (tmp_path / "run").exists()


def test_one_dicom_site_that_still_names_its_patient(tmp_path: Path) -> None:
    for case in ("p1", "p2"):
        (tmp_path / "site" / case).mkdir(parents=True)
        shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "site" / case / "IM1")  # names Jane Doe
    result = CliRunner().invoke(app, ["check-data", "--data", str(tmp_path / "site")])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert [line.split("'")[3] for line in errors] == [
        str(tmp_path / "site" / case / "IM1") for case in ("p1", "p2")
    ]
    allowed = CliRunner().invoke(app, ["check-data", "--data", str(tmp_path / "site"), "--allow-identified"])
    assert allowed.exit_code == 0, allowed.output
    assert "│ site " in allowed.output and "no problems found" in allowed.output
