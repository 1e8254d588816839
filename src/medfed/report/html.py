"""The report of a run, simulated or deployed: one self-contained HTML file (figures embedded as
base64 PNG). This module computes what the page shows (a ``Page`` of tables, figures and plain
values) from the run's metric rows and a short description of the run; the Jinja2 template
``templates/report.html.j2`` lays it out, the same structure for both rooms, each section shown
only when its data is there."""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from medfed.files import atomic_write
from medfed.orchestration.metrics_log import MetricRow, Split
from medfed.provenance.history import Contribution
from medfed.report import tables
from medfed.report.classification import class_scores, classification_table, roc_curves
from medfed.report.intervals import RESAMPLES
from medfed.report.participation import absences_table
from medfed.report.plots import (
    SampleImage,
    learning_curves,
    privacy_utility,
    roc_figure,
    sample_grid,
    site_curves,
    training_curves,
)
from medfed.report.seeds import reference_rows, seeds_note
from medfed.report.summary import (
    AttackRow,
    SummaryRow,
    best_and_last,
    finite_mean,
    own_site_scores,
    pick,
    round_means,
)
from medfed.report.tables import MEAN_OF_SITES, RoundScores, Table

SECONDARY_METRICS = ("hd95",)
"""Held-out scores shown next to the primary metric when the rows have them."""

LOWER_IS_BETTER = frozenset({"hd95"})
"""Scores whose curves say "lower is better" (a distance, in voxels)."""

_SCORED = frozenset({Split.TEST, Split.UNSEEN, Split.UNSEEN_ADABN})
"""The splits of a simulated experiment's per-site curves: every held-out score."""


@dataclass(frozen=True)
class SimulationRun:
    """A simulation, as its report describes it besides the metric rows.

    Attributes:
        title: The page's title.
        summary: The final-round comparison of the experiments (``summarize``).
        unseen_site: The site no experiment trained on, if any.
        samples: Held-out cases, each predicted by every model its site compares.
        config_yaml: The configuration as the report shows it (``settings_yaml``).
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
        job_yaml: The job the server ran, as the report shows it (``settings_yaml``).
        rounds_done: Rounds completed.
        rounds_planned: Rounds of the job (0: unknown).
        finished: Whether the server finished the job.
        declines: Each site's latest decline (``"round <r>: <reason>"``), from ``status.json``.
        rejections: Each site's latest rejected update (``"round <r>: <reason>"``), from
            ``status.json``.
    """

    job: str
    job_yaml: str
    rounds_done: int = 0
    rounds_planned: int = 0
    finished: bool = False
    declines: Mapping[str, str] = field(default_factory=dict)
    rejections: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """Everything the template shows; a ``None`` or empty field leaves its section out.

    Attributes:
        title: The page's title.
        metric: The primary metric (``dice``, ``auc``).
        deployed: Whether the run is a deployed job (headings name sites, not experiments).
        warning: Shown under the title.
        status: A deployed job's ``finished`` / ``unfinished`` line.
        final: The final-round table (a simulation's experiments, a deployed job's sites).
        unseen_site: The simulation's unseen site.
        seeds_note: What a run of several seeds shows of each seed (``seeds_note``).
        intervals: Final scores with case counts and bootstrap intervals.
        payoff: Federated vs local-only per site.
        classification: Accuracy, sensitivity and specificity per experiment and site.
        roc: ROC curves on the training sites and on the unseen site.
        best_and_last: Each experiment's (or site's) score at its last and best round.
        score_curves: ``(metric, PNG)``: the held-out scores per round, the primary metric first.
        loss_curve: The training loss per round.
        site_curves: ``(experiment, PNG)``: a simulated federated experiment's scores per site.
        attacks: Clean vs attacked vs defended.
        site_models: Each peer-to-peer site's own model.
        traffic: Bytes sent and received.
        privacy: Epsilon spent.
        privacy_curve: The privacy-utility curve.
        absences: Sites asked in a round that took no part, per round.
        rejections: Each site's latest rejected update.
        declines: Each site's latest decline.
        contributions: The provenance ledgers' contributions.
        samples: Sample predictions.
        plan: The study plan's ``(what, value)`` lines.
        settings_heading: ``Configuration`` or ``Job``.
        settings: The configuration as YAML.
        resamples: Bootstrap resamples of the intervals.
        lower_is_better: Metrics whose curves say so.
    """

    title: str
    metric: str
    deployed: bool
    settings_heading: str
    settings: str
    warning: str | None = None
    status: str | None = None
    final: Table | None = None
    unseen_site: str | None = None
    seeds_note: str | None = None
    intervals: Table | None = None
    payoff: Table | None = None
    classification: Table | None = None
    roc: bytes | None = None
    best_and_last: Table | None = None
    score_curves: Sequence[tuple[str, bytes]] = ()
    loss_curve: bytes | None = None
    site_curves: Sequence[tuple[str, bytes]] = ()
    attacks: Table | None = None
    site_models: Table | None = None
    traffic: Table | None = None
    privacy: Table | None = None
    privacy_curve: bytes | None = None
    absences: Table | None = None
    rejections: Table | None = None
    declines: Table | None = None
    contributions: Table | None = None
    samples: bytes | None = None
    plan: Sequence[tuple[str, str]] = ()
    resamples: int = RESAMPLES
    lower_is_better: frozenset[str] = LOWER_IS_BETTER


