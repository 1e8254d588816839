"""The meeting point of the round loop and the gRPC servicer: posted tasks, arriving results.

The loop posts a round's tasks and collects results until every asked site has answered or the
deadline passes; the servicer hands tasks to polling sites and files their results. Each posting
gets a fresh ``task_id``, so a result computed for an earlier posting (e.g. before a server
restart) is stale and refused, and no update is counted twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from medfed.errors import UpdateRejected
from medfed.orchestration.validation import validate_result
from medfed.transport.codec import encode_task
from medfed.types import TrainResult, TrainTask, Weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offer:
    """A task ready for one site: its round, posting id and encoded bytes."""

    round: int
    task_id: str
    payload: bytes


DONE = "done"
"""Returned by ``RoundBoard.offer`` once the run has finished."""


@dataclass
class _Posting:
    round: int
    task_id: str
    payloads: dict[str, bytes]
    references: dict[str, Weights]
    results: dict[str, TrainResult] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)

    def complete(self) -> bool:
        return self.answered >= set(self.payloads)


class RoundBoard:
    """Thread-safe state of the running round.

    Args:
        max_update_bytes: Largest accepted update; by default three times the task's encoded
            size plus 16 MiB (room for strategy extras such as SCAFFOLD's control variates).
    """

    def __init__(self, *, max_update_bytes: int | None = None) -> None:
        self.max_update_bytes = max_update_bytes
        self._lock = threading.Condition()
        self._posting: _Posting | None = None
        self._finished = False
        self._last_seen: dict[str, float] = {}
        self._told_done: set[str] = set()

    # ----- round loop side -------------------------------------------------------------------
    def post(self, round: int, tasks: Mapping[str, TrainTask]) -> None:
        """Opens ``round`` with one task per asked site (encoding each distinct task once)."""
        encoded: dict[int, bytes] = {}
        payloads = {
            site: encoded.setdefault(id(task), encode_task(task)) for site, task in tasks.items()
        }
        references = {site: task.weights for site, task in tasks.items()}
        with self._lock:
            self._posting = _Posting(round, uuid.uuid4().hex, payloads, references)
            self._lock.notify_all()

    def collect(self, timeout_s: float) -> list[TrainResult]:
        """Waits until every asked site answered or ``timeout_s`` passed, then closes the round.

        Returns:
            The accepted results, in the order the tasks were posted.
        """
        with self._lock:
            posting = self._posting
            if posting is None:
                return []
            self._lock.wait_for(posting.complete, timeout=timeout_s)
            self._posting = None
            missing = sorted(set(posting.payloads) - posting.answered)
        if missing:
            logger.warning("round %d: no answer from %s before the deadline", posting.round, missing)
        return [posting.results[site] for site in posting.payloads if site in posting.results]

    def finish(self) -> None:
        """Marks the run finished: polling sites are told they are done."""
        with self._lock:
            self._finished = True
            self._posting = None
            self._lock.notify_all()

    def wait_told_done(self, sites: Iterable[str], timeout_s: float) -> bool:
        """After ``finish``: waits until every one of ``sites`` was told so, or ``timeout_s``."""
        expected = set(sites)
        with self._lock:
            return self._lock.wait_for(lambda: expected <= self._told_done, timeout=timeout_s)

    # ----- servicer side ---------------------------------------------------------------------
    def offer(self, site: str, timeout_s: float) -> Offer | str | None:
        """Waits up to ``timeout_s`` for work for ``site``.

        Returns:
            The site's task, ``DONE`` when the run has finished, or ``None`` (ask again).
        """
        with self._lock:
            self._last_seen[site] = time.time()
            self._lock.wait_for(lambda: self._finished or self._open_for(site), timeout=timeout_s)
            if self._finished:
                self._told_done.add(site)
                self._lock.notify_all()
                return DONE
            posting = self._posting
            if posting is None or not self._open_for(site):
                return None
            return Offer(posting.round, posting.task_id, posting.payloads[site])

    def update_limit(self, site: str) -> int:
        """The largest update ``site`` may send now, in bytes."""
        if self.max_update_bytes is not None:
            return self.max_update_bytes
        with self._lock:
            payload = self._posting.payloads.get(site, b"") if self._posting else b""
        return 3 * len(payload) + 16 * 1024 * 1024

    def submit(self, task_id: str, result: TrainResult) -> None:
        """Validates ``result`` and files it for aggregation.

        Raises:
            UpdateRejected: The result answers no open task of its site (stale, unasked or
                second answer), or it fails ``validate_result``; a failed validation counts as
                the site's answer for the round.
        """
        site = result.site
        with self._lock:
            self._last_seen[site] = time.time()
            posting = self._posting
            if posting is None or posting.task_id != task_id:
                raise UpdateRejected(site, f"stale: answers a task of round {result.round} that is closed")
            if site not in posting.payloads or site in posting.answered:
                raise UpdateRejected(site, f"no open task for this site in round {posting.round}")
            reference = posting.references[site]
        try:
            validate_result(result, reference, round=posting.round)
        except UpdateRejected:
            self._answer(posting, site, None)
            raise
        self._answer(posting, site, result)

    def snapshot(self) -> dict[str, object]:
        """The running round, asked and answered sites, and each site's last contact (epoch s)."""
        with self._lock:
            posting = self._posting
            return {
                "finished": self._finished,
                "round_open": posting.round if posting else None,
                "asked": sorted(posting.payloads) if posting else [],
                "answered": sorted(posting.answered) if posting else [],
                "last_seen": dict(self._last_seen),
            }

    def _answer(self, posting: _Posting, site: str, result: TrainResult | None) -> None:
        with self._lock:
            if self._posting is not posting:
                raise UpdateRejected(site, f"arrived after round {posting.round} closed")
            if site in posting.answered:
                raise UpdateRejected(site, f"second update in round {posting.round}")
            posting.answered.add(site)
            if result is not None:
                posting.results[site] = result
            self._lock.notify_all()

    def _open_for(self, site: str) -> bool:
        posting = self._posting
        return posting is not None and site in posting.payloads and site not in posting.answered
