"""A run over several seeds (``seeds:``) in the report: which seed's run the per-site sections
show, and the sentence under the summary that says so."""

from __future__ import annotations

from collections.abc import Sequence

from medfed.orchestration.metrics_log import MetricRow


def reference_rows(rows: Sequence[MetricRow]) -> list[MetricRow]:
    """The rows of the lowest seed's run: what the per-site sections show (the seeds' splits
    differ, so their held-out cases can be neither pooled nor paired). All rows for one seed."""
    lowest = min((row.seed for row in rows), default=0)
    return [row for row in rows if row.seed == lowest]


def seeds_note(rows: Sequence[MetricRow]) -> str:
    """What the page shows of each seed; ``""`` for a run of one seed."""
    seeds = sorted({row.seed for row in rows})
    if len(seeds) < 2:
        return ""
    listed = ", ".join(str(seed) for seed in seeds)
    return (
        f"Every experiment ran once per seed ({listed}; n = {len(seeds)}), each seed splitting the data, "
        "initialising the model and training on its own (the built-in data are generated from it "
        "too). The summary shows mean ± sample standard deviation over the seeds, and the learning "
        "curves the mean with a band of ±1 sd; the other scores per round (HD95, training loss, best "
        "and last round, attacks) are means over the seeds. The per-site intervals, the payoff table "
        "and the per-site sections (classification tables and ROC curves, per-site curves, peer-to-peer "
        "models, traffic, privacy, drop-outs, "
        f"contributions, sample predictions, study plan) show seed {seeds[0]}'s run only: the seeds' "
        "held-out cases differ, so they can be neither pooled nor paired."
    )
