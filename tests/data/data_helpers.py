"""Helpers shared by the data tests (imported by name: ``tests/data`` is on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from builders import synthetic_site

from medfed.errors import DataError

SMALL_SITE = synthetic_site("small", num_cases=6, lesion_radius=(0.08, 0.12))


def assert_names(error: DataError, site: str, path: Path) -> None:
    """Checks that a ``DataError`` names the site and the file at fault."""
    assert error.site == site
    assert error.path == path
    assert f"site '{site}'" in str(error)
    assert str(path) in str(error)


@contextmanager
def refused(match: str, site: str, path: Path) -> Iterator[None]:
    """Expects the block to raise a ``DataError`` matching ``match`` that names ``site`` and the
    file at fault (``assert_names``)."""
    with pytest.raises(DataError, match=match) as info:
        yield
    assert_names(info.value, site, path)
