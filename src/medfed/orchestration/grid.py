"""How the round loop reaches sites: the ``Grid`` seam, and its in-memory implementation.

A grid delivers work to named sites and gathers their answers (cf. Flower's ``Grid``). It
offers two kinds of exchange:

- ``train(tasks)``: each site trains on its task and answers with its update (a plain round).
- ``train_protected(tasks, invitations, reply)`` then ``step(round, step, messages, reply)``: each
  site trains and answers with its protocol ``upload`` instead of its weights; further protocol
  steps post one message per site and gather one reply each. This is how secure aggregation and
  CKKS (``medfed.privacy``) are written once, over any grid.

A site that misses a deadline, declines, or answers with a refused reply is simply absent from
the returned answers: it has dropped out. The site side of a protected round is a
``SiteProtocol``; both the in-memory grid and the gRPC client (``medfed.deployment.client``)
drive the same objects.

This module is the seam: it imports nothing of the loop, of privacy or of transport, so every
one of them may depend on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from medfed.errors import MedfedError, PrivacyBudgetExceeded
from medfed.orchestration.site import LocalSite
from medfed.types import SiteState, TrainResult, TrainTask

logger = logging.getLogger(__name__)


class Absence(StrEnum):
    """Why a site asked in a round took no part in it (its drop-out).

    Attributes:
        NO_ANSWER: No answer before the deadline.
        DECLINED: The site declined (its privacy budget or policy).
        REJECTED: Its answer was refused (validation, unreadable).
    """

    NO_ANSWER = "no_answer"
    DECLINED = "declined"
    REJECTED = "rejected"


class AbsenceLog:
    """The sites asked in the latest try of the latest round that took no part, and why (the
    first reason each): what a simulation's grid and round loop mark, and its ``Split.PARTICIPATION``
    rows are read from (``medfed.orchestration.driver.absence_rows``), as a deployment's board
    and round loop do. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._round, self._absent = 0, dict[str, Absence]()

    def start(self, round: int) -> None:
        """Starts a try of ``round`` afresh (a round tried again forgets its earlier try)."""
        with self._lock:
            self._round, self._absent = round, {}

    def mark(self, round: int, site: str, why: Absence) -> None:
        """Records that ``site`` took no part in ``round`` (ignored for another round)."""
        with self._lock:
            if round == self._round:
                self._absent.setdefault(site, why)

    def __call__(self, round: int) -> dict[str, Absence]:
        """The absent sites of ``round`` and why; empty for any round but the latest."""
        with self._lock:
            return dict(self._absent) if round == self._round else {}


@dataclass(frozen=True)
class Reply:
    """What a protocol exchange expects back from each site.

    Attributes:
        kind: The reply's type (a protocol message dataclass, or ``TrainResult``).
        check: Raises ``UpdateRejected`` (or ``MedfedError``) for a reply the server refuses,
            e.g. one that signs as another client; a refused reply is a drop-out.
        limit: Largest reply in bytes on a wire (ignored in memory).
    """

    kind: type
    check: Callable[[str, Any], None] | None = None
    limit: int = 16 * 1024 * 1024


class SiteProtocol(Protocol):
    """A site's half of one protected round, after it trained.

    Attributes:
        requests: The message type the server sends in each protocol step, by step name.
    """

    requests: Mapping[str, type]

    def upload(self) -> object:
        """The answer to the training task, in place of the trained weights."""
        ...

    def answer(self, step: str, message: object) -> object:
        """The reply to the server's ``message`` of protocol ``step``.

        Raises:
            MedfedError: The message is out of order, of another session or forged.
        """
        ...


OpenProtocol = Callable[[TrainTask, object, TrainResult], SiteProtocol]
"""``open(task, invitation, result)``: a site's ``SiteProtocol`` for the round of ``task``, from
the server's invitation (``None`` when the protection has none) and the site's trained result."""


class Grid(Protocol):
    """Delivers work to sites and gathers their answers; see the module docstring."""

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Runs each site's task and returns the updates that arrived."""
        ...

    def train_protected(
        self, tasks: Mapping[str, TrainTask], invitations: Mapping[str, object], reply: Reply
    ) -> dict[str, object]:
        """Runs each site's task (with its invitation, if any) and returns each answering
        site's protocol upload, by site."""
        ...

    def step(self, round: int, step: str, messages: Mapping[str, object], reply: Reply) -> dict[str, object]:
        """Posts protocol ``step`` of ``round`` (one message per site); returns the accepted
        replies by site."""
        ...


class RelayGrid:
    """A grid that hands all work to ``inner``; a subclass overrides what it watches.

    Args:
        inner: The grid that reaches the sites.
    """

    def __init__(self, inner: Grid) -> None:
        self.inner = inner

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        return self.inner.train(tasks)

    def train_protected(
        self, tasks: Mapping[str, TrainTask], invitations: Mapping[str, object], reply: Reply
    ) -> dict[str, object]:
        return self.inner.train_protected(tasks, invitations, reply)

    def step(self, round: int, step: str, messages: Mapping[str, object], reply: Reply) -> dict[str, object]:
        return self.inner.step(round, step, messages, reply)


