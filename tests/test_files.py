"""``atomic_write``: the permissions of what it creates."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from medfed.files import atomic_write


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o027)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("umask")
def test_a_new_file_gets_the_umask_mode_not_0600(tmp_path: Path) -> None:
    atomic_write(tmp_path / "report.html", b"<html>")
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o640


@pytest.mark.usefixtures("umask")
def test_a_secret_is_never_wider_than_its_mode(tmp_path: Path) -> None:
    atomic_write(tmp_path / "key.pem", b"secret", mode=0o600)
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600


def test_replacing_a_file_keeps_the_content_atomic(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    atomic_write(path, b"old")
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
