"""Which patient each case belongs to: patients.csv, DICOM PatientID, the generator, the split."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from data_helpers import SMALL_SITE, assert_names
from dicom_helpers import write_series, write_slice

from medfed.data import generate_site, load_site, split_cases
from medfed.data.cases import Case, SiteData
from medfed.data.patients import PATIENTS_FILE
from medfed.data.summary import summarize_site
from medfed.errors import DataError


def test_without_a_patients_file_every_case_is_its_own_patient(msd_site: Path) -> None:
    site = load_site("small", msd_site)
    assert [case.patient for case in site.cases] == [case.case_id for case in site.cases]
    assert all(case.patient_id is None for case in site.cases)


def test_the_generator_writes_several_studies_per_patient_and_the_loader_reads_them(tmp_path: Path) -> None:
    folder = generate_site(SMALL_SITE, tmp_path, image_size=16, seed=1, studies_per_patient=3)
    site = load_site("small", folder)
    assert [case.patient for case in site.cases] == ["small_p000"] * 3 + ["small_p001"] * 3
    summary = summarize_site(site, "segmentation")
    assert (summary.cases, summary.patients) == (6, 2)
    generate_site(SMALL_SITE, tmp_path, image_size=16, seed=1)  # generated again, one study each
    assert not (folder / PATIENTS_FILE).exists()
    assert len({case.patient for case in load_site("small", folder).cases}) == 6


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (["small_000,a", "small_001,a"], "no patient for case 'small_002' and 3 more"),
        (["small_000,a", "small_000,b"], "line 3: 'small_000' already has a patient_id"),
        (["small_009,a"], "line 2: 'small_009' is not a case of this site"),
        (["small_000,"], "line 2: patient_id '' is not a patient id of 1-64 printable characters"),
        (["small_000," + "x" * 65], "is not a patient id of 1-64"),
    ],
)
def test_a_bad_patients_file_is_one_line_naming_the_site_and_the_file(
    msd_site: Path, rows: list[str], reason: str
) -> None:
    file = msd_site / PATIENTS_FILE
    file.write_text("\n".join(["case_id,patient_id", *rows]) + "\n")
    with pytest.raises(DataError, match=reason) as caught:
        load_site("small", msd_site)
    assert_names(caught.value, "small", file)
    assert "\n" not in str(caught.value)


def _dicom_case(folder: Path, patient: str | None) -> None:
    write_series(folder, 2)
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        if patient is None:
            del ds.PatientID
        else:
            ds.PatientID = patient
        write_slice(path, ds)


def test_dicom_cases_take_their_pseudonymised_patient_id(tmp_path: Path) -> None:
    for case, patient in (("c1", "PSEUDO-7"), ("c2", "PSEUDO-7"), ("c3", "PSEUDO-9")):
        _dicom_case(tmp_path / case, patient)
    site = load_site("d", tmp_path, "dicom")
    assert [case.patient for case in site.cases] == ["PSEUDO-7", "PSEUDO-7", "PSEUDO-9"]
    (tmp_path / PATIENTS_FILE).write_text("case_id,patient_id\nc1,x\nc2,y\nc3,x\n")
    assert [case.patient for case in load_site("d", tmp_path, "dicom").cases] == ["x", "y", "x"]


def test_a_dicom_case_without_patient_id_among_cases_with_one_is_refused(tmp_path: Path) -> None:
    _dicom_case(tmp_path / "c1", "PSEUDO-7")
    _dicom_case(tmp_path / "c2", None)
    with pytest.raises(DataError, match="case 'c2' has no patient id while other cases have one") as caught:
        load_site("d", tmp_path, "dicom")
    assert_names(caught.value, "d", tmp_path / "c2")


def test_slices_of_one_series_naming_two_patients_are_refused(tmp_path: Path) -> None:
    _dicom_case(tmp_path / "c1", "PSEUDO-7")
    first = sorted((tmp_path / "c1").glob("*.dcm"))[0]
    ds = pydicom.dcmread(first)
    ds.PatientID = "PSEUDO-8"
    write_slice(first, ds)
    with pytest.raises(DataError, match="name 2 different PatientIDs"):
        load_site("d", tmp_path, "dicom")


def _site(patients: list[str], labels: list[int] | None = None) -> SiteData:
    image = np.zeros((1, 2, 2), dtype=np.float32)
    cases = tuple(
        Case(f"c{i}", image, None, None if labels is None else labels[i], Path(f"c{i}"), patient_id=patient)
        for i, patient in enumerate(patients)
    )
    return SiteData("s", cases)


def test_the_split_keeps_every_patient_on_one_side() -> None:
    patients = [f"p{i // 3}" for i in range(30)]
    for seed in range(20):
        train, test = split_cases(_site(patients), 0.25, seed)
        train_patients = {case.patient for case in train.cases}
        assert not train_patients & {case.patient for case in test.cases}
        assert len(test.cases) in (9, 12) and len(train.cases) + len(test.cases) == 30


def test_the_split_is_unchanged_when_each_patient_has_one_case() -> None:
    labels = [i % 3 for i in range(17)]
    site = _site([None] * 17, labels)  # type: ignore[list-item]
    named = replace(site, cases=tuple(replace(c, patient_id=f"x{c.case_id}") for c in site.cases))
    for seed in range(5):
        assert [c.case_id for c in split_cases(site, 0.3, seed)[1].cases] == [
            c.case_id for c in split_cases(named, 0.3, seed)[1].cases
        ]


def test_a_single_patient_is_never_split() -> None:
    train, test = split_cases(_site(["p"] * 4), 0.5, 0)
    assert len(train.cases) == 4 and not test.cases


def test_several_studies_per_patient_are_generated_in_the_msd_layout_only() -> None:
    from medfed.config.schema import SyntheticDataConfig

    assert SyntheticDataConfig(studies_per_patient=3).studies_per_patient == 3
    with pytest.raises(ValueError, match="studies_per_patient > 1 is written for the MSD layout only"):
        SyntheticDataConfig(realistic=True, studies_per_patient=2)
