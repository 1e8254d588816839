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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import tenseal as ts

from medfed.config.loading import build_strategy
from medfed.data.study_plan import save_plan
from medfed.deployment.evaluation import SiteEvaluation, SiteMetrics
from medfed.deployment.job import JobConfig, site_job_json
from medfed.deployment.planning import planned_job
from medfed.deployment.provenance import LedgerKeys, ServerLedger, keep_signers, ledger_folder
from medfed.deployment.report import keep_job, write_job_report
from medfed.deployment.status import HISTORY_LENGTH, RoundSummary, ServerStatus, summarise, write_status
from medfed.models import build_model
from medfed.orchestration.checkpoint import model_metadata
from medfed.orchestration.driver import (
    RecordedCallback,
    RoundRecorder,
    RowSource,
    RunRecords,
    absence_rows,
    privacy_rows,
)
from medfed.orchestration.grid import Absence
from medfed.orchestration.loop import RoundPlan, run_rounds
from medfed.orchestration.metrics_log import MetricRow, MetricsLog, Split
from medfed.orchestration.recording import DigestingGrid
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
        ledger: The server's provenance-ledger key and the signer list (``None``: no ledger).
    """

    state_dir: Path
    address: str
    sites: list[str]
    tls: TlsFiles | None
    authenticate: Authenticator | None
    gzip: bool = False
    ckks_context: ts.Context | None = None
    ledger: LedgerKeys | None = None


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
    grid = DigestingGrid(
        GrpcGrid(board, round_timeout_s=job.round_timeout_s, step_timeout_s=job.step_timeout_s)
    )
    servicer = FederationServicer(
        board, sites=sites, job_json=site_job_json(job), authenticate=settings.authenticate, poll_s=job.poll_s
    )
    credentials = None if settings.tls is None else server_credentials(settings.tls)
    return_freed_memory()  # the memory of a burst of uploads goes back to the OS after it
    server, port = start_server(
        servicer, address=settings.address, credentials=credentials, gzip=settings.gzip
    )
    study = None
    if job.preprocessing.plan == "auto":
        try:
            job, study = planned_job(job, board, sites, timeout_s=job.round_timeout_s)
        except BaseException:
            server.stop(grace=0)
            raise
        servicer.job_json = site_job_json(job)
    keep_job(settings.state_dir, job)
    if study is not None:
        save_plan(study, settings.state_dir)
    records = RunRecords(
        job.name,
        MetricsLog(settings.state_dir),
        settings.state_dir / "checkpoints",
        metadata={"job": job.name, **model_metadata(job.model.name, job.model.params)},
        keep_last=job.federation.keep_last,
    )
    state = initial_state(job, strategy, records)
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
        ledger = _server_ledger(job, settings, board, evaluation.reachable, protected=grid.take)
        recorder = round_recorder(
            job,
            strategy,
            records,
            evaluation,
            after=[reporter.completed],
            ledger=ledger,
            absences=board.absences,
        )
        state = run_rounds(
            strategy,
            state,
            plan,
            grid,
            recorder,
            max_attempts=job.max_round_attempts,
            collect=collect,
            absences=board.absence_log,
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


def _server_ledger(
    job: JobConfig,
    settings: ServerSettings,
    board: RoundBoard,
    reachable: Callable[[], list[str]],
    *,
    protected: Callable[[], dict[str, str]],
) -> ServerLedger | None:
    """The job's provenance ledger (``None`` when the job keeps none, or without ledger keys,
    e.g. ``--insecure``); ``protected`` gives the digests of what each site sent in a secure or
    encrypted round."""
    if not job.provenance:
        return None
    if settings.ledger is None:
        logger.warning("no ledger key in the server's kit: this job keeps no provenance ledger")
        return None
    keep_signers(settings.state_dir, settings.ledger)
    folder = ledger_folder(settings.state_dir, job.name)
    return ServerLedger(
        board,
        folder,
        settings.ledger,
        timeout_s=job.step_timeout_s,
        reachable=reachable,
        protected=protected,
    )


def initial_state(job: JobConfig, strategy: Strategy, records: RunRecords) -> ServerState:
    """The state ``records`` resume from, or the strategy's initial state."""
    resumed = records.resume()
    if resumed is not None:
        return resumed.server
    model = prepare_model(job.privacy.plan(), build_model(job.model.name, job.model.params, seed=job.seed))
    return strategy.init(cpu_weights(model))


def round_recorder(
    job: JobConfig,
    strategy: Strategy,
    records: RunRecords,
    evaluate: Callable[[ServerState], SiteMetrics],
    after: Sequence[RecordedCallback] = (),
    ledger: ServerLedger | None = None,
    absences: Callable[[int], Mapping[str, Absence]] | None = None,
) -> RoundRecorder:
    """Records each round of ``job``: its training rows, the server's ``client_epsilon`` under
    client-level DP, in the provenance ``ledger`` (when kept, before the sites are asked for
    anything else), the sites' held-out scores when ``federation.evaluate_every`` says so
    (``evaluate`` asks them), the sites that dropped out (``absences(round)``, ``Split.PARTICIPATION``); then the
    checkpoint; then ``after``."""
    evaluation = _evaluation_rows(job, evaluate)
    privacy = privacy_rows(job.name, job.privacy.plan(), strategy)
    sources = [privacy if ledger is None else ledger.recording(privacy), evaluation]
    if absences is not None:
        sources.append(absence_rows(job.name, absences))
    return RoundRecorder(records, sources=sources, after=after)


def _evaluation_rows(job: JobConfig, evaluate: Callable[[ServerState], SiteMetrics]) -> RowSource:
    """The sites' scores of a round's global model on their held-out cases (``Split.EVAL``)."""

    def rows(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
        if not job.federation.evaluates_after(state.round):
            return []
        return [
            MetricRow(job.name, state.round, site, Split.EVAL, name, value)
            for site, metrics in evaluate(state).items()
            for name, value in metrics.items()
        ]

    return rows


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

    def completed(self, state: ServerState, results: list[TrainResult], rows: list[MetricRow]) -> None:
        """A recorded round: the mean training metrics of its results and the mean of the
        sites' held-out scores (``eval_<metric>``) join the history."""
        logger.info("round %d done with %s", state.round, [result.site for result in results])
        evaluated: dict[str, dict[str, float]] = {}
        for row in rows:
            if row.split == Split.EVAL:
                evaluated.setdefault(row.site, {})[row.metric] = row.value
        summary = summarise(state.round, [r.site for r in results], [r.metrics for r in results])
        means = summarise(state.round, list(evaluated), list(evaluated.values())).metrics
        self._add(replace(summary, metrics={**summary.metrics, **_prefixed("eval_", means)}))

    def _add(self, summary: RoundSummary) -> None:
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
                rejected=self.board.rejections(),
                updated=time.time(),
            )
            write_status(self.state_dir, self.status)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.write()
