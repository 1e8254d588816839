"""`medfed deid`: identifiers replaced, UIDs remapped consistently, dates shifted per patient,
free text and private attributes removed, burned-in text flagged, the pseudonym table private
and stable across runs, and the result readable by the DICOM site loader."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_helpers import slice_dataset, write_series, write_slice
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.config.schema import DataConfig, SiteSourceConfig
from medfed.data.formats import dicom
from medfed.data.formats.identifiers import identifying_attributes
from medfed.deid.dicom import deidentify, write_audit
from medfed.errors import ConfigError
from medfed.orchestration.federation_data import load_sites


def _raw(folder: Path) -> Path:
    """Patient P1 (Doe^Jane): one 3-slice MR series with a comment and a private attribute;
    patient P2: one ultrasound image without BurnedInAnnotation; a text file."""
    write_series(folder / "jane", depth=3, identified=True)
    for path in (folder / "jane").iterdir():
        ds = pydicom.dcmread(path)
        ds.ImageComments = "Jane Doe, follow-up after fall"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.add_new(0x00291010, "LO", "SITE PRIVATE jane.doe@hospital")
        ds.save_as(path)
    ultrasound = slice_dataset(np.ones((6, 5)), 0.0, 1, series=generate_uid(), identified=True)
    ultrasound.PatientName, ultrasound.PatientID, ultrasound.Modality = "Roe^Richard", "P2", "US"
    write_slice(folder / "richard" / "us.dcm", ultrasound)
    (folder / "notes.txt").write_text("Jane Doe: MRN P1")
    return folder


def test_identifiers_are_gone_and_the_output_loads_as_a_site(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    report = deidentify(raw, tmp_path / "out", tmp_path / "private" / "pseudonyms.csv")
    assert len(report.written) == 4 and report.skipped == [raw / "notes.txt"]
    for target in report.written.values():
        data = target.read_bytes()
        assert b"Doe^Jane" not in data and b"Roe^Richard" not in data and b"jane.doe" not in data
        ds = pydicom.dcmread(target)
        assert str(ds.PatientID) not in ("P1", "P2") and "ImageComments" not in ds
        assert not any(element.tag.is_private for element in ds)
    jane = [pydicom.dcmread(t) for s, t in report.written.items() if s.parent.name == "jane"]
    originals = [pydicom.dcmread(s) for s in report.written if s.parent.name == "jane"]
    assert len({str(ds.SeriesInstanceUID) for ds in jane}) == 1  # one series, remapped consistently
    assert {str(ds.SeriesInstanceUID) for ds in jane}.isdisjoint(
        {str(ds.SeriesInstanceUID) for ds in originals}
    )
    assert {str(ds.StudyDate) for ds in jane} != {"20260101"}
    assert all(ds.PatientIdentityRemoved == "YES" and identifying_attributes(ds) == [] for ds in jane)
    loaded = dicom.load("hospital", _only(tmp_path / "out", report, "jane"))
    assert loaded.cases[0].image.shape[-1] == 3


def _only(out: Path, report, folder: str) -> Path:  # type: ignore[no-untyped-def]
    """A site folder holding only the de-identified series of one raw folder."""
    target = next(t for s, t in report.written.items() if s.parent.name == folder)
    site = out.parent / "site"
    site.mkdir(exist_ok=True)
    (site / target.parent.name).symlink_to(target.parent)
    return site


def test_burned_in_risk_is_flagged_and_not_declared_clean(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    report = deidentify(raw, tmp_path / "out", tmp_path / "pseudonyms.csv")
    assert report.burned_in == [raw / "richard" / "us.dcm"]
    assert pydicom.dcmread(report.written[raw / "richard" / "us.dcm"]).PatientIdentityRemoved == "NO"


def test_a_header_only_deids_filters_flag_is_flagged_too(tmp_path: Path) -> None:
    image = slice_dataset(np.ones((6, 5)), 0.0, 1, series=generate_uid(), identified=True)
    assert image.Modality == "MR" and "ImageType" not in image and "BurnedInAnnotation" not in image
    # only deid's recipe flags an image without ImageType
    write_slice(tmp_path / "raw" / "mr.dcm", image)
    report = deidentify(tmp_path / "raw", tmp_path / "out", tmp_path / "pseudonyms.csv")
    assert report.burned_in == [tmp_path / "raw" / "mr.dcm"]


def test_every_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _raw(tmp_path / "raw")
    reads: list[Path] = []
    read = pydicom.dcmread

    def counted(path: Path, *args: object, **kwargs: object) -> pydicom.Dataset:
        reads.append(Path(path))
        return read(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pydicom, "dcmread", counted)
    report = deidentify(raw, tmp_path / "out", tmp_path / "pseudonyms.csv")
    assert sorted(reads) == sorted(report.written)


def test_the_pseudonym_table_is_private_and_stable_across_runs(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    table = tmp_path / "private" / "pseudonyms.csv"
    first = deidentify(raw, tmp_path / "out1", table)
    rows = {row["patient_id"]: row for row in csv.DictReader(table.open())}
    assert set(rows) == {"P1", "P2"} and stat.S_IMODE(table.stat().st_mode) == 0o600
    assert rows["P1"]["date_shift_days"] and int(rows["P1"]["date_shift_days"]) < 0
    second = deidentify(raw, tmp_path / "out2", table)
    for source, target in first.written.items():
        a, b = pydicom.dcmread(target), pydicom.dcmread(second.written[source])
        assert (a.PatientID, a.SOPInstanceUID, a.StudyDate) == (b.PatientID, b.SOPInstanceUID, b.StudyDate)
    fresh = deidentify(raw, tmp_path / "out3", tmp_path / "other.csv")  # a new secret: new pseudonyms
    jane = next(s for s in first.written if s.parent.name == "jane")
    assert pydicom.dcmread(fresh.written[jane]).PatientID != pydicom.dcmread(first.written[jane]).PatientID


def test_the_table_may_not_lie_in_the_output(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outside the output folder"):
        deidentify(_raw(tmp_path / "raw"), tmp_path / "out", tmp_path / "out" / "pseudonyms.csv")


def test_audit_names_attributes_never_values(tmp_path: Path) -> None:
    report = deidentify(_raw(tmp_path / "raw"), tmp_path / "out", tmp_path / "pseudonyms.csv")
    write_audit(report, tmp_path / "audit.csv")
    text = (tmp_path / "audit.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert {"PatientName", "PatientID", "ImageComments", "StudyDate", "SOPInstanceUID"} <= {
        row["attribute"] for row in rows
    }
    assert "Doe" not in text and "P1" not in text and "follow-up" not in text


def test_identified_data_is_recognised() -> None:
    ds = slice_dataset(np.ones((2, 2)), 0.0, 1, series=generate_uid(), identified=True)
    assert "PatientName" in identifying_attributes(ds) and "PatientID" in identifying_attributes(ds)


def test_deid_command(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw")
    arguments = ["deid", str(raw), "-o", str(tmp_path / "out"), "--table", str(tmp_path / "t.csv")]
    result = CliRunner().invoke(app, [*arguments, "--audit", str(tmp_path / "audit.csv")])
    assert result.exit_code == 0, result.output
    assert "4 DICOM files of 2 patient(s)" in result.output and "burned-in" in result.output
    assert (tmp_path / "audit.csv").is_file()


def test_a_study_opts_out_per_site(tmp_path: Path) -> None:
    write_series(tmp_path / "site" / "case1", depth=2, identified=True)

    def problems(allow: bool) -> list[str]:
        source = SiteSourceConfig(name="a", path=tmp_path / "site", format="dicom", allow_identified=allow)
        config = DataConfig(synthetic=None, sites=[source], unseen_site=None)
        return [str(error) for error in load_sites(config, tmp_path / "data", seed=0)[1]]

    (refused,) = problems(False)
    assert "still identifies its patient (PatientName, PatientID)" in refused
    assert problems(True) == []
