"""``medfed server``: the round loop of a deployed job, with sites reached over gRPC.

The server resumes from its last checkpoint, so a killed server restarted with the same command
loses no completed round; each round is checkpointed (atomically) before the next one starts.
After a round, when ``federation.evaluate_every`` says so, the sites evaluate the new global
model on their held-out cases and the server records their metrics with the round's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import tenseal as ts

from medfed.config.loading import build_strategy
from medfed.data.study_plan import save_plan
from medfed.deployment.evaluation import SiteEvaluation, SiteMetrics
from medfed.deployment.job import JobConfig, site_job_json
from medfed.deployment.planning import planned_job
from medfed.deployment.report import keep_job, write_job_report
from medfed.deployment.status import HISTORY_LENGTH, RoundSummary, ServerStatus, summarise, write_status
from medfed.models import build_model
from medfed.orchestration.checkpoint import (
    Checkpoint,
    latest_checkpoint,
    load_checkpoint,
    model_metadata,
    save_round,
)
from medfed.orchestration.loop import RoundPlan, run_rounds
from medfed.orchestration.metrics_log import MetricRow, MetricsLog
from medfed.orchestration.site import cpu_weights
from medfed.privacy.setup import expected_sites, prepare_model, protect
from medfed.strategies.base import Strategy
from medfed.transport.board import RoundBoard
from medfed.transport.grid import GrpcGrid
from medfed.transport.limits import return_freed_memory
from medfed.transport.server import Authenticator, FederationServicer, start_server
from medfed.transport.tls import TlsFiles, server_credentials
from medfed.types import ServerState, TrainResult

logger = logging.getLogger(__name__)

STOP_GRACE_S = 1.0
"""Seconds open calls get to finish when the server stops; then they are cancelled."""
STOP_WAIT_S = 10.0
"""Longest wait, after the grace, for the gRPC server to stop."""


@dataclass(frozen=True)
class ServerSettings:
    """Where and how the server runs (the job says what it runs).

    Attributes:
        state_dir: Checkpoints, metrics and ``status.json``.
        address: ``host:port`` to listen on (port 0 picks a free one).
        sites: Sites allowed to take part.
        tls: The server's certificate, key and CA; ``None`` runs in plain text (``--insecure``).
        authenticate: Client-certificate check (required with ``tls``).
        gzip: Compress outgoing messages.
        ckks_context: The keyless CKKS context of the server's kit (jobs with encryption).
    """

    state_dir: Path
    address: str
    sites: list[str]
    tls: TlsFiles | None
    authenticate: Authenticator | None
    gzip: bool = False
    ckks_context: ts.Context | None = None


def run_server(job: JobConfig, settings: ServerSettings) -> ServerState:
    """Serves ``job`` until its last round is completed; returns the final state."""
    if (settings.tls is None) != (settings.authenticate is None):
        raise ValueError("tls and authenticate go together: both set, or both None (insecure)")
    sites = sorted(job.sites or settings.sites)
    federation = job.federation
    strategy, collect = protect(
        job.privacy.plan(),
        build_strategy(job.strategy),
        expected_sites=expected_sites(
            len(sites), fraction=federation.fraction, min_sites=federation.min_sites
        ),
        seed=job.seed,
        ckks_context=settings.ckks_context,
    )
    board = RoundBoard()
    grid = GrpcGrid(board, round_timeout_s=job.round_timeout_s, step_timeout_s=job.step_timeout_s)
    metrics = MetricsLog(settings.state_dir)
    servicer = FederationServicer(
        board, sites=sites, job_json=site_job_json(job), authenticate=settings.authenticate, poll_s=job.poll_s
    )
    credentials = None if settings.tls is None else server_credentials(settings.tls)
    return_freed_memory()  # the memory of a burst of uploads goes back to the OS after it
    server, port = start_server(
        servicer, address=settings.address, credentials=credentials, gzip=settings.gzip
    )
    if job.preprocessing.plan == "auto":
        try:
            job, study = planned_job(job, board, sites, timeout_s=job.round_timeout_s)
        except BaseException:
            server.stop(grace=0)
            raise
        save_plan(study, settings.state_dir)
        servicer.job_json = site_job_json(job)
    keep_job(settings.state_dir, job)
    state = initial_state(job, strategy, settings.state_dir, metrics)
    logger.info(
        "medfed server listening on port %d (round %d of %d done)", port, state.round, job.federation.rounds
    )
    reporter = _StatusReporter(settings.state_dir, job, port, board, state.round)
    reporter.start()
    try:
        plan = RoundPlan(
            rounds=job.federation.rounds,
            sites=sites,
            fraction=job.federation.fraction,
            min_sites=min(job.federation.min_sites, len(sites)),
            seed=job.seed,
        )
        evaluation = SiteEvaluation(
            board, sites=sites, task=job.task, timeout_s=job.step_timeout_s, seen_within_s=2 * job.poll_s + 1
        )
        recorder = _RoundRecorder(job, strategy, settings.state_dir, metrics, reporter, evaluation)
        state = run_rounds(
            strategy, state, plan, grid, recorder, max_attempts=job.max_round_attempts, collect=collect
        )
        board.finish()
        reporter.finish()
        logger.info("report: %s", write_job_report(settings.state_dir))
        board.wait_told_done(sites, timeout_s=job.poll_s + 5)
    finally:
        reporter.stop()
        if not server.stop(grace=STOP_GRACE_S).wait(timeout=STOP_WAIT_S):
            logger.warning(
                "gRPC server still stopping after %.0f s; exiting anyway", STOP_GRACE_S + STOP_WAIT_S
            )
    return state


def initial_state(job: JobConfig, strategy: Strategy, state_dir: Path, metrics: MetricsLog) -> ServerState:
    """The last checkpointed state in ``state_dir``, or the strategy's initial state."""
    latest = latest_checkpoint(state_dir / "checkpoints")
    if latest is None:
        metrics.discard_after(job.name, 0)
        model = prepare_model(
            job.privacy.plan(), build_model(job.model.name, job.model.params, seed=job.seed)
        )
        return strategy.init(cpu_weights(model))
    state = load_checkpoint(latest).server
    metrics.discard_after(job.name, state.round)
    logger.info("resuming after round %d from %s", state.round, latest)
    return state


