"""Which patient each case belongs to: DP-SGD's privacy unit (``medfed.privacy.dp.patients``).

A site declares it in ``patients.csv`` (columns ``case_id,patient_id``, one row per case, case
ids as medfed names them: the folder, file or ``dataset.json`` name) in the site folder, or
``<archive>.patients.csv`` next to a single ``.npz`` file. Without it a DICOM case takes its
series' (pseudonymised) ``PatientID``, and any other case is its own patient.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from medfed.data.cases import Case, SiteData
from medfed.data.formats.common import MAX_PATIENT_ID, patient_id, read_case_csv
from medfed.errors import DataError

PATIENTS_FILE = "patients.csv"
PATIENT_COLUMN = "patient_id"


def patients_file(path: Path) -> Path:
    """Where the patients of the site at ``path`` (a folder, or a ``.npz`` file) are declared."""
    return path / PATIENTS_FILE if path.is_dir() else path.with_name(f"{path.stem}.{PATIENTS_FILE}")


def with_patients(data: SiteData, path: Path) -> SiteData:
    """``data`` with every case's patient from the site's ``patients.csv`` when it has one.

    Raises:
        DataError: ``patients.csv`` is unreadable, repeats or misses a case, names an unknown
            case or holds a bad id; or, without it, some cases carry a patient id and others not.
    """
    file = patients_file(path)
    if not file.is_file():
        check_all_or_none(data.name, data.cases)
        return data
    known = {case.case_id for case in data.cases}
    parse = (patient_id, f"a patient id of 1-{MAX_PATIENT_ID} printable characters")
    mapping = read_case_csv(data.name, file, "case_id", PATIENT_COLUMN, known, parse)
    missing = [case.case_id for case in data.cases if case.case_id not in mapping]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(data.name, file, f"no patient for case '{missing[0]}'{more}; give every case a row")
    cases = tuple(replace(case, patient_id=mapping[case.case_id]) for case in data.cases)
    return replace(data, cases=cases)


def check_all_or_none(site: str, cases: Sequence[Case]) -> None:
    """Raises ``DataError`` naming the first case without a patient id when others have one (a
    DICOM series without ``PatientID`` among series with one): it would count as its own
    patient, perhaps wrongly."""
    lacking = [case for case in cases if case.patient_id is None]
    if lacking and len(lacking) < len(cases):
        reason = (
            f"case '{lacking[0].case_id}' has no patient id while other cases have one; "
            f"declare every case's patient in {PATIENTS_FILE} (case_id,{PATIENT_COLUMN})"
        )
        raise DataError(site, lacking[0].source, reason)


def patients_csv(case_ids: Sequence[str], patients: Sequence[str]) -> str:
    """The text of a ``patients.csv`` giving ``case_ids[i]`` the patient ``patients[i]``."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["case_id", PATIENT_COLUMN])
    writer.writerows(zip(case_ids, patients, strict=True))
    return text.getvalue()