Collect = Callable[[Grid, Mapping[str, TrainTask]], list[TrainResult]]
"""How a round's results are gathered over a grid: in the clear (``train_in_clear``) or as one
protected aggregate (``medfed.privacy``'s secure and encrypted sums)."""


Tamper = Callable[[Mapping[str, TrainTask], list[TrainResult]], list[TrainResult]]
"""``tamper(tasks, results) -> results``: a simulation hook on what the sites send."""


def train_in_clear(grid: Grid, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
    """The sites' individual updates, as the grid delivers them."""
    return grid.train(tasks)


class InMemoryGrid:
    """Sites in this process (``LocalSite`` objects), run one after another.

    Args:
        sites: The simulated sites by name.
        open_protocol: Builds a site's ``SiteProtocol`` in protected rounds (``None``: plain
            rounds only).
        on_site_done: Called with each site's name after it trained (e.g. a progress bar).
        tamper: Replaces some sites' results before they leave the sites, in plain and protected
            rounds alike (the attack simulator's malicious sites); ``None``: none.
        absences: Where the sites that drop out are marked (``None``: a log of its own).
    """

    def __init__(
        self,
        sites: Mapping[str, LocalSite],
        *,
        open_protocol: OpenProtocol | None = None,
        on_site_done: Callable[[str], None] | None = None,
        tamper: Tamper | None = None,
        absences: AbsenceLog | None = None,
    ) -> None:
        self.sites = dict(sites)
        self.absences = AbsenceLog() if absences is None else absences
        self.open_protocol = open_protocol
        self.on_site_done = on_site_done
        self.tamper = tamper
        self._parties: dict[str, SiteProtocol] = {}

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        results = [result for name, task in tasks.items() if (result := self._train(name, task)) is not None]
        return results if self.tamper is None else self.tamper(tasks, results)

    def train_protected(
        self, tasks: Mapping[str, TrainTask], invitations: Mapping[str, object], reply: Reply
    ) -> dict[str, object]:
        return self.open_protocols(tasks, invitations, self.train(tasks), reply)

    def open_protocols(
        self,
        tasks: Mapping[str, TrainTask],
        invitations: Mapping[str, object],
        results: list[TrainResult],
        reply: Reply,
    ) -> dict[str, object]:
        """The second half of ``train_protected``: each site of ``results`` (trained on its task
        of ``tasks``) opens its half of the protected round and uploads; a site that cannot take
        part has dropped out. Replaces the parties of an earlier round."""
        if self.open_protocol is None:
            raise ValueError("this grid runs plain rounds only: give it open_protocol")
        self._parties = {}
        uploads = {}
        for result in results:
            name, task = result.site, tasks[result.site]
            try:
                party = self.open_protocol(task, invitations.get(name), result)
                uploads[name] = self._checked(task.round, name, party.upload(), reply)
            except MedfedError as error:  # the site cannot take part: a drop-out
                logger.warning("round %d: site '%s' left the protected round: %s", task.round, name, error)
                self.absences.mark(task.round, name, Absence.NO_ANSWER)
                continue
            self._parties[name] = party
        return {name: upload for name, upload in uploads.items() if upload is not None}

    def step(self, round: int, step: str, messages: Mapping[str, object], reply: Reply) -> dict[str, object]:
        replies = {}
        for name, message in messages.items():
            party = self._parties.get(name)
            if party is None:
                continue
            try:
                answer = self._checked(round, name, party.answer(step, message), reply)
            except MedfedError as error:
                logger.warning("round %d (%s): site '%s' dropped out: %s", round, step, name, error)
                self.absences.mark(round, name, Absence.NO_ANSWER)
                self._parties.pop(name)
                continue
            if answer is not None:
                replies[name] = answer
        return replies

    def _train(self, name: str, task: TrainTask) -> TrainResult | None:
        try:
            return self.sites[name].train(task)
        except PrivacyBudgetExceeded as declined:  # the site's own decision: a drop-out
            logger.warning("round %d: %s", task.round, declined)
            self.absences.mark(task.round, name, Absence.DECLINED)
            return None
        finally:
            if self.on_site_done is not None:
                self.on_site_done(name)

    def _checked(self, round: int, site: str, answer: object, reply: Reply) -> object | None:
        """``checked_answer``; a refused answer marks ``site`` rejected in ``round``."""
        checked = checked_answer(site, answer, reply)
        if checked is None:
            self.absences.mark(round, site, Absence.REJECTED)
        return checked

    def site_states(self) -> dict[str, SiteState]:
        """Each site's private state now: the part later rounds read (``Strategy.private_state``),
        what a simulation checkpoints after a round."""
        return {name: site.strategy.private_state(site.state) for name, site in self.sites.items()}


def checked_answer(site: str, answer: object, reply: Reply) -> object | None:
    """``answer`` if it is a ``reply.kind`` that ``reply.check`` passes, else ``None`` (logged)."""
    if not isinstance(answer, reply.kind):
        logger.warning(
            "site '%s' answered with a %s, expected %s", site, type(answer).__name__, reply.kind.__name__
        )
        return None
    if reply.check is not None:
        try:
            reply.check(site, answer)
        except MedfedError as refused:
            logger.warning("%s", refused)
            return None
    return answer
