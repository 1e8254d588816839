"""Who took part in a peer-to-peer round. A topology may ask a site to train several times in
one round (BrainTorrent's pulls, the cyclic model's stops), so a round's drop-outs are gathered
over all its trainings, then written as ``Split.PARTICIPATION`` rows like a client-server
round's (``medfed.orchestration.driver.absence_rows``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from medfed.orchestration.grid import Absence, AbsenceLog, Grid, RelayGrid
from medfed.types import TrainResult, TrainTask


class MarkingGrid(Grid, Protocol):
    """A grid that marks its sites' drop-outs (``InMemoryGrid``, ``RayGrid``)."""

    absences: AbsenceLog


class AttendanceGrid(RelayGrid):
    """A grid that notes, over one peer-to-peer round, the sites asked to train that brought
    no accepted update, and why.

    Args:
        inner: The grid that reaches the sites.
    """

    def __init__(self, inner: MarkingGrid) -> None:
        super().__init__(inner)
        self.marking = inner
        self._absent: dict[str, Absence] = {}
        self._answered: set[str] = set()

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        if not tasks:
            return []
        training = next(iter(tasks.values())).round  # one training number per call
        self.marking.absences.start(training)
        results = self.inner.train(tasks)
        answered = {result.site for result in results}
        marked = self.marking.absences(training)
        for site in tasks.keys() - answered:
            self._absent.setdefault(site, marked.get(site, Absence.NO_ANSWER))
        self._answered |= answered
        return results

    def settle(self, accepted: Iterable[TrainResult]) -> dict[str, Absence]:
        """The round's drop-outs given its ``accepted`` updates: a site that answered but had
        every update refused (the topology validates them) was ``rejected``; a site with an
        accepted update took part. Starts the next round afresh."""
        kept = {result.site for result in accepted}
        absent = {site: Absence.REJECTED for site in self._answered - kept}
        absent.update(self._absent)
        self._absent, self._answered = {}, set()
        return {site: why for site, why in absent.items() if site not in kept}
