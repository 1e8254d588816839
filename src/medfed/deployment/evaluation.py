"""Federated evaluation in a deployment: after a round, sites score the new global model on
cases they held out of training and send back only the metrics.

The server posts an ``EVALUATE`` step of the round just aggregated, carrying the global weights
encoded like a task, to the sites it heard from recently. Each site loads the model it would
train from (``strategy.site_model``: under FedBN with its own norm layers), scores it with
``medfed.training.evaluate`` (the MONAI metrics ``medfed simulate`` reports) and answers with a
small JSON object of metrics, which the server decodes strictly: known names for the job's
task, finite numbers within the metric's range, at most ``MAX_REPLY_BYTES``. The step follows
the round's protocol (plain, secure or CKKS) and is no part of it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
from torch import nn

from medfed.data import SiteData, build_dataset, split_cases
from medfed.deployment.job import SiteJob
from medfed.errors import DataError, UpdateRejected
from medfed.models import build_model
from medfed.privacy.setup import prepare_model
from medfed.training import evaluate_cases
from medfed.transport.board import Accept, RoundBoard
from medfed.transport.errors import PayloadError
from medfed.transport.payload import encode_task
from medfed.types import ServerState, Task, TrainTask, Weights

logger = logging.getLogger(__name__)

EVALUATE = "evaluate"
"""The name of the evaluation step (server and sites both use this constant)."""

DEFAULT_HOLDOUT = 0.2
"""Fraction of a site's cases it keeps out of training to evaluate on (``--holdout``)."""

MAX_REPLY_BYTES = 4096
"""Largest metrics reply the server reads."""

METRIC_RANGES: Mapping[Task, Mapping[str, tuple[float, float]]] = {
    "segmentation": {"dice": (0.0, 1.0), "hd95": (0.0, math.inf)},
    "classification": {name: (0.0, 1.0) for name in ("accuracy", "auc", "sensitivity", "specificity")},
}
"""The metrics a site may report per task, with their ranges (HD95 in voxels)."""

SiteMetrics = dict[str, dict[str, float]]
"""Each answering site's metrics, by site."""


# ----- the wire payload ------------------------------------------------------------------------
def encode_metrics(metrics: Mapping[str, float]) -> bytes:
    """``metrics`` as UTF-8 JSON; undefined (non-finite) values, e.g. Dice over held-out cases
    without a lesion, are left out."""
    defined = {name: float(value) for name, value in metrics.items() if math.isfinite(value)}
    return json.dumps(defined, sort_keys=True).encode()


def decode_metrics(payload: bytes, *, task: Task) -> dict[str, float]:
    """The metrics encoded by ``encode_metrics``, checked against ``METRIC_RANGES[task]``.

    Raises:
        PayloadError: Not a JSON object of known metric names mapped to finite numbers within
            their ranges.
    """
    try:
        value = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise PayloadError(f"metrics are not JSON: {error}") from None
    if not isinstance(value, dict):
        raise PayloadError(f"metrics must be a JSON object, got {type(value).__name__}")
    ranges = METRIC_RANGES[task]
    return {name: _checked(name, number, ranges) for name, number in value.items()}


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a metric value")


def _checked(name: str, number: object, ranges: Mapping[str, tuple[float, float]]) -> float:
    if name not in ranges:
        raise PayloadError(f"unknown metric '{name}'; valid names: {', '.join(sorted(ranges))}")
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise PayloadError(f"metric '{name}' must be a number, got {number!r}")
    low, high = ranges[name]
    value = float(number) if abs(number) < 1e300 else math.inf  # float() overflows on huge ints
    if not (math.isfinite(value) and low <= value <= high):
        raise PayloadError(f"metric '{name}' = {str(number)[:24]} is outside [{low}, {high}]")
    return value


def accept_metrics(task: Task) -> Accept:
    """Accepts a site's metrics reply; a malformed one is refused and counts as its answer
    (the site is not asked again in this step)."""

    def accept(site: str, payload: bytes) -> dict[str, float]:
        try:
            return decode_metrics(payload, task=task)
        except PayloadError as error:
            raise UpdateRejected(site, f"metrics: {error}") from None

    return accept


