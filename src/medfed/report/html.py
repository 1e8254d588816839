"""The report of a run, simulated or deployed: one self-contained HTML file (figures embedded as
base64 PNG), built from the run's metric rows and a short description of the run. Each part of
the page is a small function returning its HTML pieces (none when its rows are absent)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medfed.files import atomic_write
from medfed.orchestration.metrics_log import MetricRow, Split
from medfed.provenance.history import Contribution
from medfed.report.plots import SampleImage, learning_curves, sample_grid, site_curves
from medfed.report.summary import AttackRow, SummaryRow

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.federated td { background: #eef6ff; }
img { max-width: 100%; }
p.warning { background: #fde2e1; border: 1px solid #c0392b; padding: 0.5em 1em; }
"""

_SCORED = frozenset({Split.TEST, Split.UNSEEN, Split.UNSEEN_ADABN})
"""The splits of a simulated experiment's per-site curves: every held-out score."""


@dataclass(frozen=True)
class SimulationRun:
    """A simulation, as its report describes it besides the metric rows.

    Attributes:
        title: The page's title.
        summary: The final-round comparison of the experiments (``summarize``).
        unseen_site: The site no experiment trained on, if any.
        samples: Held-out cases with a model's prediction.
        config_yaml: The resolved configuration.
        warning: Shown under the title (e.g. "NOT PRIVATE").
        attacks: Clean vs attacked vs defended, under an ``attack:`` section.
        plan: The study plan's ``(what, value)`` lines.
        contributions: Each site's contributions, from the run's verified provenance ledgers.
    """

    title: str
    summary: Sequence[SummaryRow]
    unseen_site: str | None
    samples: Sequence[SampleImage]
    config_yaml: str
    warning: str | None = None
    attacks: Sequence[AttackRow] = ()
    plan: Sequence[tuple[str, str]] = ()
    contributions: Sequence[Contribution] = ()


@dataclass(frozen=True)
class DeploymentRun:
    """A deployed job, as its report describes it besides the metric rows.

    Attributes:
        job: The job's name (the ``experiment`` of its rows, and the page's title).
        job_yaml: The job the server ran.
        declines: Each site's latest decline (``"round <r>: <reason>"``), from ``status.json``.
    """

    job: str
    job_yaml: str
    declines: Mapping[str, str] = field(default_factory=dict)


def write_report(
    path: Path, *, rows: Sequence[MetricRow], metric: str, run: SimulationRun | DeploymentRun
) -> None:
    """Writes the HTML report of ``run`` to ``path`` atomically. A simulation shows the summary
    table, learning curves, each federated experiment per site, clean vs attacked vs defended
    under an attack, the privacy spent and sample predictions; a deployed job each site's held-out score of the global model, its training
    loss, the privacy spent and the sites' declines. Both end with their configuration."""
    if isinstance(run, SimulationRun):
        title, sections = run.title, _simulation(rows, metric, run)
    else:
        title, sections = run.job, _deployment(rows, metric, run)
    _write_page(path, title, [f"<h1>{html.escape(title)}</h1>", *sections])


def _simulation(rows: Sequence[MetricRow], metric: str, run: SimulationRun) -> list[str]:
    federated = [row.experiment for row in run.summary if row.kind == "federated"]
    sections = (
        [f"<p class='warning'><strong>Warning:</strong> {html.escape(run.warning)}</p>"]
        if run.warning
        else []
    )
    sections += [
        "<h2>Federated vs centralized vs local-only</h2>",
        _summary_table(run.summary, metric=metric, unseen_site=run.unseen_site),
        "<h2>Learning curves</h2>",
        _image(learning_curves(rows, metric=metric, unseen_site=run.unseen_site)),
        "<h2>Per site</h2>",
        *(_image(site_curves(rows, experiment=name, metric=metric, splits=_SCORED)) for name in federated),
    ]
    if run.attacks:
        sections += [
            "<h2>Under attack: clean vs attacked vs defended</h2>",
            _attack_table(run.attacks, metric=metric),
        ]
    sections += _privacy_section(rows)
    if run.contributions:
        sections += [
            "<h2>Contributions (provenance ledger, verified)</h2>",
            _contribution_table(run.contributions),
        ]
    if run.samples:
        sections += ["<h2>Sample predictions on held-out cases</h2>", _image(sample_grid(run.samples))]
    if run.plan:
        sections += ["<h2>Study plan (from the sites' fingerprints)</h2>", _pairs_table(run.plan)]
    return sections + _settings_section("Configuration", run.config_yaml)


