"""Helpers shared by the data tests (imported by name: ``tests/data`` is on ``sys.path``)."""

from __future__ import annotations

from pathlib import Path

from medfed.data import ScannerProfile, SyntheticSite
from medfed.data.scanner import Acquisition
from medfed.errors import DataError

SMALL_SITE = SyntheticSite(
    name="small",
    scanner=ScannerProfile("t1", Acquisition(100.0, 1.0, 0.1, 0.02, 0.5)),
    num_cases=6,
    lesion_prevalence=0.5,
    lesion_radius=(0.08, 0.12),
)


def assert_names(error: DataError, site: str, path: Path) -> None:
    """Checks that a ``DataError`` names the site and the file at fault."""
    assert error.site == site
    assert error.path == path
    assert f"site '{site}'" in str(error)
    assert str(path) in str(error)
