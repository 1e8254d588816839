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
from medfed.orchestration.metrics_log import MetricRow, Split, site_model_run
from medfed.provenance.history import Contribution
from medfed.report.intervals import RESAMPLES, Interval, payoff, site_interval
from medfed.report.plots import SampleImage, learning_curves, privacy_utility, sample_grid, site_curves
from medfed.report.seeds import reference_rows, seeds_note
from medfed.report.summary import AttackRow, SummaryRow, best_and_last, score_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.federated td { background: #eef6ff; }
tr.better td { background: #e3f4e1; }
tr.worse td { background: #fde2e1; }
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
    experiments = {row.experiment for row in run.summary}
    seeded = [row for row in rows if row.experiment in experiments]  # every seed's (seeds_note)
    rows = reference_rows(rows)
    compared = [row for row in rows if row.experiment in experiments]  # not a site's own model
    sections = (
        [f"<p class='warning'><strong>Warning:</strong> {html.escape(run.warning)}</p>"]
        if run.warning
        else []
    )
    sections += [
        "<h2>Federated vs centralized vs local-only</h2>",
        _summary_table(run.summary, metric=metric, unseen_site=run.unseen_site),
        _own_sites_note(metric),
        *([f"<p>{html.escape(note)}</p>"] if (note := seeds_note(seeded)) else []),
        *_intervals_section(rows, run, metric),
        *_payoff_section(rows, run, metric),
        *_best_and_last_section(seeded, run, metric),
        "<h2>Learning curves</h2>",
        _image(learning_curves(seeded, metric=metric, unseen_site=run.unseen_site)),
        "<h2>Per site</h2>",
        *(_image(site_curves(rows, experiment=name, metric=metric, splits=_SCORED)) for name in federated),
    ]
    if run.attacks:
        sections += [
            "<h2>Under attack: clean vs attacked vs defended</h2>",
            _attack_table(run.attacks, metric=metric),
        ]
    sections += _site_models_section(rows, federated, metric) + _traffic_section(compared)
    sections += _privacy_section(compared, metric)
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
    sections += _privacy_section(rows, metric) + _declines_section(run.declines)
    return sections + _settings_section("Job", run.job_yaml)


def _site_models_section(rows: Sequence[MetricRow], experiments: Sequence[str], metric: str) -> list[str]:
    """``metric`` of each site's own model in each peer-to-peer experiment (``site_model_run``)
    on each held-out set, at its last round; none without such rows."""
    runs = {
        row.experiment: (experiment, row.experiment[len(site_model_run(experiment, "")) :])
        for row in rows
        for experiment in experiments
        if row.experiment.startswith(site_model_run(experiment, ""))
    }
    own = [row for row in rows if row.experiment in runs and row.metric == metric]
    if not own:
        return []
    last = {run: max(row.round for row in own if row.experiment == run) for run in runs}
    scores = {(row.experiment, row.site): row.value for row in own if row.round == last[row.experiment]}
    held_out = sorted({site for _, site in scores})
    header = ["experiment", "model of", *held_out]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for run, (experiment, site) in sorted(runs.items()):
        cells = [html.escape(experiment), html.escape(site)]
        cells += [_number(scores.get((run, other), math.nan)) for other in held_out]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ["<h2>Peer-to-peer: each site's own model at the last round</h2>", "".join(lines) + "</table>"]


def _traffic_section(rows: Sequence[MetricRow]) -> list[str]:
    """Megabytes each site sent and received in each experiment, over all rounds."""
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        if row.split == Split.TRAFFIC:
            counts = totals.setdefault((row.experiment, row.site), {})
            counts[row.metric] = counts.get(row.metric, 0.0) + row.value
    if not totals:
        return []
    lines = ["<table><tr><th>experiment</th><th>site</th><th>MB sent</th><th>MB received</th></tr>"]
    for (experiment, site), counts in sorted(totals.items()):
        sent, received = (counts.get(key, 0.0) / 1e6 for key in ("bytes_sent", "bytes_received"))
        cells = [html.escape(experiment), html.escape(site), f"{sent:.3f}", f"{received:.3f}"]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ["<h2>Bytes sent and received per site (all rounds)</h2>", "".join(lines) + "</table>"]


def _privacy_section(rows: Sequence[MetricRow], metric: str) -> list[str]:
    """The epsilon each site spent and, when they differ, the privacy-utility curve."""
    table = _privacy_table(rows)
    if not table:
        return []
    curve = privacy_utility(rows, metric=metric)
    sections = ["<h2>Privacy spent (epsilon at the last round)</h2>", table]
    return sections if curve is None else [*sections, "<h2>Privacy-utility curve</h2>", _image(curve)]


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
        cells = [
            html.escape(row.experiment),
            score_text(row.own_sites, row.own_sites_sd),
            score_text(row.unseen, row.unseen_sd),
        ]
        cells += [_number(row.unseen_adabn)] if adabn else []
        cells += [_number(row.per_site.get(site, math.nan)) for site in sites]
        lines.append(f"<tr class='{row.kind}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    note = f"<p>Unseen site: {html.escape(unseen_site)}.</p>" if unseen_site else ""
    return "".join(lines) + "</table>" + note


def _own_sites_note(metric: str) -> str:
    return (
        f"<p>Mean {html.escape(metric)} (own sites): a federated or centralized model's mean over the "
        "training sites' held-out cases, each site scored with the model it would use (personalised "
        "when the strategy personalises); a local-only model's score on its own site's held-out cases "
        "only; the local (mean) row averages those.</p>"
    )


def _best_and_last_section(rows: Sequence[MetricRow], run: SimulationRun, metric: str) -> list[str]:
    picks = best_and_last(rows, {row.experiment: row.kind for row in run.summary}, metric=metric)
    if not picks:
        return []
    header = [
        "experiment",
        "last round",
        f"{metric} (own sites) at last",
        "best round",
        f"{metric} (own sites) at best",
    ]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for pick in picks:
        cells = [
            html.escape(pick.experiment),
            str(pick.last_round),
            _number(pick.last),
            str(pick.best_round),
            _number(pick.best),
        ]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    note = (
        "<p>The best round is picked on the same held-out cases it is scored on, so its score is "
        "optimistic; the tables above report the last round.</p>"
    )
    return ["<h2>Best and last round</h2>", "".join(lines) + "</table>", note]


def _split_of(site: str, unseen_site: str | None) -> Split:
    return Split.UNSEEN if site == unseen_site else Split.TEST


def _intervals_section(rows: Sequence[MetricRow], run: SimulationRun, metric: str) -> list[str]:
    """Each experiment's final score at each site with its case count and 95 % bootstrap
    interval; nothing when the run kept no per-case rows."""
    lines = []
    for row in run.summary:
        for site in sorted(row.per_site, key=lambda name: (name == run.unseen_site, name)):
            split = _split_of(site, run.unseen_site)
            found = site_interval(rows, experiment=row.experiment, site=site, split=split, metric=metric)
            if found is not None:
                cells = [html.escape(row.experiment), html.escape(site), split.value, str(found.cases)]
                cells += [_number(found.estimate), _interval(found)]
                lines.append(f"<tr class='{row.kind}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not lines:
        return []
    header = ["experiment", "site", "split", "n cases", metric, "95 % bootstrap interval"]
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    note = (
        f"<p>{RESAMPLES} percentile bootstrap resamples of each site's held-out cases (seed 0); "
        "cases without a lesion have no Dice and are not counted; a site with one case has no interval.</p>"
    )
    return [
        "<h2>Final round per site: cases and 95 % intervals</h2>",
        "<table>" + head + "".join(lines) + "</table>",
        note,
    ]


def _payoff_section(rows: Sequence[MetricRow], run: SimulationRun, metric: str) -> list[str]:
    """Per site, each federated model vs the site's local-only model on the site's own held-out
    cases and on the unseen site; nothing without local-only baselines or per-case rows."""
    federated = [row.experiment for row in run.summary if row.kind == "federated"]
    alone = sorted(
        row.experiment.removeprefix("local-") for row in run.summary if row.experiment.startswith("local-")
    )
    found = [
        result
        for experiment in federated
        for site in alone
        for scored_on in (site, run.unseen_site)
        if scored_on is not None
        and (
            result := payoff(
                rows,
                experiment=experiment,
                site=site,
                scored_on=scored_on,
                split=_split_of(scored_on, run.unseen_site),
                metric=metric,
            )
        )
    ]
    if not found:
        return []
    header = [
        "federated",
        "site",
        "scored on",
        "federated",
        "local-only",
        "difference",
        "95 % interval",
        "joining",
    ]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for result in found:
        where = "own held-out cases" if result.scored_on == result.site else f"unseen site {result.scored_on}"
        cells = [html.escape(result.experiment), html.escape(result.site), html.escape(where)]
        cells += [_number(result.federated), _number(result.local), _signed(result.difference.estimate)]
        cells += [_interval(result.difference), result.verdict]
        lines.append(
            f"<tr class='{_VERDICT_CLASS[result.verdict]}'>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    note = (
        "<p>Federated minus local-only; the interval is a paired bootstrap (the same resampled cases "
        "score both models). <em>paid off</em> / <em>cost</em>: the interval excludes 0. A personalising "
        "strategy is scored with the site's personalised model on its own cases, with the global model "
        "on the unseen site.</p>"
    )
    return [
        f"<h2>Did joining the federation pay off? ({html.escape(metric)}, per site)</h2>",
        "".join(lines) + "</table>",
        note,
    ]


_VERDICT_CLASS = {"paid off": "better", "cost": "worse", "no clear difference": "", "too few cases": ""}


def _interval(interval: Interval) -> str:
    if not math.isfinite(interval.low):
        return "–"
    return f"[{interval.low:.3f}, {interval.high:.3f}]"


def _signed(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:+.3f}"


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
