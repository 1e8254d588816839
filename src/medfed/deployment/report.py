"""The HTML report of a deployed job, from the server's state directory.

The server keeps a copy of its job (``job.yaml``) next to the metrics, writes ``report.html``
when the job finishes, and ``medfed report --state-dir`` rewrites it at any time (mid-run too).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from medfed.deployment.job import JobConfig, load_job
from medfed.deployment.status import STATUS_FILE, read_status
from medfed.errors import ConfigError
from medfed.files import atomic_write
from medfed.orchestration.metrics_log import MetricsLog
from medfed.report.html import DeploymentRun, write_report
from medfed.report.settings import settings_yaml
from medfed.report.summary import PRIMARY_METRIC

JOB_FILE, REPORT_FILE = "job.yaml", "report.html"


def keep_job(state_dir: Path, job: JobConfig) -> None:
    """Writes the job the server runs to ``state_dir/job.yaml`` (atomically)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(state_dir / JOB_FILE, yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False).encode())


def write_job_report(state_dir: Path) -> Path:
    """Writes ``state_dir/report.html`` from the kept job, the metrics and ``status.json`` (when
    there is one: finished or not, the sites' latest declines and rejected updates); returns its
    path.

    Raises:
        ConfigError: ``state_dir`` holds no job kept by ``medfed server``.
    """
    if not (state_dir / JOB_FILE).is_file():
        raise ConfigError(f"'{state_dir}' is not the state dir of a medfed server (no {JOB_FILE})")
    job = load_job(state_dir / JOB_FILE)
    rows = MetricsLog(state_dir).rows(job.name)
    status = read_status(state_dir) if (state_dir / STATUS_FILE).is_file() else None
    done = max([row.round for row in rows] + [0 if status is None else status.completed_rounds])
    run = DeploymentRun(
        job=job.name,
        job_yaml=settings_yaml(job),
        rounds_done=done,
        rounds_planned=job.federation.rounds,
        finished=status is not None and status.finished,
        declines={} if status is None else status.declined,
        rejections={} if status is None else status.rejected,
    )
    path = state_dir / REPORT_FILE
    write_report(path, rows=rows, metric=PRIMARY_METRIC[job.task], run=run)
    return path
