"""The realistic variant of the built-in data: each site in its own size, spacing, orientation
and storage format, and every one loads back to the data the generator drew."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from builders import tiny_simulation
from pydicom.uid import RLELossless

from medfed.config.loading import parse_config
from medfed.data import family_sites, generate_site, load_site
from medfed.data.loading import detect_format
from medfed.data.realistic import SIZE_FACTORS, generate_realistic_federation
from medfed.simulator import run_simulation


@pytest.fixture(scope="module", params=[2, 3])
def realistic(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    dims = request.param
    folder = tmp_path_factory.mktemp(f"realistic{dims}")
    generate_realistic_federation(family_sites("brain_lesion", 0.1), folder, image_size=16, dims=dims, seed=3)
    return dims, folder


def test_every_site_has_its_own_format_orientation_and_size(realistic: tuple[int, Path]) -> None:
    dims, folder = realistic
    names = ["hospital_a", "hospital_b", "hospital_c", "hospital_d"]
    assert [detect_format(name, folder / name) for name in names] == ["msd", "msd", "dicom", "dicom"]
    stored = nib.load(next((folder / "hospital_b" / "imagesTr").iterdir()))
    assert stored.affine[0, 0] < 0  # stored LAS
    slices = [path for path in (folder / "hospital_d").rglob("IM*")]
    assert slices and all(path.suffix == "" for path in slices)
    assert pydicom.dcmread(slices[0]).file_meta.TransferSyntaxUID == RLELossless
    sizes = [load_site(name, folder / name).cases[0].image.shape[1] for name in names]
    assert sizes == [max(16, round(16 * factor)) for factor in SIZE_FACTORS]


@pytest.mark.parametrize("name", ["hospital_a", "hospital_b", "hospital_c", "hospital_d"])
def test_each_site_loads_back_to_what_the_generator_drew(
    realistic: tuple[int, Path], name: str, tmp_path: Path
) -> None:
    dims, folder = realistic
    index = ["hospital_a", "hospital_b", "hospital_c", "hospital_d"].index(name)
    spec = next(site for site in family_sites("brain_lesion", 0.1) if site.name == name)
    size = max(16, round(16 * SIZE_FACTORS[index]))
    drawn = load_site(name, generate_site(spec, tmp_path, image_size=size, dims=dims, seed=3))
    loaded = load_site(name, folder / name)
    for expected, got in zip(drawn.cases, loaded.cases, strict=True):
        assert np.array_equal(expected.mask, got.mask)
        scale = float(np.ptp(expected.image)) / 65535  # DICOM stores 16-bit values
        assert np.abs(expected.image - got.image).max() <= scale
        assert got.label == expected.label
    if dims == 3:
        assert loaded.cases[0].spacing == pytest.approx((16 / size,) * 3, rel=1e-5)


def test_the_demo_runs_on_the_realistic_variant(tmp_path: Path) -> None:
    config = tiny_simulation(
        tmp_path / "run",
        data={"synthetic": {"realistic": True}},
        preprocessing="auto",  # as configs/realistic.yaml
    )
    run_simulation(parse_config(config))
    assert (tmp_path / "run" / "report.html").is_file()
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    assert plan["spacing"] == [1.0, 1.0] and plan["median_size"] == [16.0, 16.0]  # one grid for all
