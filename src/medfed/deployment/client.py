"""``medfed client``: a site's loop. Ask for work, train with ``LocalSite``, send the result (or,
in a secure or encrypted round, the protocol messages that stand in for it); after a round,
score the new global model on the cases held out of training and send the metrics.

The site only opens connections (it pulls work). When the server is unreachable it retries with
exponential backoff and jitter; when it comes back the site receives the running round's task.
A job weaker than the site's own privacy policy (``site_policy``) is declined task by task, with
the reason, and never trained for.
After ``max_failures`` failed calls in a row it gives up, naming the likely cause: the server
unreachable, its certificate not trusted, or this site's certificate refused (revoked, expired,
issued by another CA).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import grpc

from medfed.deployment.evaluation import EVALUATE, encode_metrics
from medfed.deployment.planning import FINGERPRINT
from medfed.deployment.provenance import SIGN as LEDGER_SIGN
from medfed.deployment.provenance import SYNC as LEDGER_SYNC
from medfed.deployment.provenance import SiteLedger, job_fingerprint
from medfed.deployment.site_builder import SiteBuilder
from medfed.errors import MedfedError, PolicyRefusal, PrivacyBudgetExceeded
from medfed.orchestration.grid import SiteProtocol
from medfed.orchestration.validation import non_finite_keys
from medfed.provenance import LedgerError
from medfed.provision.certs import read_certificate
from medfed.provision.errors import ProvisionError
from medfed.provision.gate import certified
from medfed.transport.backoff import DEFAULT_MAX_FAILURES, Backoff
from medfed.transport.client import FetchedStep, FetchedTask, SiteChannel
from medfed.transport.errors import AuthenticationError, PayloadError, TransportError
from medfed.transport.grid import decode_payload, encode_payload
from medfed.transport.payload import decode_task
from medfed.transport.protobuf import Kind, SubmitOutcome
from medfed.transport.tls import TlsFiles, probe_tls
from medfed.types import TrainTask

logger = logging.getLogger(__name__)

_FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}

BUSY_ATTEMPTS = 6
"""Tries of an upload the server refuses as busy before the site gives up on it (each try may
wait at the server for half its read timeout, then the site backs off)."""


def run_client(
    connect: Callable[[], SiteChannel],
    builder: SiteBuilder,
    *,
    backoff: Backoff | None = None,
    max_failures: int = DEFAULT_MAX_FAILURES,
    ledger: SiteLedger | None = None,
) -> int:
    """Works for the server until it says the job is done.

    Args:
        connect: Opens a new channel to the server (called again after every failure).
        builder: Builds the site from the job.
        backoff: Delays between failed attempts.
        max_failures: Consecutive failures after which to give up (0: never).
        ledger: The site's copy of the provenance ledger (``None``: it signs and keeps nothing).

    Returns:
        Number of rounds this site trained.

    Raises:
        AuthenticationError: The server refused this site, or its certificate is expired or
            not the project's.
        TransportError: ``max_failures`` consecutive calls failed; the message names the
            likely cause.
    """
    backoff = backoff or Backoff()
    worker = _Worker(builder, ledger)
    failures = 0
    channel = connect()
    try:
        while True:
            try:
                answer = channel.fetch()
                if answer is Kind.DONE:
                    logger.info("the server says the job is done; %d rounds trained here", worker.trained)
                    return worker.trained
                if isinstance(answer, FetchedTask):
                    worker.train(channel, answer)
                elif isinstance(answer, FetchedStep):
                    worker.step(channel, answer)
                failures = 0
                backoff.reset()
            except (grpc.RpcError, PayloadError) as error:
                failures += 1
                problem = _check_failure(channel, error, failures, max_failures)
                delay = backoff.next_delay()
                logger.warning("call failed: %s; retrying in %.1f s (failure %d)", problem, delay, failures)
                channel.close()
                time.sleep(delay)
                channel = connect()
    finally:
        channel.close()


class _Worker:
    """Trains for tasks, evaluates the global model and answers protocol steps; holds the
    protected round in progress."""

    def __init__(self, builder: SiteBuilder, ledger: SiteLedger | None = None) -> None:
        self.builder = builder
        self.ledger = ledger
        self.trained = 0
        self.protected: SiteProtocol | None = None

    def train(self, channel: SiteChannel, fetched: FetchedTask) -> None:
        task, task_id = fetched.task, fetched.task_id
        self.protected = None
        unusable = _unusable(task)
        if unusable:
            logger.error("round %d: not training: %s", task.round, unusable)
            channel.decline(task_id, task.round, unusable)
            return
        logger.info("round %d: training", task.round)
        try:
            result = self.builder.train(fetched.job_json, task)
        except (PolicyRefusal, PrivacyBudgetExceeded) as refusal:  # the site's own decision
            logger.warning("round %d: declining: %s", task.round, refusal)
            channel.decline(task_id, task.round, str(refusal))
            return
        except FloatingPointError as diverged:  # reported; the next round's model may be fine
            logger.error("round %d: %s", task.round, diverged)
            channel.decline(task_id, task.round, str(diverged))
            return
        try:
            self.protected = self.builder.protected_round(fetched, result)
            if self.protected is not None and self.ledger is not None:
                self.protected = self.ledger.protocol(task.round, self.protected)
            upload = None if self.protected is None else encode_payload(self.protected.upload())
        except (MedfedError, PayloadError) as error:
            logger.error("round %d: cannot take part in the protected round: %s", task.round, error)
            channel.decline(task_id, task.round, str(error))
            return
        if upload is None:
            outcome = send_when_admitted(functools.partial(channel.submit, task_id, result))
        else:
            outcome = send_when_admitted(functools.partial(channel.answer, task_id, task.round, upload))
        if outcome.accepted:
            logger.info("round %d: update accepted", task.round)
            if self.ledger is not None and upload is None:
                self.ledger.sent(result)
            self.builder.save_state()
            self.trained += 1
        else:
            logger.warning("round %d: update refused: %s", task.round, outcome.reason)

    def step(self, channel: SiteChannel, step: FetchedStep) -> None:
        if step.step == EVALUATE:  # after the round: outside any protected round's protocol
            self.evaluate(channel, step)
            return
        if step.step in (LEDGER_SIGN, LEDGER_SYNC):
            self.record(channel, step)
            return
        if step.step == FINGERPRINT:  # before round 1, for the study plan
            self.fingerprint(channel, step)
            return
        protected = self.protected
        if protected is None:
            channel.decline(
                step.task_id, step.round, f"no protected round in progress for step '{step.step}'"
            )
            return

        def answer() -> bytes:
            kind = protected.requests.get(step.step)
            if kind is None:
                raise PayloadError(f"unknown protocol step '{step.step}'")
            message = decode_payload(kind, step.message, site=self.builder.data.name)
            return encode_payload(protected.answer(step.step, message))

        _reply(channel, step, f"the reply to '{step.step}'", answer)

    def fingerprint(self, channel: SiteChannel, step: FetchedStep) -> None:
        sent = _reply(
            channel, step, "this site's fingerprint", lambda: self.builder.fingerprint(step.job_json)
        )
        if sent is not None:
            logger.info("sent this site's fingerprint for the study plan (%d bytes)", len(sent))

    def record(self, channel: SiteChannel, step: FetchedStep) -> None:
        """Signs this site's ledger entry, or checks and appends new entries to its copy."""

        def compute() -> bytes:
            if self.ledger is None:
                raise LedgerError(
                    self.builder.data.name, None, "this site keeps no ledger (no ledger.key in its kit)"
                )
            if step.step == LEDGER_SIGN:
                return self.ledger.sign(step.round, step.message)
            return self.ledger.sync(job_fingerprint(step.job_json), step.message)

        _reply(channel, step, f"the ledger's '{step.step}'", compute)

    def evaluate(self, channel: SiteChannel, step: FetchedStep) -> None:
        metrics: dict[str, float] = {}

        def compute() -> bytes:
            task = decode_task(step.message)
            if task.round != step.round:
                raise PayloadError(f"step round {step.round} differs from the model's round {task.round}")
            metrics.update(self.builder.evaluate(step.job_json, task))
            return encode_metrics(metrics)

        if _reply(channel, step, "metrics", compute) is not None:
            logger.info("round %d: evaluated the global model: %s", step.round, metrics)


