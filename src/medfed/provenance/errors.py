"""The provenance ledger's errors."""

from __future__ import annotations

from medfed.errors import MedfedError
from medfed.text import printable


class LedgerError(MedfedError):
    """A ledger file cannot be read, or an entry fails a check.

    Args:
        where: The ledger (a file, or a site's copy) at fault.
        index: The entry at fault (``None``: the whole ledger).
        reason: What is wrong; escaped and bounded, since entries come from other parties.
    """

    def __init__(self, where: str, index: int | None, reason: str) -> None:
        self.where, self.index, self.reason = where, index, printable(reason, 500)
        entry = "" if index is None else f", entry {index}"
        super().__init__(f"ledger '{where}'{entry}: {self.reason}")


class ChainDiverged(LedgerError):
    """A peer's chain is not the history a copy of it holds: its owner signed two different
    entries for one position, or now holds fewer entries than the copy (it rewrote history)."""
