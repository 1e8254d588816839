"""``medfed client``: a site's loop. Ask for work, train with ``LocalSite``, send the result.

The site only opens connections (it pulls work). When the server is unreachable it retries with
exponential backoff and jitter; when it comes back the site receives the running round's task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc

from medfed.data import SiteData, build_dataset
from medfed.deployment.job import SiteJob, parse_site_job
from medfed.models import build_model
from medfed.orchestration.site import LocalSite
from medfed.strategies.registry import STRATEGIES
from medfed.training import LocalTrainer, TrainSettings
from medfed.transport.backoff import Backoff
from medfed.transport.client import Assignment, SiteChannel
from medfed.transport.errors import AuthenticationError, PayloadError, TransportError
from medfed.transport.serde import Kind

logger = logging.getLogger(__name__)

_FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


class SiteBuilder:
    """Builds the site's ``LocalSite`` from the job the server sends, with the same registries
    and trainer as ``medfed simulate``; rebuilt (fresh site state) if the job changes.

    Args:
        data: This site's cases (all used for training).
    """

    def __init__(self, data: SiteData) -> None:
        self.data = data
        self._job_json: str | None = None
        self._site: LocalSite | None = None

    def site_for(self, job_json: str) -> LocalSite:
        """The ``LocalSite`` for the job described by ``job_json``."""
        if self._site is None or job_json != self._job_json:
            self._site = build_local_site(self.data, parse_site_job(job_json))
            self._job_json = job_json
        return self._site


def build_local_site(data: SiteData, job: SiteJob) -> LocalSite:
    """A ``LocalSite`` training ``job``'s model with ``job``'s strategy on ``data``."""
    dataset = build_dataset(data.cases, task=job.task, augment=job.augment, seed=job.seed, site=data.name)
    return LocalSite(
        data.name,
        dataset,
        model=build_model(job.model.name, job.model.params, seed=job.seed),
        trainer=LocalTrainer(task=job.task, settings=TrainSettings(**job.training.model_dump())),
        strategy=STRATEGIES.create(job.strategy.name, **job.strategy.params),
        seed=job.seed,
    )


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
    trained, failures = 0, 0
    channel = connect()
    try:
        while True:
            try:
                answer = channel.fetch()
                if answer is Kind.DONE:
                    logger.info("the server says the job is done; %d rounds trained here", trained)
                    return trained
                if isinstance(answer, Assignment):
                    trained += _work(channel, builder, answer)
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


def _work(channel: SiteChannel, builder: SiteBuilder, assignment: Assignment) -> int:
    site = builder.site_for(assignment.job_json)
    logger.info("round %d: training", assignment.task.round)
    result = site.train(assignment.task)
    outcome = channel.submit(assignment.task_id, result)
    if outcome.accepted:
        logger.info("round %d: update accepted", assignment.task.round)
        return 1
    logger.warning("round %d: update refused: %s", assignment.task.round, outcome.reason)
    return 0


def _check_failure(error: Exception, failures: int, max_failures: int | None) -> None:
    if isinstance(error, grpc.RpcError) and error.code() in _FATAL:  # type: ignore[attr-defined]
        raise AuthenticationError(f"the server refused this site: {error.details()}")  # type: ignore[attr-defined]
    if max_failures is not None and failures >= max_failures:
        raise TransportError(f"giving up after {failures} failed attempts: {_describe(error)}")


def _describe(error: Exception) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"  # type: ignore[attr-defined]
    return str(error)