class _RoundRecorder:
    """After each round: the sites' evaluation when due, then metrics, then the checkpoint (a
    crash in between replays the round, and ``record_round`` replaces its rows), then the
    status. Training rows hold each result's metrics and ``num_samples``; evaluation rows have
    kind ``eval``. Under client-level DP the server's ``client_epsilon`` joins the metrics
    (site ``server``, kind ``privacy``)."""

    def __init__(
        self,
        job: JobConfig,
        strategy: Strategy,
        state_dir: Path,
        metrics: MetricsLog,
        reporter: _StatusReporter,
        evaluate: Callable[[ServerState], SiteMetrics],
    ) -> None:
        self.job, self.strategy, self.state_dir = job, strategy, state_dir
        self.metrics, self.reporter, self.evaluate = metrics, reporter, evaluate

    def __call__(self, state: ServerState, results: list[TrainResult]) -> None:
        evaluated = self.evaluate(state) if self.job.federation.evaluates_after(state.round) else {}
        rows = _training_rows(self.job.name, state.round, results)
        rows += [
            MetricRow(self.job.name, state.round, site, "eval", name, value)
            for site, metrics in evaluated.items()
            for name, value in metrics.items()
        ]
        if self.job.privacy.client_dp is not None:
            from medfed.privacy.dp.config import privacy_metrics  # imports Opacus: only when on

            spent = privacy_metrics(self.job.privacy.plan(), {}, self.strategy, state)
            rows += [
                MetricRow(self.job.name, state.round, site, "privacy", name, value)
                for site, name, value in spent
            ]
        self.metrics.record_round(self.job.name, state.round, rows)
        metadata = {
            "job": self.job.name,
            "participants": ",".join(r.site for r in results),
            **model_metadata(self.job.model.name, self.job.model.params),
        }
        checkpoint = Checkpoint(state, metadata=metadata)
        save_round(self.state_dir / "checkpoints", checkpoint, keep_last=self.job.federation.keep_last)
        logger.info("round %d done with %s", state.round, [result.site for result in results])
        summary = summarise(state.round, [r.site for r in results], [r.metrics for r in results])
        means = summarise(state.round, list(evaluated), list(evaluated.values())).metrics
        self.reporter.completed(replace(summary, metrics={**summary.metrics, **_prefixed("eval_", means)}))


def _training_rows(job: str, round: int, results: list[TrainResult]) -> list[MetricRow]:
    """Each result's metrics and ``num_samples``; a DP site's ``epsilon`` has kind ``privacy``."""
    return [
        MetricRow(job, round, result.site, "privacy" if name == "epsilon" else "train", name, value)
        for result in results
        for name, value in {**result.metrics, "num_samples": float(result.num_samples)}.items()
    ]


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {prefix + name: value for name, value in metrics.items()}


class _StatusReporter:
    """Rewrites ``status.json`` every second from the board and the completed rounds."""

    def __init__(self, state_dir: Path, job: JobConfig, port: int, board: RoundBoard, round: int) -> None:
        self.state_dir, self.board = state_dir, board
        self.poll_s = job.poll_s
        self.status = ServerStatus(
            job=job.name, port=port, completed_rounds=round, total_rounds=job.federation.rounds
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status", daemon=True)

    def start(self) -> None:
        self.write()
        self._thread.start()

    def completed(self, summary: RoundSummary) -> None:
        with self._lock:
            history = [*self.status.history, summary][-HISTORY_LENGTH:]
            self.status = replace(self.status, completed_rounds=summary.round, history=history)
        self.write()

    def finish(self) -> None:
        with self._lock:
            self.status = replace(self.status, finished=True)
        self.write()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.write()

    def write(self) -> None:
        snapshot = self.board.snapshot()
        recent = time.time() - 2 * self.poll_s - 5
        last_seen: dict[str, float] = snapshot["last_seen"]  # type: ignore[assignment]
        with self._lock:
            self.status = replace(
                self.status,
                running_round=snapshot["round_open"],  # type: ignore[arg-type]
                waiting_for=sorted(set(snapshot["asked"]) - set(snapshot["answered"])),  # type: ignore[call-overload]
                connected=sorted(site for site, seen in last_seen.items() if seen >= recent),
                declined=self.board.declines(),
                updated=time.time(),
            )
            write_status(self.state_dir, self.status)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.write()
