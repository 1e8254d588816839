"""The report's tables as data: each builder turns metric rows (or a run's description) into a
``Table`` of formatted cells, or ``None`` when it has nothing to show. The template lays them
out (and escapes every cell: site names and reasons are other parties' text)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from medfed.orchestration.metrics_log import MetricRow, Split, site_model_run
from medfed.provenance.history import Contribution
from medfed.report.intervals import Interval, payoff, site_interval
from medfed.report.summary import AttackRow, BestAndLast, SummaryRow, finite_mean

RoundScores = Mapping[int, float]
"""A score per round (round -> value)."""


@dataclass(frozen=True)
class Row:
    """One table row: its cells (plain text) and the CSS class of the row, if any."""

    cells: tuple[str, ...]
    css: str | None = None


@dataclass(frozen=True)
class Table:
    """A table: its column headings and rows; ``text``: its cells are words, aligned left (by
    default only the first column is)."""

    header: tuple[str, ...]
    rows: tuple[Row, ...]
    text: bool = False


def number(value: float, sd: float = math.nan) -> str:
    """``value`` with three decimals (``0.712``), followed by ``sd`` when it is finite
    (``0.712 ± 0.015``, a mean over seeds); ``–`` when ``value`` is not finite."""
    if not math.isfinite(value):
        return "–"
    return f"{value:.3f}" if not math.isfinite(sd) else f"{value:.3f} ± {sd:.3f}"


def at_last(scores: RoundScores) -> float:
    """The score of the last round of ``scores`` (NaN when empty)."""
    return scores[max(scores)] if scores else math.nan


def summary_table(
    summary: Sequence[SummaryRow], *, metric: str, extra: Mapping[str, Mapping[str, float]]
) -> Table:
    """The final-round comparison of the experiments; ``extra`` adds a column per heading
    (heading -> experiment -> value, e.g. the mean HD95 or the training loss)."""
    sites = sorted({site for row in summary for site in row.per_site})
    adabn = any(math.isfinite(row.unseen_adabn) for row in summary)
    header = [f"mean {metric} (own sites)", f"{metric} on unseen site"]
    header += [f"{metric} on unseen site after AdaBN"] if adabn else []
    rows = []
    for row in summary:
        cells = [row.experiment, number(row.own_sites, row.own_sites_sd), number(row.unseen, row.unseen_sd)]
        cells += [number(row.unseen_adabn)] if adabn else []
        cells += [number(values.get(row.experiment, math.nan)) for values in extra.values()]
        cells += [number(row.per_site.get(site, math.nan)) for site in sites]
        rows.append(Row(tuple(cells), row.kind))
    return Table(("experiment", *header, *extra, *sites), tuple(rows))


def best_and_last_table(
    picks: Sequence[BestAndLast],
    *,
    name: str,
    metric: str,
    extra: Mapping[str, Mapping[str, RoundScores]],
) -> Table | None:
    """Each pick's score at its last and at its best round; ``extra`` (heading -> name -> round
    scores, e.g. HD95) adds that score at both rounds."""
    if not picks:
        return None
    header = [name, "last round", f"{metric} at last"]
    header += [f"{heading} at last" for heading in extra]
    header += ["best round", f"{metric} at best", *(f"{heading} at best" for heading in extra)]
    rows = []
    for pick in picks:
        scores = [values.get(pick.experiment, {}) for values in extra.values()]
        cells = [pick.experiment, str(pick.last_round), number(pick.last)]
        cells += [number(score.get(pick.last_round, math.nan)) for score in scores]
        cells += [str(pick.best_round), number(pick.best)]
        cells += [number(score.get(pick.best_round, math.nan)) for score in scores]
        rows.append(Row(tuple(cells)))
    return Table(tuple(header), tuple(rows))


def intervals_table(
    rows: Sequence[MetricRow], summary: Sequence[SummaryRow], *, unseen_site: str | None, metric: str
) -> Table | None:
    """Each experiment's final score at each site with its case count and 95 % bootstrap
    interval; ``None`` when the run kept no per-case rows."""
    lines = []
    for row in summary:
        for site in sorted(row.per_site, key=lambda name: (name == unseen_site, name)):
            split = split_of(site, unseen_site)
            found = site_interval(rows, experiment=row.experiment, site=site, split=split, metric=metric)
            if found is not None:
                cells = (row.experiment, site, split.value, str(found.cases), number(found.estimate))
                lines.append(Row((*cells, interval(found)), row.kind))
    if not lines:
        return None
    header = ("experiment", "site", "split", "n cases", metric, "95 % bootstrap interval")
    return Table(header, tuple(lines))


def payoff_table(
    rows: Sequence[MetricRow], summary: Sequence[SummaryRow], *, unseen_site: str | None, metric: str
) -> Table | None:
    """Per site, each federated model vs the site's local-only model on the site's own held-out
    cases and on the unseen site; ``None`` without local-only baselines or per-case rows."""
    federated = [row.experiment for row in summary if row.kind == "federated"]
    alone = sorted(
        row.experiment.removeprefix("local-") for row in summary if row.experiment.startswith("local-")
    )
    found = [
        result
        for experiment in federated
        for site in alone
        for scored_on in (site, unseen_site)
        if scored_on is not None
        and (
            result := payoff(
                rows,
                experiment=experiment,
                site=site,
                scored_on=scored_on,
                split=split_of(scored_on, unseen_site),
                metric=metric,
            )
        )
    ]
    if not found:
        return None
    lines = []
    for result in found:
        where = "own held-out cases" if result.scored_on == result.site else f"unseen site {result.scored_on}"
        scores = (number(result.federated), number(result.local), _signed(result.difference.estimate))
        cells = (result.experiment, result.site, where, *scores, interval(result.difference), result.verdict)
        lines.append(Row(cells, _VERDICT_CLASS[result.verdict]))
    header = ("federated", "site", "scored on", "federated", "local-only", "difference", "95 % interval")
    return Table((*header, "joining"), tuple(lines))


_VERDICT_CLASS = {"paid off": "better", "cost": "worse", "no clear difference": "", "too few cases": ""}


def split_of(site: str, unseen_site: str | None) -> Split:
    """The split a simulation scores ``site`` on."""
    return Split.UNSEEN if site == unseen_site else Split.TEST


def interval(found: Interval) -> str:
    """``[low, high]`` with three decimals, ``–`` without an interval."""
    if not math.isfinite(found.low):
        return "–"
    return f"[{found.low:.3f}, {found.high:.3f}]"


def _signed(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:+.3f}"


def attack_table(attacks: Sequence[AttackRow], *, metric: str) -> Table | None:
    """Clean vs attacked vs defended; ``None`` without an attack."""
    if not attacks:
        return None
    header = ("experiment", "run", f"mean {metric} (own sites)", "backdoor success rate")
    rows = (
        Row((row.experiment, row.role, number(row.own_sites), number(row.backdoor_success)))
        for row in attacks
    )
    return Table(header, tuple(rows))


def site_models_table(rows: Sequence[MetricRow], experiments: Sequence[str], metric: str) -> Table | None:
    """``metric`` of each site's own model in each peer-to-peer experiment (``site_model_run``)
    on each held-out set, at its last round; ``None`` without such rows."""
    runs = {
        row.experiment: (experiment, row.experiment[len(site_model_run(experiment, "")) :])
        for row in rows
        for experiment in experiments
        if row.experiment.startswith(site_model_run(experiment, ""))
    }
    own = [row for row in rows if row.experiment in runs and row.metric == metric]
    if not own:
        return None
    last = {run: max(row.round for row in own if row.experiment == run) for run in runs}
    scores = {(row.experiment, row.site): row.value for row in own if row.round == last[row.experiment]}
    held_out = sorted({site for _, site in scores})
    lines = (
        Row((experiment, site, *(number(scores.get((run, other), math.nan)) for other in held_out)))
        for run, (experiment, site) in sorted(runs.items())
    )
    return Table(("experiment", "model of", *held_out), tuple(lines))


def traffic_table(rows: Sequence[MetricRow]) -> Table | None:
    """Megabytes each site sent and received in each experiment, over all rounds."""
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for row in rows:
        if row.split == Split.TRAFFIC:
            counts = totals.setdefault((row.experiment, row.site), {})
            counts[row.metric] = counts.get(row.metric, 0.0) + row.value
    if not totals:
        return None
    lines = []
    for (experiment, site), counts in sorted(totals.items()):
        sent, received = (counts.get(key, 0.0) / 1e6 for key in ("bytes_sent", "bytes_received"))
        lines.append(Row((experiment, site, f"{sent:.3f}", f"{received:.3f}")))
    return Table(("experiment", "site", "MB sent", "MB received"), tuple(lines))


def privacy_table(rows: Sequence[MetricRow]) -> Table | None:
    """Epsilon spent by each site (and client-level epsilon) in each experiment at its last
    round; ``None`` without privacy rows."""
    last: dict[tuple[str, str, str], tuple[int, float]] = {}
    for row in rows:
        if row.split == Split.PRIVACY:
            key = (row.experiment, row.site, row.metric)
            if row.round >= last.get(key, (-1, 0.0))[0]:
                last[key] = (row.round, row.value)
    if not last:
        return None
    lines = (
        Row((experiment, site, metric, str(round), number(value)))
        for (experiment, site, metric), (round, value) in sorted(last.items())
    )
    return Table(("experiment", "site", "metric", "round", "value"), tuple(lines))


def contribution_table(contributions: Sequence[Contribution]) -> Table | None:
    """Each site's contributions from the run's verified provenance ledgers."""
    if not contributions:
        return None
    header = ("experiment", "site", "rounds contributed", "samples (summed)", "epsilon at last update")
    lines = (
        Row(
            (
                row.experiment,
                row.site,
                ", ".join(str(round) for round in row.rounds),
                str(row.samples),
                number(row.epsilon),
            )
        )
        for row in contributions
    )
    return Table(header, tuple(lines))


def reasons_table(reasons: Mapping[str, str], *, heading: str) -> Table | None:
    """Each site's latest ``reasons`` entry (a decline, a rejected update); ``None`` when empty."""
    if not reasons:
        return None
    lines = tuple(Row((site, reason)) for site, reason in sorted(reasons.items()))
    return Table(("site", heading), lines, text=True)


