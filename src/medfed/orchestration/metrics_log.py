"""Per-round, per-site metrics in a SQLite table (the source of truth) and a CSV copy of it."""

from __future__ import annotations

import csv
import io
import math
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields, replace
from enum import StrEnum
from pathlib import Path

from medfed.errors import CheckpointError
from medfed.files import atomic_write


class Split(StrEnum):
    """What a metric row measures; its value is what ``metrics.sqlite`` and ``metrics.csv`` hold.

    Attributes:
        TRAIN: A site's local training (``loss``, ``steps``, ``num_samples``...).
        TEST: A simulated training site's held-out cases, scored by the model it would use.
        UNSEEN: The simulation's unseen site (``data.unseen_site``).
        UNSEEN_ADABN: The unseen site after AdaBN (``data.unseen_site_adabn``).
        EVAL: A deployed site's held-out cases, scored by the site (federated evaluation).
        PRIVACY: Privacy spent: a site's ``epsilon``, the server's ``client_epsilon``.
        TRAFFIC: Bytes a site sent and received in the round (``bytes_sent``, ``bytes_received``).
        PARTICIPATION: A site asked in the round that took no part, value 1, its metric saying
            why (an ``Absence``: ``no_answer``, ``declined``, ``rejected``).
    """

    TRAIN = "train"
    TEST = "test"
    UNSEEN = "unseen"
    UNSEEN_ADABN = "unseen-adabn"
    EVAL = "eval"
    PRIVACY = "privacy"
    TRAFFIC = "traffic"
    PARTICIPATION = "participation"


HELD_OUT = frozenset({Split.TEST, Split.UNSEEN})
"""The splits a simulation compares experiments on (the unseen site without AdaBN included)."""


@dataclass(frozen=True)
class MetricRow:
    """One measurement: ``metric`` of ``experiment`` at ``site`` on ``split`` after ``round``,
    in the run seeded with ``seed`` (set by the ``MetricsLog`` that records it)."""

    experiment: str
    round: int
    site: str
    split: Split
    metric: str
    value: float
    seed: int = 0


_COLUMNS = [field.name for field in fields(MetricRow)]
_NAMES = ", ".join(_COLUMNS)
_SLOTS = ", ".join("?" for _ in _COLUMNS)
_STORED = ", ".join("COALESCE(seed, ?)" if name == "seed" else name for name in _COLUMNS)
"""The columns read back; a row stored without a seed (older medfed) takes the log's."""

_CASE = "@"
"""Separates a per-case row's metric from its case id (``"dice@case_003"``)."""


def case_metric(metric: str, case_id: str) -> str:
    """The ``metric`` name of a row holding one case's value (a Dice score, a class or a
    probability), kept at the final round for case counts and bootstrap intervals."""
    return f"{metric}{_CASE}{case_id}"


def split_case_metric(name: str) -> tuple[str, str] | None:
    """``(metric, case_id)`` of a per-case row's metric name, or ``None`` for an aggregate."""
    metric, separator, case_id = name.partition(_CASE)
    return (metric, case_id) if separator and metric and case_id else None


SITE_MODEL_MARK = "@"
"""Joins a peer-to-peer experiment's name and a site's: the run of that site's own model."""


def site_model_run(experiment: str, site: str) -> str:
    """The ``experiment`` column of rows scoring ``site``'s own model in a peer-to-peer
    ``experiment`` (the experiment's own rows score the sites' consensus)."""
    return f"{experiment}{SITE_MODEL_MARK}{site}"


class MetricsLog:
    """Appends metric rows of one run (one seed) to ``metrics.sqlite`` and mirrors them to
    ``metrics.csv``.

    Args:
        run_dir: The run directory holding both files.
        seed: The run's seed, stored with every row recorded; rows of a log written before
            medfed stored seeds read back with it.
    """

    def __init__(self, run_dir: Path, *, seed: int = 0) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.database = run_dir / "metrics.sqlite"
        self.csv_path = run_dir / "metrics.csv"
        self.seed = seed
        with self._connect() as connection:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS metrics (experiment TEXT, round INTEGER, site TEXT, "
                "split TEXT, metric TEXT, value REAL, seed INTEGER)"
            )
            columns = {row[1] for row in connection.execute("PRAGMA table_info(metrics)")}
            if "seed" not in columns:  # a log of an older medfed
                connection.execute("ALTER TABLE metrics ADD COLUMN seed INTEGER")

    def record_round(self, experiment: str, round: int, rows: Iterable[MetricRow]) -> None:
        """Replaces the rows of ``(experiment, round)`` with ``rows`` (under the log's seed) in
        one transaction, so a round replayed after a crash is never counted twice."""
        stored = [astuple(replace(row, seed=self.seed)) for row in rows]
        with self._connect() as connection:
            connection.execute("DELETE FROM metrics WHERE experiment = ? AND round = ?", (experiment, round))
            connection.executemany(f"INSERT INTO metrics ({_NAMES}) VALUES ({_SLOTS})", stored)
        self._write_csv()

    def discard_after(self, experiment: str, round: int) -> None:
        """Drops rows of ``experiment`` newer than ``round`` (left by a run killed mid-round)."""
        with self._connect() as connection:
            connection.execute("DELETE FROM metrics WHERE experiment = ? AND round > ?", (experiment, round))
        self._write_csv()

    def rows(self, experiment: str | None = None) -> list[MetricRow]:
        """All rows, or those of one experiment, ordered by experiment, round and site. A NaN
        value (e.g. HD95 when no case has a lesion) comes back as NaN: SQLite stores it as NULL."""
        query = f"SELECT {_STORED} FROM metrics"
        arguments: tuple[str | int, ...] = (self.seed,)
        if experiment is not None:
            query += " WHERE experiment = ?"
            arguments += (experiment,)
        with self._connect() as connection:
            found = connection.execute(query + " ORDER BY experiment, round, site, split, metric", arguments)
            return [_row(*row) for row in found]

    def _write_csv(self) -> None:
        write_csv(self.csv_path, self.rows())

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.database)
        try:
            with connection:  # commits, or rolls back on error
                yield connection
        finally:
            connection.close()


def write_csv(path: Path, rows: Iterable[MetricRow]) -> None:
    """Writes ``rows`` to ``path`` as CSV, a header of ``MetricRow``'s fields first (atomically)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_COLUMNS)
    writer.writerows(astuple(row) for row in rows)
    atomic_write(path, buffer.getvalue().encode())


def _row(
    experiment: str, round: int, site: str, split: str, metric: str, value: float | None, seed: int
) -> MetricRow:
    """A stored row; its split read back as a ``Split``, a NULL value (NaN is stored as NULL) as NaN.

    Raises:
        CheckpointError: The table holds a split this medfed does not know.
    """
    try:
        known = Split(split)
    except ValueError:
        raise CheckpointError(
            f"metrics row with unknown split '{split}'; known: {[s.value for s in Split]}"
        ) from None
    return MetricRow(experiment, round, site, known, metric, math.nan if value is None else value, seed)
