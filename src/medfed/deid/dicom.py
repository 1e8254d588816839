"""De-identification of a folder of DICOM files, per patient, with dicognito.

Each patient gets a secret seed, drawn once from the operating system's CSPRNG and kept in the
site's pseudonym table; dicognito's ``Anonymizer`` seeded with it replaces names and IDs with
pseudonyms, remaps every UID consistently (one patient's series and frames still refer to each
other), shifts every date and time by one offset per patient (intervals between a patient's
studies are kept), and replaces addresses and institution details. On top, private attributes
and the free-text attributes of ``FREE_TEXT`` are removed (PS3.15 Annex E action X), and
``PatientIdentityRemoved`` is set to ``YES`` unless the image may carry burned-in text.
"""

from __future__ import annotations

import csv
import io
import secrets
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pydicom
from deid.config import DeidRecipe
from deid.dicom import has_burned_pixels
from dicognito.anonymizer import Anonymizer
from pydicom.dataset import Dataset, FileDataset

from medfed.data.formats.dicom import is_dicom
from medfed.errors import ConfigError, DataError
from medfed.files import atomic_write

FREE_TEXT = (
    "AdditionalPatientHistory",
    "PatientComments",
    "ImageComments",
    "StudyComments",
    "RequestedProcedureDescription",
    "ReasonForStudy",
    "ReasonForTheRequestedProcedure",
    "DerivationDescription",
    "PerformedProcedureStepDescription",
    "AcquisitionComments",
    "InterpretationText",
    "TextValue",
    "ContentCreatorName",
    "RequestAttributesSequence",
)
"""Free text where a clinician may have typed a name or a history: removed."""

SCREEN_CAPTURE_MODALITIES = {"US", "SC", "XA", "ES", "OT", "DOC"}
"""Modalities whose pixels often carry burned-in text (ultrasound, secondary capture, ...)."""

TABLE_FIELDS = ("patient_id", "pseudonym", "date_shift_days", "secret")
SOURCE = ""
"""Files to de-identify belong to no configured site yet."""


@dataclass(frozen=True)
class Pseudonym:
    """One patient's row of the pseudonym table (kept only at the site: it re-identifies)."""

    patient_id: str
    pseudonym: str
    date_shift_days: int | None
    secret: str


@dataclass
class DeidReport:
    """What ``deidentify`` did.

    Attributes:
        written: De-identified files, by source file.
        skipped: Files that are not DICOM (not copied: they may carry identifiers).
        burned_in: Files whose pixels may carry burned-in text (written, PatientIdentityRemoved NO).
        audit: One row per file and attribute: ``(output file, attribute, action)``.
        patients: The pseudonyms of the patients written.
    """

    written: dict[Path, Path] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)
    burned_in: list[Path] = field(default_factory=list)
    audit: list[tuple[str, str, str]] = field(default_factory=list)
    patients: set[str] = field(default_factory=set)


def deidentify(source: Path, output: Path, table: Path) -> DeidReport:
    """De-identifies every DICOM file under ``source`` into ``output``, one folder per series
    (``<pseudonym>_<n>/<new SOPInstanceUID>.dcm``, the layout the DICOM site loader reads).

    Args:
        source: Folder of DICOM files (any depth, any extension).
        output: Folder to write to (created).
        table: The pseudonym table (CSV); read when it exists, so a patient keeps their
            pseudonym, UIDs and date shift across runs; written with mode 0600. It must lie
            outside ``output``: the table re-identifies patients.

    Raises:
        ConfigError: ``table`` lies inside ``output`` or ``source`` is no folder.
        DataError: A DICOM file cannot be read.
    """
    if not source.is_dir():
        raise ConfigError(f"deid: '{source}' is not a folder")
    if table.resolve().is_relative_to(output.resolve()):
        raise ConfigError(
            f"deid: the pseudonym table '{table}' must lie outside the output folder '{output}'"
        )
    pseudonyms = _read_table(table)
    report = DeidReport()
    series_folders: dict[str, str] = {}
    series_per_patient: Counter[str] = Counter()
    recipe = DeidRecipe("dicom")  # deid's default filters (known scanner screens)
    for path in sorted(path for path in source.rglob("*") if path.is_file()):
        if not is_dicom(path):
            report.skipped.append(path)
            continue
        dataset = _read(path)
        burned = _burned_in(dataset, recipe)
        original_id = str(dataset.get("PatientID", "") or "")
        entry = pseudonyms.get(original_id) or Pseudonym(original_id, "", None, secrets.token_hex(16))
        before = _snapshot(dataset)
        private = _deidentify_dataset(dataset, entry.secret, burned_in=burned)
        entry = Pseudonym(
            original_id,
            str(dataset.get("PatientID", "")),
            entry.date_shift_days if entry.date_shift_days is not None else _days(before, dataset),
            entry.secret,
        )
        pseudonyms[original_id] = entry
        report.patients.add(entry.pseudonym)
        if str(dataset.SeriesInstanceUID) not in series_folders:
            series_per_patient[entry.pseudonym] += 1
            series_folders[str(dataset.SeriesInstanceUID)] = (
                f"{entry.pseudonym}_{series_per_patient[entry.pseudonym]}"
            )
        folder = series_folders[str(dataset.SeriesInstanceUID)]
        target = output / folder / f"{dataset.SOPInstanceUID}.dcm"
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        atomic_write(target, buffer.getvalue())
        report.written[path] = target
        if burned:
            report.burned_in.append(path)
        name = str(target.relative_to(output))
        report.audit += [(name, keyword, action) for keyword, action in _changes(before, dataset)]
        if private:
            report.audit.append((name, "private attributes", f"removed ({private})"))
    _write_table(table, pseudonyms.values())
    return report