def write_report(
    path: Path, *, rows: Sequence[MetricRow], metric: str, run: SimulationRun | DeploymentRun
) -> None:
    """Writes the HTML report of ``run`` to ``path`` atomically. Both rooms share one structure:
    the status (a deployed job), the final table, the best and last round, score, HD95 and
    training-loss curves, privacy spent, drop-outs, rejected updates and declines, and the
    configuration; a simulation adds its comparisons (intervals, pay-off, per-site curves,
    attacks, peer-to-peer models, traffic, contributions, sample predictions, study plan)."""
    page = (
        _simulation(rows, metric, run) if isinstance(run, SimulationRun) else _deployment(rows, metric, run)
    )
    atomic_write(path, render(page).encode())


def render(page: Page) -> str:
    """The HTML of ``page`` (every text escaped by the template)."""
    return _environment().get_template("report.html.j2").render(page=page)


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("medfed.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["data_uri"] = _data_uri
    return environment


def _data_uri(png: bytes) -> str:
    return f"data:image/png;base64,{base64.b64encode(png).decode()}"


def _simulation(rows: Sequence[MetricRow], metric: str, run: SimulationRun) -> Page:
    kinds = {row.experiment: row.kind for row in run.summary}
    federated = [name for name, kind in kinds.items() if kind == "federated"]
    seeded = [row for row in rows if row.experiment in kinds]  # every seed's: means (seeds_note)
    rows = reference_rows(rows)  # the per-site sections: the lowest seed's run
    compared = [row for row in rows if row.experiment in kinds]  # not a site's own model
    secondary = {
        name: {
            experiment: own_site_scores(seeded, experiment, kind, metric=name)
            for experiment, kind in kinds.items()
        }
        for name in _present(seeded, SECONDARY_METRICS, {Split.TEST})
    }
    loss = {experiment: _training_loss(seeded, experiment) for experiment in kinds}
    extra = _shown({**secondary, "training loss": loss})
    last = {f"{name} (last round)": _lasts(scores, run.summary) for name, scores in extra.items()}
    score_curves = [
        (name, learning_curves(seeded, metric=name, unseen_site=run.unseen_site))
        for name in (metric, *secondary)
        if name == metric or _over_rounds(rows, name, _SCORED)
    ]
    privacy, privacy_curve = _privacy(compared, metric)
    return Page(
        title=run.title,
        metric=metric,
        deployed=False,
        warning=run.warning,
        final=tables.summary_table(run.summary, metric=metric, extra=last),
        unseen_site=run.unseen_site,
        seeds_note=seeds_note(seeded) or None,
        intervals=tables.intervals_table(rows, run.summary, unseen_site=run.unseen_site, metric=metric),
        payoff=tables.payoff_table(rows, run.summary, unseen_site=run.unseen_site, metric=metric),
        classification=classification_table(class_scores(rows, run.summary, unseen_site=run.unseen_site)),
        roc=_roc(rows, run),
        best_and_last=tables.best_and_last_table(
            best_and_last(seeded, kinds, metric=metric), name="experiment", metric=metric, extra=extra
        ),
        score_curves=score_curves,
        loss_curve=training_curves(seeded) if "training loss" in extra else None,
        site_curves=[
            (name, site_curves(rows, experiment=name, metric=metric, splits=_SCORED)) for name in federated
        ],
        attacks=tables.attack_table(run.attacks, metric=metric),
        site_models=tables.site_models_table(rows, federated, metric),
        traffic=tables.traffic_table(compared),
        privacy=privacy,
        privacy_curve=privacy_curve,
        absences=absences_table(compared),
        contributions=tables.contribution_table(run.contributions),
        samples=sample_grid(run.samples) if run.samples else None,
        plan=run.plan,
        settings_heading="Configuration",
        settings=run.config_yaml,
    )


def _roc(rows: Sequence[MetricRow], run: SimulationRun) -> bytes | None:
    own, unseen = roc_curves(rows, run.summary, unseen_site=run.unseen_site)
    return roc_figure(own, unseen) if own or unseen else None


def _deployment(rows: Sequence[MetricRow], metric: str, run: DeploymentRun) -> Page:
    scored = _present(rows, [metric, *SECONDARY_METRICS], {Split.EVAL})
    secondary = [name for name in scored if name != metric]
    scores = {name: _site_scores(rows, name, Split.EVAL) for name in scored}
    extra = _shown(
        {
            **{name: scores[name] for name in secondary},
            "training loss": _site_scores(rows, "loss", Split.TRAIN),
        }
    )
    picks = [found for name, by_round in scores.get(metric, {}).items() if (found := pick(name, by_round))]
    score_curves = [
        (name, site_curves(rows, experiment=run.job, metric=name, splits={Split.EVAL}))
        for name in scored
        if name == metric or _over_rounds(rows, name, {Split.EVAL})
    ]
    loss_curve = (
        site_curves(rows, experiment=run.job, metric="loss", splits={Split.TRAIN})
        if "training loss" in extra
        else None
    )
    privacy, privacy_curve = _privacy(rows, metric)
    return Page(
        title=run.job,
        metric=metric,
        deployed=True,
        status=_status_line(run),
        final=tables.site_final_table(rows, metric=metric, extra=secondary),
        best_and_last=tables.best_and_last_table(picks, name="site", metric=metric, extra=extra),
        score_curves=score_curves,
        loss_curve=loss_curve,
        privacy=privacy,
        privacy_curve=privacy_curve,
        absences=absences_table(rows),
        rejections=tables.reasons_table(run.rejections, heading="latest rejected update"),
        declines=tables.reasons_table(run.declines, heading="latest decline"),
        settings_heading="Job",
        settings=run.job_yaml,
    )


def _status_line(run: DeploymentRun) -> str:
    """``finished`` or ``unfinished``, with the rounds done of those planned."""
    planned = f" of {run.rounds_planned}" if run.rounds_planned else ""
    state = "finished" if run.finished else "unfinished"
    return f"{state}: {run.rounds_done}{planned} rounds done"


def _present(rows: Sequence[MetricRow], names: Sequence[str], splits: set[Split]) -> list[str]:
    """Those of ``names`` that some row of ``splits`` measures, in order."""
    found = {row.metric for row in rows if row.split in splits}
    return [name for name in names if name in found]


def _over_rounds(rows: Sequence[MetricRow], metric: str, splits: Collection[Split]) -> bool:
    """Whether ``metric`` was measured after more than one round (HD95 is, by default, after
    the last round only: its tables show it, a curve of one point would not)."""
    return len({row.round for row in rows if row.metric == metric and row.split in splits}) > 1


def _shown(extra: Mapping[str, Mapping[str, RoundScores]]) -> dict[str, Mapping[str, RoundScores]]:
    """The columns of ``extra`` (heading -> name -> round scores) that hold any score."""
    return {heading: values for heading, values in extra.items() if any(values.values())}


def _training_loss(rows: Sequence[MetricRow], experiment: str) -> RoundScores:
    """``experiment``'s training loss per round, the mean over its sites."""
    return round_means(
        rows, lambda row: row.experiment == experiment and row.split == Split.TRAIN and row.metric == "loss"
    )


def _lasts(scores: Mapping[str, RoundScores], summary: Sequence[SummaryRow]) -> dict[str, float]:
    """Each experiment's score at its last round; ``local (mean)``: the local models' mean."""
    lasts = {experiment: tables.at_last(by_round) for experiment, by_round in scores.items()}
    local = [lasts[row.experiment] for row in summary if row.kind == "local" and row.experiment in lasts]
    return {**lasts, "local (mean)": finite_mean(local)}


def _site_scores(rows: Sequence[MetricRow], metric: str, split: Split) -> dict[str, RoundScores]:
    """A deployed job's ``metric`` on ``split`` per round: the mean over the sites
    (``MEAN_OF_SITES``) first, then each site's."""

    def of(site: str | None) -> RoundScores:
        return round_means(
            rows,
            lambda row: row.split == split and row.metric == metric and (site is None or row.site == site),
        )

    sites = sorted({row.site for row in rows if row.split == split and row.metric == metric})
    found = {MEAN_OF_SITES: of(None)} if sites else {}
    return {**found, **{site: of(site) for site in sites}}


def _privacy(rows: Sequence[MetricRow], metric: str) -> tuple[Table | None, bytes | None]:
    """The epsilon each site spent and, when they differ, the privacy-utility curve."""
    table = tables.privacy_table(rows)
    return table, None if table is None else privacy_utility(rows, metric=metric)