def _deployment(rows: Sequence[MetricRow], metric: str, run: DeploymentRun) -> list[str]:
    sections = []
    if any(row.split == Split.EVAL and row.metric == metric for row in rows):
        sections += [
            f"<h2>Global model, {html.escape(metric)} on each site's held-out cases</h2>",
            _image(site_curves(rows, experiment=run.job, metric=metric, splits={Split.EVAL})),
        ]
    if any(row.split == Split.TRAIN and row.metric == "loss" for row in rows):
        curves = site_curves(rows, experiment=run.job, metric="loss", splits={Split.TRAIN})
        sections += ["<h2>Training loss per site</h2>", _image(curves)]
    sections += _privacy_section(rows) + _declines_section(run.declines)
    return sections + _settings_section("Job", run.job_yaml)


def _privacy_section(rows: Sequence[MetricRow]) -> list[str]:
    table = _privacy_table(rows)
    return ["<h2>Privacy spent (epsilon at the last round)</h2>", table] if table else []


def _declines_section(declines: Mapping[str, str]) -> list[str]:
    """Each site's latest decline; a site's reason is its own text, so it is escaped."""
    if not declines:
        return []
    lines = ["<table><tr><th>site</th><th>latest decline</th></tr>"]
    lines += [
        f"<tr><td>{html.escape(site)}</td><td>{html.escape(reason)}</td></tr>"
        for site, reason in sorted(declines.items())
    ]
    return ["<h2>Declined by sites</h2>", "".join(lines) + "</table>"]


def _settings_section(heading: str, text: str) -> list[str]:
    return [f"<h2>{heading}</h2>", f"<pre>{html.escape(text)}</pre>"]


def _contribution_table(contributions: Sequence[Contribution]) -> str:
    header = ["experiment", "site", "rounds contributed", "samples (summed)", "epsilon at last update"]
    lines = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"]
    for row in contributions:
        rounds = ", ".join(str(round) for round in row.rounds)
        cells = [html.escape(row.experiment), html.escape(row.site), rounds, str(row.samples)]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in [*cells, _number(row.epsilon)]) + "</tr>")
    return "".join(lines) + "</table>"


def _write_page(path: Path, title: str, sections: Sequence[str]) -> None:
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>"
    )
    atomic_write(path, page.encode())


def _summary_table(summary: Sequence[SummaryRow], *, metric: str, unseen_site: str | None) -> str:
    sites = sorted({site for row in summary for site in row.per_site})
    adabn = any(math.isfinite(row.unseen_adabn) for row in summary)
    header = ["experiment", f"mean {metric} (own sites)", f"{metric} on unseen site"]
    header += [f"{metric} on unseen site after AdaBN"] if adabn else []
    header += sites
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in summary:
        cells = [html.escape(row.experiment), _number(row.own_sites), _number(row.unseen)]
        cells += [_number(row.unseen_adabn)] if adabn else []
        cells += [_number(row.per_site.get(site, math.nan)) for site in sites]
        lines.append(f"<tr class='{row.kind}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    note = f"<p>Unseen site: {html.escape(unseen_site)}.</p>" if unseen_site else ""
    return "".join(lines) + "</table>" + note


def _attack_table(attacks: Sequence[AttackRow], *, metric: str) -> str:
    header = ["experiment", "run", f"mean {metric} (own sites)", "backdoor success rate"]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in attacks:
        cells = [html.escape(row.experiment), row.role, _number(row.own_sites), _number(row.backdoor_success)]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(lines) + "</table>"


def _privacy_table(rows: Sequence[MetricRow]) -> str:
    """Epsilon spent by each site (and client-level epsilon) in each experiment, or ``""``."""
    last: dict[tuple[str, str, str], tuple[int, float]] = {}
    for row in rows:
        if row.split == Split.PRIVACY:
            key = (row.experiment, row.site, row.metric)
            if row.round >= last.get(key, (-1, 0.0))[0]:
                last[key] = (row.round, row.value)
    if not last:
        return ""
    lines = ["<table><tr><th>experiment</th><th>site</th><th>metric</th><th>round</th><th>value</th></tr>"]
    for (experiment, site, metric), (round, value) in sorted(last.items()):
        cells = [html.escape(experiment), html.escape(site), html.escape(metric), str(round), _number(value)]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(lines) + "</table>"


def _pairs_table(pairs: Sequence[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(what)}</th><td>{html.escape(value)}</td></tr>" for what, value in pairs
    )
    return f"<table>{cells}</table>"


def _number(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.3f}"


def _image(png: bytes) -> str:
    return f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