def write_audit(report: DeidReport, path: Path) -> None:
    """Writes the audit (which attribute of which output file was removed or replaced; never a
    value) as CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "attribute", "action"])
    writer.writerows(sorted(set(report.audit)))
    atomic_write(path, buffer.getvalue().encode())


def _deidentify_dataset(dataset: Dataset, secret: str, *, burned_in: bool) -> int:
    """De-identifies ``dataset`` in place; returns how many private attributes it removed."""
    for keyword in FREE_TEXT:
        if keyword in dataset:
            delattr(dataset, keyword)
    private = sum(1 for element in dataset if element.tag.is_private)
    dataset.remove_private_tags()
    Anonymizer(seed=secret).anonymize(dataset)
    dataset.PatientIdentityRemoved = "NO" if burned_in else "YES"
    return private


def _burned_in(dataset: FileDataset, recipe: DeidRecipe) -> bool:
    """Whether the pixels of ``dataset`` (as read, before de-identification) may carry burned-in
    text: BurnedInAnnotation YES, a screen-capture modality or a secondary image without
    BurnedInAnnotation NO, or flagged by the filters of deid's ``recipe``."""
    declared = str(dataset.get("BurnedInAnnotation", "")).upper()
    image_type = " ".join(dataset.get("ImageType", [])).upper()
    if declared == "YES" or (
        declared != "NO"
        and (str(dataset.get("Modality", "")) in SCREEN_CAPTURE_MODALITIES or "SECONDARY" in image_type)
    ):
        return True
    return bool(has_burned_pixels(dataset, deid=recipe)["flagged"])


def _read(path: Path) -> FileDataset:
    try:
        return pydicom.dcmread(path)
    except Exception as exc:  # pydicom raises many unrelated types on bad files
        raise DataError(SOURCE, path, f"cannot read DICOM file ({type(exc).__name__}: {exc})") from exc


def _snapshot(dataset: Dataset) -> dict[str, str]:
    return {element.keyword: str(element.value) for element in dataset if element.keyword}


def _changes(before: dict[str, str], dataset: Dataset) -> list[tuple[str, str]]:
    after = _snapshot(dataset)
    changes = [(keyword, "removed") for keyword in before if keyword not in after]
    changes += [
        (keyword, "replaced") for keyword, value in before.items() if after.get(keyword, value) != value
    ]
    return changes


def _days(before: dict[str, str], dataset: Dataset) -> int | None:
    """The date shift in days, from StudyDate before and after (``None`` without one)."""
    old, new = before.get("StudyDate", ""), str(dataset.get("StudyDate", ""))
    if len(old) != 8 or len(new) != 8:
        return None
    return (_date(new) - _date(old)).days


def _date(value: str) -> date:
    return date(int(value[:4]), int(value[4:6]), int(value[6:8]))


def _read_table(path: Path) -> dict[str, Pseudonym]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and set(TABLE_FIELDS) - set(rows[0]):
        raise ConfigError(f"deid: '{path}' is not a pseudonym table (columns {', '.join(TABLE_FIELDS)})")
    return {
        row["patient_id"]: Pseudonym(
            row["patient_id"],
            row["pseudonym"],
            int(row["date_shift_days"]) if row["date_shift_days"] else None,
            row["secret"],
        )
        for row in rows
    }


def _write_table(path: Path, rows: Iterable[Pseudonym]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(TABLE_FIELDS)
    for row in rows:
        shift = "" if row.date_shift_days is None else str(row.date_shift_days)
        writer.writerow([row.patient_id, row.pseudonym, shift, row.secret])
    atomic_write(path, buffer.getvalue().encode(), mode=0o600)
