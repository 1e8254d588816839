"""Crash-safe file writing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Writes ``data`` to ``path`` so that readers see the old file or the new one, never half.

    Args:
        path: The file to create or replace.
        data: Its new content.
        mode: Permission bits; by default those of any new file (``0o666`` less the umask,
            e.g. ``0o644``), so every output of a run has the same mode. Pass ``0o600`` for
            secrets: the file never exists with wider permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, _default_mode() if mode is None else mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _default_mode() -> int:
    """``0o666`` less the process's umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The umask, from ``/proc`` on Linux; elsewhere set and restored, which briefly gives
    other threads' new files a stricter mask, never a wider one."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask
