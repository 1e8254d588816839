"""Who dropped out of each round and why, from the ``Split.PARTICIPATION`` rows."""

from __future__ import annotations

from collections.abc import Sequence

from medfed.orchestration.grid import Absence
from medfed.orchestration.metrics_log import MetricRow, Split
from medfed.report.tables import Row, Table


def absences_table(rows: Sequence[MetricRow]) -> Table | None:
    """One line per experiment and round with a drop-out: the sites that gave no answer, that
    declined and whose update was rejected; ``None`` when every asked site took part."""
    found: dict[tuple[str, int], dict[str, list[str]]] = {}
    for row in rows:
        if row.split == Split.PARTICIPATION and row.metric in set(Absence):
            found.setdefault((row.experiment, row.round), {}).setdefault(row.metric, []).append(row.site)
    if not found:
        return None
    lines = (
        Row((experiment, str(round), *(", ".join(sorted(sites.get(kind, []))) for kind in Absence)))
        for (experiment, round), sites in sorted(found.items())
    )
    header = ("experiment", "round", *(kind.value.replace("_", " ") for kind in Absence))
    return Table(header, tuple(lines), text=True)
