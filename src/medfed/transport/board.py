"""The meeting point of the round loop and the gRPC servicer: posted work, arriving answers.

The loop posts a round's tasks and collects results until every asked site has answered or the
deadline passes; the servicer hands tasks to polling sites and files their answers. Protected
rounds (secure aggregation, CKKS) post further steps of the same round: one protocol message
per site, one reply each. Each posting gets a fresh ``task_id``, so an answer computed for an
earlier posting (e.g. before a server restart) is stale and refused, and no update is counted
twice.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medfed.errors import UpdateRejected
from medfed.orchestration.grid import Absence, AbsenceLog
from medfed.orchestration.validation import checked_result
from medfed.text import printable
from medfed.transport.errors import PayloadError
from medfed.transport.payload import decode_result, encode_task
from medfed.types import TrainResult, TrainTask, Weights

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostedTask:
    """One site's task as the board hands it out: an encoded ``TrainTask``, or a protocol
    step's message.

    Attributes:
        round: The round.
        task_id: The posting's id, echoed by the answer.
        payload: The encoded task, or the step's protocol message.
        step: ``""`` for a training task, else the protocol step (e.g. ``"secagg/unmask"``).
        protocol: A protocol message that goes with a task (e.g. a secure-aggregation invitation).
    """

    round: int
    task_id: str
    payload: bytes
    step: str = ""
    protocol: bytes = b""


Accept = Callable[[str, bytes], Any]
"""Decodes and checks one site's answer: ``accept(site, payload)`` -> the value the loop gets;
raises ``PayloadError`` or ``UpdateRejected`` to refuse it."""

DONE = "done"
"""Returned by ``RoundBoard.task_for`` once the run has finished."""

MAX_REASON_CHARS = 200
"""Longest decline reason the board keeps and logs (a site's text is cut to one short line)."""


@dataclass
class _PostedTasks:
    """The open posting: each asked site's encoded task (or step message) and the answers;
    ``in_round``: a site that misses it has dropped out of the round (``absences``)."""

    round: int
    task_id: str
    step: str
    payloads: dict[str, bytes]
    protocol: dict[str, bytes]
    accept: Accept
    reply_limit: int | None
    in_round: bool = True
    results: dict[str, Any] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)

    def complete(self) -> bool:
        return self.answered >= set(self.payloads)