MEAN_OF_SITES = "mean (own sites)"
"""The first row of a deployed job's per-site tables: the mean over its sites."""


def site_final_table(rows: Sequence[MetricRow], *, metric: str, extra: Sequence[str]) -> Table | None:
    """A deployed job's final scores: each site's ``metric`` and each of ``extra`` (e.g. HD95)
    on its held-out cases (``Split.EVAL``) at the last round it was scored, with its training
    loss of that round; the mean over the sites first. ``None`` before any score."""
    last: dict[str, int] = {}
    for row in rows:
        if row.split == Split.EVAL and row.metric == metric:
            last[row.site] = max(row.round, last.get(row.site, 0))
    if not last:
        return None
    shown = [name for name in extra if any(r.split == Split.EVAL and r.metric == name for r in rows)]
    columns = [(Split.EVAL, name) for name in (metric, *shown)] + [(Split.TRAIN, "loss")]
    values = {
        (row.site, row.split, row.metric): row.value
        for row in rows
        if row.site in last and row.round == last[row.site]
    }
    table = {site: [values.get((site, *column), math.nan) for column in columns] for site in sorted(last)}
    means = [finite_mean([scores[i] for scores in table.values()]) for i in range(len(columns))]
    lines = [Row((MEAN_OF_SITES, "", *map(number, means)), "federated")]
    lines += [Row((site, str(last[site]), *map(number, scores))) for site, scores in table.items()]
    return Table(("site", "round", metric, *shown, "training loss"), tuple(lines))