# ----- the server's half -----------------------------------------------------------------------
class SiteEvaluation:
    """Asks the sites to evaluate a new global model and collects their metrics.

    Args:
        board: The running job's board (free between rounds).
        sites: The job's sites.
        task: The job's task (which metrics are valid).
        timeout_s: How long to wait for the answers.
        seen_within_s: Only sites heard from this recently are asked, so a site that is down
            does not hold every evaluation up for ``timeout_s``.
    """

    def __init__(
        self, board: RoundBoard, *, sites: Sequence[str], task: Task, timeout_s: float, seen_within_s: float
    ) -> None:
        self.board, self.sites, self.task = board, list(sites), task
        self.timeout_s, self.seen_within_s = timeout_s, seen_within_s

    def __call__(self, state: ServerState) -> SiteMetrics:
        """Each answering site's metrics of ``state.weights``; sites that decline, answer
        badly or miss the deadline are absent."""
        asked = self.reachable()
        if not asked:
            return {}
        payload = encode_task(TrainTask(round=state.round, weights=state.weights))
        self.board.post_step(
            state.round,
            EVALUATE,
            dict.fromkeys(asked, payload),
            accept=accept_metrics(self.task),
            reply_limit=MAX_REPLY_BYTES,
        )
        metrics: SiteMetrics = self.board.collect(self.timeout_s)
        logger.info("round %d: evaluated at %s (asked %s)", state.round, sorted(metrics), asked)
        return metrics

    def reachable(self) -> list[str]:
        """The job's sites heard from within the last ``seen_within_s`` seconds."""
        last_seen: Mapping[str, float] = self.board.snapshot()["last_seen"]  # type: ignore[assignment]
        recent = time.time() - self.seen_within_s
        return [site for site in self.sites if last_seen.get(site, -math.inf) >= recent]


# ----- the site's half -------------------------------------------------------------------------
def holdout_split(data: SiteData, fraction: float, seed: int) -> tuple[SiteData, SiteData]:
    """A site's ``(training, held-out)`` cases: ``split_cases`` with the job's seed, so the same
    cases are held out at every restart; none when ``fraction`` is 0 or the site has fewer
    than two cases.

    Raises:
        ValueError: ``fraction`` is not in ``[0, 1)``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return data, replace(data, cases=())
    return split_cases(data, fraction, seed)


class HeldOutEvaluator:
    """A site's held-out cases and a model of the job's architecture to score on them.

    Args:
        held_out: The cases this site keeps out of training (may be empty).
        job: The job (task, model, batch size, rounds).
    """

    def __init__(self, held_out: SiteData, job: SiteJob) -> None:
        self.site, self.job = held_out.name, job
        self.num_cases = len(held_out.cases)
        self.dataset = build_dataset(
            held_out.cases,
            task=job.task,
            augment=False,
            seed=job.seed,
            site=held_out.name,
            preprocessing=job.preprocessing.settings(job.model),
        )
        self._model: nn.Module | None = None

    def evaluate(self, weights: Weights, round: int) -> dict[str, float]:
        """The defined metrics of ``weights`` on the held-out cases (HD95 after the last round
        only, as in simulation). Leaves the global RNG untouched.

        Raises:
            DataError: No case is held out, or no metric is defined on them.
        """
        if self.num_cases == 0:
            raise DataError(
                self.site, None, "no held-out cases to evaluate on (--holdout 0, or fewer than 2 cases)"
            )
        model = self.model()
        model.load_state_dict(weights)
        with torch.random.fork_rng(devices=[]):
            metrics, _ = evaluate_cases(
                model,
                self.dataset,
                task=self.job.task,
                batch_size=self.job.training.batch_size,
                surface_distance=round == self.job.federation.rounds,
            )
        defined = {name: value for name, value in metrics.items() if math.isfinite(value)}
        if not defined:
            raise DataError(
                self.site,
                None,
                f"no metric is defined on the {self.num_cases} held-out cases (e.g. no lesion)",
            )
        return defined

    def model(self) -> nn.Module:
        """The evaluation model, apart from the one the site trains."""
        if self._model is None:
            job = self.job
            self._model = prepare_model(
                job.privacy.plan(), build_model(job.model.name, job.model.params, seed=job.seed)
            )
        return self._model