class RoundBoard:
    """Thread-safe state of the running round.

    Args:
        max_update_bytes: Largest accepted answer; by default the posting's own limit, else
            three times the task's encoded size plus 16 MiB (room for strategy extras such as
            SCAFFOLD's control variates).

    Attributes:
        absence_log: Who dropped out of the latest round and why (see ``absences``); the round
            loop marks the updates its own validation rejects there too.
    """

    def __init__(self, *, max_update_bytes: int | None = None) -> None:
        self.max_update_bytes = max_update_bytes
        self._lock = threading.Condition()
        self._posting: _PostedTasks | None = None
        self._finished = False
        self._last_seen: dict[str, float] = {}
        self._told_done: set[str] = set()
        self._declines: dict[str, str] = {}
        self._rejections: dict[str, str] = {}
        self.absence_log = AbsenceLog()

    # ----- round loop side -------------------------------------------------------------------
    def post(
        self,
        round: int,
        tasks: Mapping[str, TrainTask],
        *,
        protocol: Mapping[str, bytes] | None = None,
        accept: Accept | None = None,
        reply_limit: int | None = None,
    ) -> None:
        """Opens ``round`` with one task per asked site (encoding each distinct task once).

        Args:
            round: The round.
            tasks: Each asked site's task.
            protocol: A protocol message per site that goes with its task.
            accept: Decodes a site's answer; by default a ``CheckedResult``: a ``TrainResult``
                that ``validate_result`` passes against the site's task.
            reply_limit: Largest answer in bytes (default: see ``max_update_bytes``).
        """
        encoded: dict[int, bytes] = {}
        payloads = {site: encoded.setdefault(id(task), encode_task(task)) for site, task in tasks.items()}
        accept = accept or accept_train_result(round, {site: task.weights for site, task in tasks.items()})
        self.absence_log.start(round)  # a round tried again starts afresh
        self._open(_PostedTasks(round, _new_id(), "", payloads, dict(protocol or {}), accept, reply_limit))

    def post_step(
        self,
        round: int,
        step: str,
        messages: Mapping[str, bytes],
        *,
        accept: Accept,
        reply_limit: int,
        in_round: bool = False,
    ) -> None:
        """Opens a protocol ``step`` of ``round``: one encoded message per site, one reply each.
        ``in_round``: the step is part of the round's aggregate (secure aggregation, CKKS), so a
        site that misses it has dropped out of the round; steps after it (evaluation, ledger)
        are not."""
        if not step:
            raise ValueError("a protocol step needs a name")
        self._open(_PostedTasks(round, _new_id(), step, dict(messages), {}, accept, reply_limit, in_round))

    def collect(self, timeout_s: float) -> dict[str, Any]:
        """Waits until every asked site answered or ``timeout_s`` passed, then closes the posting.

        Returns:
            Each accepted answer by site, in the order the work was posted.
        """
        with self._lock:
            posting = self._posting
            if posting is None:
                return {}
            self._lock.wait_for(posting.complete, timeout=timeout_s)
            self._posting = None
            missing = sorted(set(posting.payloads) - posting.answered)
        if missing:
            step = f" ({posting.step})" if posting.step else ""
            logger.warning("round %d%s: no answer from %s before the deadline", posting.round, step, missing)
            for site in missing:
                self._absent(posting, site, Absence.NO_ANSWER)
        return {site: posting.results[site] for site in posting.payloads if site in posting.results}

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
    def task_for(self, site: str, timeout_s: float) -> PostedTask | str | None:
        """Waits up to ``timeout_s`` for work for ``site``.

        Returns:
            The site's work, ``DONE`` when the run has finished, or ``None`` (ask again).
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
            return PostedTask(
                posting.round,
                posting.task_id,
                posting.payloads[site],
                step=posting.step,
                protocol=posting.protocol.get(site, b""),
            )

    def update_limit(self, site: str) -> int:
        """The largest answer ``site`` may send now, in bytes."""
        if self.max_update_bytes is not None:
            return self.max_update_bytes
        with self._lock:
            posting = self._posting
            if posting is not None and posting.reply_limit is not None:
                return posting.reply_limit
            payload = posting.payloads.get(site, b"") if posting else b""
        return 3 * len(payload) + 16 * 1024 * 1024

    def receive(self, site: str, task_id: str, payload: bytes) -> Any:
        """Decodes, checks and files ``site``'s answer to the posting ``task_id``.

        Returns:
            The accepted value.

        Raises:
            UpdateRejected: The answer is to no open posting of the site (stale, unasked or a
                second answer), or the posting's ``accept`` refused it or raised anything but
                ``PayloadError``; a refused answer counts as the site's answer for the posting.
            PayloadError: The posting's ``accept`` could not decode it; the site may answer
                again.
        """
        posting = self._open_posting(site, task_id)
        try:
            value = posting.accept(site, payload)
        except PayloadError:
            raise
        except UpdateRejected as rejection:
            self._reject(posting, site, rejection.reason)
            raise
        except Exception as error:  # whatever a site's bytes raise, it is this site's bad answer
            failure = printable(f"{type(error).__name__}: {error}", MAX_REASON_CHARS)
            logger.warning(
                "round %d: reading the answer of site '%s' failed: %s", posting.round, site, failure
            )
            reason = f"unreadable answer ({type(error).__name__})"
            self._reject(posting, site, reason)
            raise UpdateRejected(site, reason) from None
        self._answer(posting, site, value)
        return value

    def decline(self, site: str, task_id: str, reason: str) -> None:
        """Records that ``site`` will not answer the posting ``task_id`` (e.g. its privacy
        budget is spent, or the job is weaker than its privacy policy), so the round does not
        wait for it. The reason is the site's text: it is logged and kept escaped on one line and
        cut to ``MAX_REASON_CHARS`` (``printable``)."""
        posting = self._open_posting(site, task_id)
        line = printable(reason, MAX_REASON_CHARS)
        logger.warning("round %d: site '%s' declined: %s", posting.round, site, line)
        with self._lock:
            self._declines[site] = f"{_where(posting)}: {line}"
        self._answer(posting, site, None)
        self._absent(posting, site, Absence.DECLINED)

    def declines(self) -> dict[str, str]:
        """Each site's latest decline: ``"round <r>[ (<step>)]: <reason>"``."""
        with self._lock:
            return dict(self._declines)

    def rejections(self) -> dict[str, str]:
        """Each site's latest answer refused for an open posting (it fails validation, or is
        unreadable): ``"round <r>[ (<step>)]: <reason>"``. Answers to no open posting (stale,
        unasked) are logged only."""
        with self._lock:
            return dict(self._rejections)

    def absences(self, round: int) -> dict[str, Absence]:
        """The sites asked in ``round`` (its latest try) that took no part, and why: the first
        of their postings (task, protocol steps) they missed, declined or answered with a
        refused answer (here or in the round loop). Empty for any round but the latest posted."""
        return self.absence_log(round)

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

    def _reject(self, posting: _PostedTasks, site: str, reason: str) -> None:
        """Files ``site``'s refused answer as its answer for ``posting``, and remembers why."""
        self._answer(posting, site, None)
        with self._lock:
            self._rejections[site] = f"{_where(posting)}: {printable(reason, MAX_REASON_CHARS)}"
        self._absent(posting, site, Absence.REJECTED)

    def _absent(self, posting: _PostedTasks, site: str, why: Absence) -> None:
        if posting.in_round:
            self.absence_log.mark(posting.round, site, why)

    def _open(self, posting: _PostedTasks) -> None:
        with self._lock:
            self._posting = posting
            self._lock.notify_all()

    def _open_posting(self, site: str, task_id: str) -> _PostedTasks:
        with self._lock:
            self._last_seen[site] = time.time()
            posting = self._posting
            if posting is None or posting.task_id != task_id:
                raise UpdateRejected(site, "stale: answers a task or step that is closed")
            if site not in posting.payloads or site in posting.answered:
                raise UpdateRejected(site, f"no open task for this site in round {posting.round}")
            return posting

    def _answer(self, posting: _PostedTasks, site: str, value: Any) -> None:
        with self._lock:
            if self._posting is not posting:
                raise UpdateRejected(site, f"arrived after round {posting.round} closed")
            if site in posting.answered:
                raise UpdateRejected(site, f"second update in round {posting.round}")
            posting.answered.add(site)
            if value is not None:
                posting.results[site] = value
            self._lock.notify_all()

    def _open_for(self, site: str) -> bool:
        posting = self._posting
        return posting is not None and site in posting.payloads and site not in posting.answered


def _where(posting: _PostedTasks) -> str:
    """``round <r>``, and `` (<step>)`` for a protocol step."""
    return f"round {posting.round}" + (f" ({posting.step})" if posting.step else "")


def _new_id() -> str:
    return uuid.uuid4().hex


def accept_train_result(round: int, references: Mapping[str, Weights]) -> Accept:
    """Accepts a ``TrainResult`` of ``round`` that ``validate_result`` passes against the
    answering site's reference weights (those of its task), as a ``CheckedResult``: the round
    loop does not check its values again."""

    def accept(site: str, payload: bytes) -> TrainResult:
        return checked_result(decode_result(payload, site=site), references[site], round=round)

    return accept
