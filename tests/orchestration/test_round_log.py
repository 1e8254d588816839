"""One log line per round and experiment, with hand-computed figures."""

from __future__ import annotations

import logging

import pytest

from medfed.data import SiteData
from medfed.orchestration.experiments import Experiment
from medfed.orchestration.metrics_log import MetricRow
from medfed.orchestration.round_log import RoundLog, describe, round_figures
from medfed.strategies.fedavg import FedAvg

ROWS = [
    MetricRow("fedavg", 2, "a", "train", "loss", 0.5),
    MetricRow("fedavg", 2, "b", "train", "loss", 0.25),
    MetricRow("fedavg", 2, "a", "train", "steps", 4.0),
    MetricRow("fedavg", 2, "a", "test", "dice", 0.8),
    MetricRow("fedavg", 2, "b", "test", "dice", 0.6),
    MetricRow("fedavg", 2, "c", "unseen", "dice", 0.4),
    MetricRow("fedavg", 2, "a", "privacy", "epsilon", 1.5),
    MetricRow("fedavg", 2, "server", "privacy", "client_epsilon", 2.5),
]


def test_the_figures_of_a_round() -> None:
    assert round_figures(ROWS, "dice") == pytest.approx(
        {"loss": 0.375, "dice": 0.7, "unseen dice": 0.4, "epsilon": 2.5}
    )
    assert round_figures(ROWS[:2], "auc") == {"loss": 0.375}
    assert describe({"loss": 0.375, "epsilon": float("inf")}) == "loss 0.375, epsilon inf"
    assert describe({}) == "no metrics"


def test_a_line_per_round_and_per_experiment_with_wall_times(caplog: pytest.LogCaptureFixture) -> None:
    times = iter([0.0, 10.0, 12.5, 20.0, 26.0])
    log = RoundLog("dice", rounds=3, clock=lambda: next(times))
    sites = {"a": SiteData(name="a", cases=()), "b": SiteData(name="b", cases=())}
    first = Experiment("fedavg", "federated", FedAvg(), sites)
    second = Experiment("centralized", "centralized", FedAvg(), {})
    with caplog.at_level(logging.INFO, logger="medfed.orchestration.round_log"):
        log.on_plan([first, second])
        log.on_experiment(first, 1)
        log.on_recorded("fedavg", 2, ROWS)
        log.on_recorded("fedavg", 3, ROWS[:2])
        log.on_experiment_end(first)
    assert caplog.messages == [
        "experiment 1/2: fedavg (federated, 2 site(s), resuming after round 1)",
        "fedavg round 2/3: loss 0.375, dice 0.700, unseen dice 0.400, epsilon 2.500 (2.5 s)",
        "fedavg round 3/3: loss 0.375 (7.5 s)",
        "experiment 1/2: fedavg done in 16.0 s: loss 0.375",
    ]