def _reply(channel: SiteChannel, step: FetchedStep, what: str, compute: Callable[[], bytes]) -> bytes | None:
    """Answers ``step`` with ``compute()``, or declines it with the reason when this site cannot
    compute it (a ``MedfedError``: a hostile message, a policy refusal); logs a refused reply.

    Args:
        channel: The channel the step came on.
        step: The step to answer.
        what: What the reply is, for the log.
        compute: Computes the reply.

    Returns:
        The reply, when the server accepted it.
    """
    try:
        reply = compute()
    except MedfedError as error:
        logger.warning("round %d: not sending %s: %s", step.round, what, error)
        channel.decline(step.task_id, step.round, str(error))
        return None
    outcome = channel.answer(step.task_id, step.round, reply)
    if not outcome.accepted:
        logger.warning("round %d: %s refused: %s", step.round, what, outcome.reason)
        return None
    return reply


def send_when_admitted(
    send: Callable[[], SubmitOutcome], *, backoff: Backoff | None = None, attempts: int = BUSY_ATTEMPTS
) -> SubmitOutcome:
    """``send()``, again after a pause while the server refuses it as busy (``RESOURCE_EXHAUSTED``:
    other uploads fill its memory budget), so that a trained update is not lost and trained again.

    Raises:
        grpc.RpcError: Another failure, or still busy after ``attempts`` tries.
    """
    backoff = backoff or Backoff()
    tries = 1
    while True:
        try:
            return send()
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED or tries >= attempts:
                raise
        delay = backoff.next_delay()
        logger.info("the server is busy receiving other uploads; sending again in %.1f s", delay)
        time.sleep(delay)
        tries += 1


