"""The study plan of a deployed job (``preprocessing.plan: auto``), before round 1.

The server posts a ``FINGERPRINT`` step of round 0 to every site of the job. Each site answers
with its fingerprint (``medfed.data.fingerprint``) over its training cases, as UTF-8 JSON of at
most ``MAX_REPLY_BYTES``; the server reads each reply as hostile (``Fingerprint.from_dict``), and
a refused reply counts as the site's answer. With every site's fingerprint the server plans the
study (``medfed.data.study_plan``) and sends the planned job with every later task: the
planned preprocessing, and the model's ``spatial_dims``, ``in_channels`` and ``out_channels``
where the job does not set them. No image leaves a site.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from medfed.data import SiteData
from medfed.data.fingerprint import Fingerprint, fingerprint_site
from medfed.data.study_plan import StudyPlan, plan_study
from medfed.deployment.job import JobConfig, SiteJob
from medfed.errors import ConfigError, DataError, UpdateRejected
from medfed.transport.board import RoundBoard

logger = logging.getLogger(__name__)

FINGERPRINT = "fingerprint"
"""The name of the fingerprint step (server and sites both use this constant)."""

MAX_REPLY_BYTES = 16 * 1024
"""Largest fingerprint reply the server reads (one channel takes about 400 bytes)."""


# ----- the site's half -------------------------------------------------------------------------
def site_fingerprint(train: SiteData, job: SiteJob) -> bytes:
    """The reply of a site whose training cases are ``train``: its fingerprint as JSON."""
    fingerprint = fingerprint_site(train, task=job.task, seed=job.seed)
    return json.dumps(fingerprint.to_dict(), sort_keys=True).encode()


# ----- the server's half -----------------------------------------------------------------------
def accept_fingerprint(site: str, payload: bytes) -> Fingerprint:
    """Reads ``site``'s reply; a malformed one is refused (``UpdateRejected``)."""
    try:
        record = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
        return Fingerprint.from_dict(record, site=site)
    except (UnicodeDecodeError, ValueError) as error:
        raise UpdateRejected(site, f"fingerprint is not JSON: {error}") from None
    except DataError as error:
        raise UpdateRejected(site, error.reason) from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def planned_job(
    job: JobConfig, board: RoundBoard, sites: Sequence[str], *, timeout_s: float
) -> tuple[JobConfig, StudyPlan]:
    """Asks every site for its fingerprint and returns ``job`` with the plan applied, and the plan.

    Raises:
        ConfigError: A site sent no usable fingerprint within ``timeout_s``.
        DataError: Sites disagree in channels or dimensionality (naming the site).
    """
    board.post_step(
        0, FINGERPRINT, dict.fromkeys(sites, b"{}"), accept=accept_fingerprint, reply_limit=MAX_REPLY_BYTES
    )
    received = board.collect(timeout_s)
    missing = [site for site in sites if site not in received]
    if missing:
        raise ConfigError(
            f"preprocessing.plan auto: no usable fingerprint from site(s) {missing} within "
            f"{timeout_s:g} s; every site must answer before round 1 (see the server's and the sites' logs)"
        )
    settings = job.preprocessing
    plan = plan_study(
        [received[site] for site in sites],
        task=job.task,
        size_multiple=settings.settings(job.model).divisible_by,
        modalities=settings.modalities,
        max_patch_voxels=settings.max_patch_voxels,
    )
    logger.info("study plan: %s", "; ".join(f"{what}: {value}" for what, value in plan.rows()))
    shape = {
        "spatial_dims": plan.spatial_dims,
        "in_channels": plan.channels,
        "out_channels": plan.num_classes,
    }
    model = job.model.model_copy(update={"params": {**shape, **job.model.params}})
    planned = job.model_copy(update={"preprocessing": settings.planned(plan), "model": model})
    return planned, plan
