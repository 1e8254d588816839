"""The run's report: one self-contained HTML file (figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

from medfed.files import atomic_write
from medfed.orchestration.metrics_log import MetricRow
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


def write_report(
    path: Path,
    *,
    title: str,
    rows: Sequence[MetricRow],
    summary: Sequence[SummaryRow],
    metric: str,
    unseen_site: str | None,
    samples: Sequence[SampleImage],
    config_yaml: str,
    warning: str | None = None,
    attacks: Sequence[AttackRow] = (),
) -> None:
    """Writes the HTML report to ``path`` atomically; ``warning`` (e.g. "NOT PRIVATE") is shown
    under the title."""
    federated = [row.experiment for row in summary if row.kind == "federated"]
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        *([f"<p class='warning'><strong>Warning:</strong> {html.escape(warning)}</p>"] if warning else []),
        "<h2>Federated vs centralized vs local-only</h2>",
        _summary_table(summary, metric=metric, unseen_site=unseen_site),
        "<h2>Learning curves</h2>",
        _image(learning_curves(rows, metric=metric, unseen_site=unseen_site)),
        "<h2>Per site</h2>",
        *(_image(site_curves(rows, experiment=name, metric=metric)) for name in federated),
    ]
    if attacks:
        sections += [
            "<h2>Under attack: clean vs attacked vs defended</h2>",
            _attack_table(attacks, metric=metric),
        ]
    own_models = _site_models_table(rows, metric=metric)
    if own_models:
        sections += ["<h2>Peer-to-peer: each site's own model at the last round</h2>", own_models]
    traffic = _traffic_table(rows)
    if traffic:
        sections += ["<h2>Bytes sent and received per site (all rounds)</h2>", traffic]
    privacy = _privacy_table(rows)
    if privacy:
        sections += ["<h2>Privacy spent (epsilon at the last round)</h2>", privacy]
    if samples:
        sections += ["<h2>Sample predictions on held-out cases</h2>", _image(sample_grid(samples))]
    sections += ["<h2>Configuration</h2>", f"<pre>{html.escape(config_yaml)}</pre>"]
    _write_page(path, title, sections)


def write_deployment_report(
    path: Path, *, job: str, rows: Sequence[MetricRow], metric: str, job_yaml: str
) -> None:
    """Writes the HTML report of a deployed job to ``path`` atomically: each site's score of
    the global model on its held-out cases, its training loss, the privacy spent and the job."""
    sections = [f"<h1>{html.escape(job)}</h1>"]
    if any(row.split == "eval" and row.metric == metric for row in rows):
        sections += [
            f"<h2>Global model, {html.escape(metric)} on each site's held-out cases</h2>",
            _image(site_curves(rows, experiment=job, metric=metric)),
        ]
    if any(row.split == "train" and row.metric == "loss" for row in rows):
        sections += [
            "<h2>Training loss per site</h2>",
            _image(site_curves(rows, experiment=job, metric="loss", training=True)),
        ]
    privacy = _privacy_table(rows)
    if privacy:
        sections += ["<h2>Privacy spent (epsilon at the last round)</h2>", privacy]
    sections += ["<h2>Job</h2>", f"<pre>{html.escape(job_yaml)}</pre>"]
    _write_page(path, job, sections)


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
        if row.split == "privacy":
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


def _site_models_table(rows: Sequence[MetricRow], *, metric: str) -> str:
    """``metric`` of each site's own model (splits ``<split>@<site>``) on each held-out set at
    its experiment's last round, or ``""`` when no run is peer-to-peer."""
    own = [row for row in rows if row.metric == metric and "@" in row.split]
    last: dict[str, int] = {}
    for row in own:
        last[row.experiment] = max(last.get(row.experiment, 0), row.round)
    scores = {
        (row.experiment, row.split.split("@", 1)[1], row.site): row.value
        for row in own
        if row.round == last[row.experiment]
    }
    if not scores:
        return ""
    held_out = sorted({site for _, _, site in scores})
    header = ["experiment", "model of", *held_out]
    lines = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for experiment, model in sorted({(e, m) for e, m, _ in scores}):
        cells = [html.escape(experiment), html.escape(model)]
        cells += [_number(scores.get((experiment, model, site), math.nan)) for site in held_out]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(lines) + "</table>"


def _traffic_table(rows: Sequence[MetricRow]) -> str:
    """Bytes each site sent and received in each experiment, summed over rounds, or ``""``."""
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        if row.split == "traffic":
            counts = totals.setdefault((row.experiment, row.site), {})
            counts[row.metric] = counts.get(row.metric, 0.0) + row.value
    if not totals:
        return ""
    lines = ["<table><tr><th>experiment</th><th>site</th><th>MB sent</th><th>MB received</th></tr>"]
    for (experiment, site), counts in sorted(totals.items()):
        sent, received = (counts.get(key, 0.0) / 1e6 for key in ("bytes_sent", "bytes_received"))
        cells = [html.escape(experiment), html.escape(site), f"{sent:.3f}", f"{received:.3f}"]
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(lines) + "</table>"


def _number(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.3f}"


def _image(png: bytes) -> str:
    return f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
