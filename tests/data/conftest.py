"""Fixtures of the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_helpers import SMALL_SITE

from medfed.data import generate_site


@pytest.fixture
def msd_site(tmp_path: Path) -> Path:
    """A freshly generated 6-case, 32x32 MSD site folder named ``small``."""
    return generate_site(SMALL_SITE, tmp_path / "msd", image_size=32, seed=1)
