"""Whether a DICOM dataset still names its patient: the check the site loaders apply."""

from __future__ import annotations

from pydicom.dataset import Dataset

DIRECT_IDENTIFIERS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientNames",
    "OtherPatientIDsSequence",
    "PatientMotherBirthName",
    "MedicalRecordLocator",
)
"""Attributes that identify a patient directly (PS3.15 Annex E lists them for removal or
replacement in the Basic Application Level Confidentiality Profile)."""


def identifying_attributes(dataset: Dataset) -> list[str]:
    """The direct identifiers ``dataset`` holds with a value, unless it declares itself
    de-identified (PatientIdentityRemoved ``YES``, as ``medfed deid`` writes)."""
    if str(dataset.get("PatientIdentityRemoved", "")).upper() == "YES":
        return []
    return [keyword for keyword in DIRECT_IDENTIFIERS if str(dataset.get(keyword, "") or "").strip()]