def _unusable(task: TrainTask) -> str:
    """Why the global model of ``task`` cannot be trained from (a NaN or an infinity), or ``""``."""
    bad = non_finite_keys(task.weights, task.extra)
    return f"the global model of round {task.round} is not finite in {bad[:5]}" if bad else ""


def _check_failure(channel: SiteChannel, error: Exception, failures: int, max_failures: int) -> str:
    """The likely cause of a failed call; raises when the site should give up."""
    if isinstance(error, grpc.RpcError) and error.code() in _FATAL:
        raise AuthenticationError(f"the server refused this site: {error.details()}")
    problem = _describe(channel, error)
    if 0 < max_failures <= failures:
        raise TransportError(f"giving up after {failures} failed calls in a row: {problem}")
    return problem


def _describe(channel: SiteChannel, error: Exception) -> str:
    """What went wrong, for the site's operator. gRPC reports an unreachable server and a
    refused TLS handshake alike (``UNAVAILABLE``); this site's own certificate, then a TLS
    handshake of its own, tell them apart."""
    if not isinstance(error, grpc.RpcError):
        return str(error)
    if error.code() is not grpc.StatusCode.UNAVAILABLE or channel.tls is None:
        return f"{error.code().name}: {error.details()}"
    check_certificate(channel.tls)
    return probe_tls(channel.target, channel.tls, server_name=channel.server_name)


def check_certificate(files: TlsFiles) -> None:
    """Checks this site's certificate against its kit's CA.

    Raises:
        AuthenticationError: The certificate is expired, not yet valid, not a site
            certificate, or not issued by the kit's CA; the message says which file.
    """
    try:
        certified(files.certificate.read_bytes(), read_certificate(files.ca_certificate), client=True)
    except (OSError, ProvisionError, AuthenticationError) as error:
        raise AuthenticationError(
            f"this site's certificate {files.certificate} is unusable ({error}): ask the project for a new startup kit"
        ) from None
