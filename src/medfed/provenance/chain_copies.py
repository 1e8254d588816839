"""Copies of networked peers' chains, kept in step over the network.

A peer serves a chain it keeps (its own, or its copy of another peer's) as a ``ChainPage``:
the complete lines of the file from a position on, bounded in count and bytes, with the chain's
length and head (``read_page``). A peer that keeps a copy asks for the page that starts at its
copy's last entry and takes it in (``take_page``): the repeated entry must be the copy's own,
and every new entry is checked by the copy before it is appended (position, link, signed by the
chain's owner, a known and unrevoked signer, signature). Whatever a page holds, a copy never
loses an entry: a page that proves the owner rewrote its history raises ``ChainDiverged`` and
leaves the copy as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medfed.provenance.entries import GENESIS, Entry, entry_hash, parse_entry
from medfed.provenance.errors import ChainDiverged, LedgerError
from medfed.provenance.ledger import Ledger


@dataclass(frozen=True)
class ChainPage:
    """Entries of a chain from ``start`` on, as one peer keeps the chain.

    Attributes:
        start: The position of the first entry.
        entries: The entries' lines (canonical JSON, no newline), in order.
        length: How many entries the peer's chain holds.
        head: The hash of the peer's last entry (``GENESIS`` when it holds none).
    """

    start: int
    entries: tuple[bytes, ...]
    length: int
    head: str


def read_page(path: Path, start: int, *, max_entries: int, max_bytes: int) -> ChainPage:
    """The page of the chain in the file at ``path`` that starts at ``start``: its complete lines
    only (a line being appended is left for the next page), at most ``max_entries`` of them and
    ``max_bytes`` together. A missing file is an empty chain.

    Raises:
        LedgerError: The file cannot be read, or its last complete line is not an entry.
    """
    try:
        lines = path.read_bytes().split(b"\n")[:-1]
    except FileNotFoundError:
        lines = []
    except OSError as error:
        raise LedgerError(str(path), None, f"cannot read: {error}") from None
    entries: list[bytes] = []
    size = 0
    for line in lines[start : start + max_entries]:
        size += len(line)
        if size > max_bytes:
            break
        entries.append(line)
    return ChainPage(start, tuple(entries), len(lines), _head(path, lines))


def page_start(copy: Ledger) -> int:
    """Where the page to ask for starts: at the copy's last entry, which the page must repeat."""
    return max(len(copy) - 1, 0)


def take_page(copy: Ledger, page: ChainPage, *, source: str, owner: str) -> int:
    """Appends to ``copy`` (of ``owner``'s chain) the entries of ``page`` it lacks, each checked
    by the copy; ``page`` came from ``source`` (the owner, or a peer relaying its copy) and is
    hostile.

    Returns:
        How many entries were appended.

    Raises:
        ChainDiverged: ``page`` proves that ``owner`` rewrote the history the copy holds: it
            signed another entry at the copy's last position, or (``source`` being ``owner``) its
            chain is shorter than the copy. Nothing is appended.
        LedgerError: ``page`` is refused: not the page asked for, a malformed entry, an entry
            that fails the copy's checks (those before it are kept: each was checked), or a
            length and head that contradict its entries.
    """
    known = len(copy)
    if page.start != page_start(copy) or (page.entries and page.length < page.start + len(page.entries)):
        raise LedgerError(
            copy.name,
            None,
            f"{source} sent a page from entry {page.start} of {page.length}, not the one asked for",
        )
    if source == owner and page.length < known:
        raise ChainDiverged(
            copy.name,
            None,
            f"'{owner}' now holds {page.length} entries, the copy here {known}: it removed entries "
            "from its history (the copy here is kept)",
        )
    entries = [_parsed(copy, page.start + offset, line, source) for offset, line in enumerate(page.entries)]
    if entries and page.length == page.start + len(entries) and page.head != entry_hash(entries[-1]):
        raise LedgerError(copy.name, None, f"{source} sent a head that is not the one of its entries")
    if known and entries:
        _check_repeated(copy, entries.pop(0), source=source, owner=owner)
    for entry in entries:
        copy.append(entry)
    return len(entries)


def _check_repeated(copy: Ledger, entry: Entry, *, source: str, owner: str) -> None:
    """Checks that ``entry``, the page's first, is the copy's last entry; another entry that
    ``owner`` signed for that position is a fork."""
    if entry == copy.entries[-1]:
        return
    position = len(copy) - 1
    try:
        if entry.signer != owner or entry.index != position:
            raise ValueError(
                f"entry {entry.index} by '{entry.signer}' where entry {position} by '{owner}' was asked for"
            )
        copy.signers.check(entry)
    except ValueError as error:
        raise LedgerError(copy.name, position, f"{source} sent a bad entry: {error}") from None
    raise ChainDiverged(
        copy.name,
        position,
        f"'{owner}' signed two different entries {position}, the one here (head "
        f"{copy.head()[:12]}) and the one {source} sent (round {entry.round}, {entry.kind}): its "
        "chain forked (the copy here is kept)",
    )


def _parsed(copy: Ledger, position: int, line: bytes, source: str) -> Entry:
    try:
        return parse_entry(line)
    except (ValueError, RecursionError) as error:
        raise LedgerError(copy.name, position, f"{source} sent an invalid entry: {error}") from None


def _head(path: Path, lines: list[bytes]) -> str:
    if not lines:
        return GENESIS
    try:
        return entry_hash(parse_entry(lines[-1]))
    except (ValueError, RecursionError) as error:
        raise LedgerError(str(path), len(lines) - 1, f"not a valid entry: {error}") from None
