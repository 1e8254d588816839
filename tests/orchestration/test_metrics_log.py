import csv
import math
import sqlite3
from pathlib import Path

from medfed.orchestration.metrics_log import MetricRow, MetricsLog


def _rows(round: int, value: float) -> list[MetricRow]:
    return [MetricRow("fedavg", round, "hospital_a", "test", "dice", value)]


def test_rows_land_in_sqlite_and_csv(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.record_round("fedavg", 1, _rows(1, 0.5))
    log.record_round("fedavg", 2, _rows(2, 0.7))
    with sqlite3.connect(tmp_path / "metrics.sqlite") as connection:
        assert connection.execute("SELECT round, value FROM metrics ORDER BY round").fetchall() == [
            (1, 0.5),
            (2, 0.7),
        ]
    with (tmp_path / "metrics.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert [(line["round"], line["value"]) for line in lines] == [("1", "0.5"), ("2", "0.7")]


def test_replayed_round_replaces_instead_of_duplicating(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.record_round("fedavg", 1, _rows(1, 0.5))
    log.record_round("fedavg", 2, _rows(2, 0.6))
    log.discard_after("fedavg", 1)  # a crash after round 2's metrics but before its checkpoint
    log.record_round("fedavg", 2, _rows(2, 0.6))
    assert [row.round for row in MetricsLog(tmp_path).rows("fedavg")] == [1, 2]


def test_a_nan_value_comes_back_as_nan_not_none(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.record_round("fedavg", 1, [MetricRow("fedavg", 1, "a", "test", "hd95", math.nan)])
    (row,) = log.rows()
    assert isinstance(row.value, float) and math.isnan(row.value)
