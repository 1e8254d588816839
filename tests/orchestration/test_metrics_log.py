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


def test_every_row_is_stored_and_read_back_with_the_logs_seed(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, seed=7)
    log.record_round("fedavg", 1, _rows(1, 0.5))  # built without a seed: the log's is stored
    with sqlite3.connect(tmp_path / "metrics.sqlite") as connection:
        assert connection.execute("SELECT seed FROM metrics").fetchall() == [(7,)]
    assert [row.seed for row in MetricsLog(tmp_path).rows()] == [7]
    with (tmp_path / "metrics.csv").open() as handle:
        assert [line["seed"] for line in csv.DictReader(handle)] == ["7"]


def test_a_log_written_before_seeds_were_stored_reads_with_the_runs_seed(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "metrics.sqlite") as connection:
        connection.execute(
            "CREATE TABLE metrics (experiment TEXT, round INTEGER, site TEXT, split TEXT, metric TEXT, value REAL)"
        )
        connection.execute("INSERT INTO metrics VALUES ('fedavg', 1, 'hospital_a', 'test', 'dice', 0.5)")
    log = MetricsLog(tmp_path, seed=3)
    log.record_round("fedavg", 2, _rows(2, 0.7))
    assert [(row.round, row.value, row.seed) for row in log.rows()] == [(1, 0.5, 3), (2, 0.7, 3)]
