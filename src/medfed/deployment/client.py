"""``medfed client``: a site's loop. Ask for work, train with ``LocalSite``, send the result (or,
in a secure or encrypted round, the protocol messages that stand in for it); after a round,
score the new global model on the cases held out of training and send the metrics.

The site only opens connections (it pulls work). When the server is unreachable it retries with
exponential backoff and jitter; when it comes back the site receives the running round's task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

import grpc

from medfed.deployment.evaluation import EVALUATE, encode_metrics
from medfed.deployment.protected_site import ProtectedRound
from medfed.deployment.site_builder import SiteBuilder
from medfed.errors import MedfedError, PrivacyBudgetExceeded
from medfed.orchestration.validation import non_finite_keys
from medfed.transport.backoff import Backoff
from medfed.transport.client import Assignment, SiteChannel, Step
from medfed.transport.codec import decode_task
from medfed.transport.errors import AuthenticationError, PayloadError, TransportError
from medfed.transport.serde import Kind
from medfed.types import TrainTask

logger = logging.getLogger(__name__)

_FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


def run_client(
    connect: Callable[[], SiteChannel],
    builder: SiteBuilder,
    *,
    backoff: Backoff | None = None,
    max_failures: int | None = None,
) -> int:
    """Works for the server until it says the job is done.

    Args:
        connect: Opens a new channel to the server (called again after every failure).
        builder: Builds the site from the job.
        backoff: Delays between failed attempts.
        max_failures: Consecutive failures after which to give up (``None``: never).

    Returns:
        Number of rounds this site trained.

    Raises:
        AuthenticationError: The server refused this site's certificate.
        TransportError: ``max_failures`` consecutive calls failed.
    """
    backoff = backoff or Backoff()
    worker = _Worker(builder)
    failures = 0
    channel = connect()
    try:
        while True:
            try:
                answer = channel.fetch()
                if answer is Kind.DONE:
                    logger.info("the server says the job is done; %d rounds trained here", worker.trained)
                    return worker.trained
                if isinstance(answer, Assignment):
                    worker.train(channel, answer)
                elif isinstance(answer, Step):
                    worker.step(channel, answer)
                failures = 0
                backoff.reset()
            except (grpc.RpcError, PayloadError) as error:
                failures += 1
                _check_failure(error, failures, max_failures)
                delay = backoff.next_delay()
                logger.warning("server unreachable (%s); retrying in %.1f s", _describe(error), delay)
                channel.close()
                time.sleep(delay)
                channel = connect()
    finally:
        channel.close()


class _Worker:
    """Trains for tasks, evaluates the global model and answers protocol steps; holds the
    protected round in progress."""

    def __init__(self, builder: SiteBuilder) -> None:
        self.builder = builder
        self.trained = 0
        self.protected: ProtectedRound | None = None

    def train(self, channel: SiteChannel, assignment: Assignment) -> None:
        task, task_id = assignment.task, assignment.task_id
        self.protected = None
        unusable = _unusable(task)
        if unusable:
            logger.error("round %d: not training: %s", task.round, unusable)
            channel.decline(task_id, task.round, unusable)
            return
        site = self.builder.site_for(assignment.job_json)
        logger.info("round %d: training", task.round)
        try:
            result = site.train(task)
        except PrivacyBudgetExceeded as spent:  # the site's own decision: it sits the round out
            channel.decline(task_id, task.round, str(spent))
            return
        except FloatingPointError as diverged:  # reported; the next round's model may be fine
            logger.error("round %d: %s", task.round, diverged)
            channel.decline(task_id, task.round, str(diverged))
            return
        epsilon = getattr(site.trainer, "epsilon", None)  # DP-SGD: reported with the result
        if epsilon is not None:
            result = replace(result, metrics={**result.metrics, "epsilon": float(epsilon)})
        try:
            self.protected = self.builder.protected_round(assignment, result)
            upload = None if self.protected is None else self.protected.upload()
        except (MedfedError, PayloadError) as error:
            logger.error("round %d: cannot take part in the protected round: %s", task.round, error)
            channel.decline(task_id, task.round, str(error))
            return
        if upload is None:
            outcome = channel.submit(task_id, result)
        else:
            outcome = channel.answer(task_id, task.round, upload)
        if outcome.accepted:
            logger.info("round %d: update accepted", task.round)
            self.builder.save_state()
            self.trained += 1
        else:
            logger.warning("round %d: update refused: %s", task.round, outcome.reason)

    def step(self, channel: SiteChannel, step: Step) -> None:
        if step.step == EVALUATE:  # after the round: outside any protected round's protocol
            self.evaluate(channel, step)
            return
        if self.protected is None:
            channel.decline(step.task_id, step.round, f"no protected round in progress for step '{step.step}'")
            return
        try:
            reply = self.protected.answer(step.step, step.message)
        except (MedfedError, PayloadError) as error:
            logger.warning("round %d: refusing step '%s': %s", step.round, step.step, error)
            channel.decline(step.task_id, step.round, str(error))
            return
        outcome = channel.answer(step.task_id, step.round, reply)
        if not outcome.accepted:
            logger.warning("round %d: reply to '%s' refused: %s", step.round, step.step, outcome.reason)

    def evaluate(self, channel: SiteChannel, step: Step) -> None:
        try:
            task = decode_task(step.message)
            if task.round != step.round:
                raise PayloadError(f"step round {step.round} differs from the model's round {task.round}")
            metrics = self.builder.evaluate(step.job_json, task)
        except (MedfedError, PayloadError) as error:
            logger.warning("round %d: not evaluating: %s", step.round, error)
            channel.decline(step.task_id, step.round, str(error))
            return
        outcome = channel.answer(step.task_id, step.round, encode_metrics(metrics))
        if outcome.accepted:
            logger.info("round %d: evaluated the global model: %s", step.round, metrics)
        else:
            logger.warning("round %d: metrics refused: %s", step.round, outcome.reason)


def _unusable(task: TrainTask) -> str:
    """Why the global model of ``task`` cannot be trained from (a NaN or an infinity), or ``""``."""
    bad = non_finite_keys(task.weights, task.extra)
    return f"the global model of round {task.round} is not finite in {bad[:5]}" if bad else ""


def _check_failure(error: Exception, failures: int, max_failures: int | None) -> None:
    if isinstance(error, grpc.RpcError) and error.code() in _FATAL:  # type: ignore[attr-defined]
        raise AuthenticationError(f"the server refused this site: {error.details()}")  # type: ignore[attr-defined]
    if max_failures is not None and failures >= max_failures:
        raise TransportError(f"giving up after {failures} failed attempts: {_describe(error)}")


def _describe(error: Exception) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"  # type: ignore[attr-defined]
    return str(error)
