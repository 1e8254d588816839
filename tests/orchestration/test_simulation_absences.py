"""Drop-outs in a simulation (issue #11): the grid and the round loop mark who took no part in a
round and why, the recorder writes them as ``Split.PARTICIPATION`` rows, as a deployment does,
and the report shows its drop-out table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from builders import tiny_simulation

from medfed.api import simulate
from medfed.errors import PrivacyBudgetExceeded
from medfed.orchestration.attendance import AttendanceGrid
from medfed.orchestration.grid import Absence, AbsenceLog, InMemoryGrid
from medfed.orchestration.loop import RoundPlan, run_round
from medfed.orchestration.metrics_log import MetricRow, MetricsLog, Split
from medfed.orchestration.simulation import ExperimentRunner
from medfed.strategies import FedAvg
from medfed.types import TrainResult, TrainTask

MODEL = {"w": torch.zeros(2)}


class _Site:
    """A site that answers its task with weights ``value``, or declines (its budget spent)."""

    def __init__(self, name: str, value: float | None) -> None:
        self.name, self.value = name, value

    def train(self, task: TrainTask) -> TrainResult:
        if self.value is None:
            raise PrivacyBudgetExceeded(self.name, spent=1.0, would_spend=1.5, budget=1.0)
        return TrainResult(self.name, task.round, {"w": torch.full((2,), self.value)}, num_samples=4)


def _grid(absences: AbsenceLog) -> InMemoryGrid:
    values = {"a": 1.0, "nan": float("nan"), "spent": None}
    sites = {name: _Site(name, value) for name, value in values.items()}
    return InMemoryGrid(sites, absences=absences)  # type: ignore[arg-type]


def test_the_loop_marks_rejected_updates_the_grid_declines_and_a_retry_starts_afresh() -> None:
    absences = AbsenceLog()
    _, results = run_round(
        FedAvg(),
        FedAvg().init(MODEL),
        RoundPlan(rounds=1, sites=["a", "nan", "spent"]),
        _grid(absences),
        absences=absences,
    )
    assert [r.site for r in results] == ["a"]
    assert absences(1) == {"nan": Absence.REJECTED, "spent": Absence.DECLINED}
    assert absences(2) == {}
    absences.start(1)  # the round tried again forgets its first try
    assert absences(1) == {}


def test_a_peer_to_peer_round_gathers_its_drop_outs_over_all_its_trainings() -> None:
    attendance = AttendanceGrid(_grid(AbsenceLog()))
    first = attendance.train({"a": TrainTask(1, MODEL), "spent": TrainTask(1, MODEL)})
    again = attendance.train({"a": TrainTask(2, MODEL), "nan": TrainTask(2, MODEL)})
    # the topology accepts a's updates and refuses nan's (not finite)
    accepted = [r for r in first + again if r.site == "a"]
    assert attendance.settle(accepted) == {"spent": Absence.DECLINED, "nan": Absence.REJECTED}
    assert attendance.settle([]) == {}  # the next round starts afresh


def _nan_tamper(tasks: Mapping[str, TrainTask], results: list[TrainResult]) -> list[TrainResult]:
    return [
        replace(
            r,
            weights={
                k: torch.full_like(t, float("nan")) if t.is_floating_point() else t
                for k, t in r.weights.items()
            },
        )
        if r.site == "hospital_c"
        else r
        for r in results
    ]


def _participation(run_dir: Path) -> list[MetricRow]:
    return [row for row in MetricsLog(run_dir).rows() if row.split == Split.PARTICIPATION]


def test_a_simulated_rejected_update_is_a_participation_row_and_in_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ExperimentRunner, "_attack", lambda self, experiment: _nan_tamper)
    run = simulate(tiny_simulation(tmp_path / "attacked"))
    assert _participation(run.run_dir) == [
        MetricRow("fedavg", 1, "hospital_c", Split.PARTICIPATION, "rejected", 1.0)
    ]
    page = run.report.read_text()
    assert "<h2>Drop-outs per round</h2>" in page
    table = page[page.index("Drop-outs per round") :].split("</table>")[0]
    assert "<td>fedavg</td><td>1</td><td></td><td></td><td>hospital_c</td>" in table.replace(
        "\n", ""
    ).replace(" ", "")


def test_a_peer_refused_in_a_gossip_simulation_is_a_participation_row_each_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ExperimentRunner, "_attack", lambda self, experiment: _nan_tamper)
    settings = tiny_simulation(tmp_path, federation={"rounds": 2, "topology": {"name": "gossip"}})
    run = simulate(settings)
    assert _participation(run.run_dir) == [
        MetricRow("gossip-fedavg", round, "hospital_c", Split.PARTICIPATION, "rejected", 1.0)
        for round in (1, 2)
    ]


def test_a_clean_simulation_records_no_drop_out(tmp_path: Path) -> None:
    run = simulate(tiny_simulation(tmp_path))
    assert _participation(run.run_dir) == []
    assert "Drop-outs per round" not in run.report.read_text()
