"""A party's copy of the provenance ledger: an append-only file of checked entries.

Every copy (the server's, each site's, each peer's) is a ``Ledger``: it checks each entry before
appending it (its position, its link to the previous entry, its signer and signature, and that
an aggregate's inputs are updates already in the ledger) and appends it durably: one write of a
whole line, then ``fsync``. A process killed mid-write leaves at most an incomplete last line,
which the next reader reports instead of accepting. The same three calls, ``append``, ``head``
and ``entries``, serve client-server and peer-to-peer federations.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medfed.provenance.entries import GENESIS, Entry, entry_hash, entry_line, parse_entry
from medfed.provenance.errors import LedgerError
from medfed.provenance.signers import Signers, sign


class Ledger:
    """One copy of the ledger, in the file at ``path`` (created on the first append).

    Args:
        path: The ledger file (JSON lines).
        signers: Who may sign entries.
        name: How errors name this copy (default: the path).
        owner: A networked peer's own chain (``medfed.provenance.chains``): every entry must be
            signed by ``owner``, and an aggregate's inputs, other peers' updates, are checked
            across the chains instead of in this one.

    Raises:
        LedgerError: The file holds an entry that fails a check, or an incomplete last line.
    """

    def __init__(
        self, path: Path, signers: Signers, *, name: str | None = None, owner: str | None = None
    ) -> None:
        self.path = path
        self.signers = signers
        self.name = name or str(path)
        self.owner = owner
        self._entries: list[Entry] = []
        self._updates: set[str] = set()
        self._head = GENESIS
        for line in self._lines():
            self._accept(self._parsed(line))

    @property
    def entries(self) -> tuple[Entry, ...]:
        """The entries, oldest first."""
        return tuple(self._entries)

    def head(self) -> str:
        """The hash of the last entry (``GENESIS`` when empty): two copies with the same head
        hold the same history."""
        return self._head

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, entry: Entry) -> None:
        """Checks ``entry`` as the next one and writes it durably.

        Raises:
            LedgerError: The entry fails a check; nothing is written.
        """
        self._check(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            data = entry_line(entry) + b"\n"
            while data:
                data = data[os.write(descriptor, data) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if new:
            _fsync_directory(self.path.parent)
        self._add(entry)

    def _accept(self, entry: Entry) -> None:
        self._check(entry)
        self._add(entry)

    def _add(self, entry: Entry) -> None:
        self._entries.append(entry)
        self._head = entry_hash(entry)
        if entry.kind == "update":
            self._updates.add(entry.digest)

    def _check(self, entry: Entry) -> None:
        position = len(self._entries)
        try:
            if entry.index != position:
                raise ValueError(
                    f"numbered {entry.index} at position {position}: an entry was deleted, inserted or moved"
                )
            if entry.previous != self._head:
                raise ValueError("does not link to the entry before it: the chain is broken")
            if self.owner is not None and entry.signer != self.owner:
                raise ValueError(f"signed by another party than '{self.owner}', whose chain this is")
            self.signers.check(entry)
            if entry.kind == "update" and entry.inputs:
                raise ValueError("an update cites inputs (only an aggregate has any)")
            missing = [digest for digest in entry.inputs if digest not in self._updates]
            if entry.kind == "aggregate" and missing and self.owner is None:
                raise ValueError(f"input {missing[0][:16]}... is not an update in this ledger")
        except ValueError as error:
            what = f"round {entry.round}, {entry.kind} by '{entry.signer}'"
            raise LedgerError(self.name, position, f"{error} ({what})") from None

    def _lines(self) -> list[bytes]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise LedgerError(self.name, None, f"cannot read: {error}") from None
        lines = data.split(b"\n")
        if lines[-1]:
            raise LedgerError(
                self.name,
                len(lines) - 1,
                "the last line is incomplete (a write was interrupted); it is not part of the "
                "history: compare with another copy before removing it",
            )
        return lines[:-1]

    def _parsed(self, line: bytes) -> Entry:
        try:
            return parse_entry(line)
        except (ValueError, RecursionError) as error:
            raise LedgerError(self.name, len(self._entries), f"not a valid entry: {error}") from None


def append_signed(ledger: Ledger, draft: Entry, key: Ed25519PrivateKey) -> Entry:
    """``draft`` numbered and linked as the next entry of ``ledger``, signed with ``key`` and
    appended (checked like any entry).

    Raises:
        LedgerError: The entry fails a check (e.g. ``key`` is not its signer's).
    """
    entry = sign(replace(draft, index=len(ledger), previous=ledger.head()), key)
    ledger.append(entry)
    return entry


def replicate(source: Ledger, copy: Ledger) -> int:
    """Appends to ``copy`` the entries of ``source`` it lacks, each checked by ``copy``.

    Returns:
        How many entries were appended.

    Raises:
        LedgerError: ``copy`` holds a history ``source`` does not (they diverged), or ``copy``
            refuses an entry.
    """
    known = len(copy)
    if known > len(source) or (known and entry_hash(source.entries[known - 1]) != copy.head()):
        raise LedgerError(copy.name, None, f"diverges from '{source.name}'")
    for entry in source.entries[known:]:
        copy.append(entry)
    return len(source) - known


def divergence(reference: Ledger, copies: Mapping[str, Ledger]) -> list[str]:
    """One line per copy whose history is not the reference's: behind, ahead or forked."""
    lines = []
    for name, copy in sorted(copies.items()):
        common = _common_length(reference, copy)
        if common == len(reference) == len(copy):
            continue
        if common < min(len(reference), len(copy)):
            state = f"differs from entry {common} on"
        elif len(copy) < len(reference):
            state = f"lacks entries {len(copy)}-{len(reference) - 1}"
        else:
            state = f"holds entries {len(reference)}-{len(copy) - 1} that '{reference.name}' lacks"
        lines.append(f"'{name}' ({len(copy)} entries, head {copy.head()[:12]}) {state}")
    return lines


def _common_length(one: Ledger, other: Ledger) -> int:
    length = 0
    for mine, theirs in zip(one.entries, other.entries, strict=False):
        if mine != theirs:
            break
        length += 1
    return length


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
