"""The rich progress: experiment k of N, the last round's figures, a timer per experiment."""

from __future__ import annotations

import io

from rich.console import Console

from medfed.cli.progress import simulation_progress
from medfed.orchestration.experiments import Experiment
from medfed.orchestration.metrics_log import MetricRow
from medfed.strategies.fedavg import FedAvg


def test_the_round_bar_names_the_experiment_and_restarts_its_timer() -> None:
    now = [0.0]
    output = io.StringIO()
    console = Console(file=output, width=200, force_terminal=False)
    experiments = [
        Experiment("fedavg", "federated", FedAvg(), {}),
        Experiment("local-a", "local", FedAvg(), {}),
    ]
    with simulation_progress(console, 2, "dice", clock=lambda: now[0]) as callbacks:
        assert callbacks.on_plan and callbacks.on_experiment and callbacks.on_recorded
        callbacks.on_plan(experiments)
        callbacks.on_experiment(experiments[0], 0)
        now[0] = 600.0  # ten minutes in the first experiment
        callbacks.on_experiment(experiments[1], 0)
        now[0] = 605.0
        callbacks.on_recorded("local-a", 1, [MetricRow("local-a", 1, "a", "test", "dice", 0.5)])
    last = output.getvalue().splitlines()[-2]
    assert last.startswith("experiment 2/2 local-a: rounds")
    assert "1/2 0:00:05" in last and "dice 0.500" in last  # not 0:10:05: the timer restarted


def test_a_run_of_several_seeds_shows_the_seed_next_to_the_experiment() -> None:
    output = io.StringIO()
    console = Console(file=output, width=200, force_terminal=False)
    experiments = [Experiment("fedavg", "federated", FedAvg(), {})]
    with simulation_progress(console, 2, "dice", clock=lambda: 0.0) as callbacks:
        assert callbacks.on_seed and callbacks.on_plan and callbacks.on_experiment
        for index, seed in enumerate([0, 1, 2]):
            callbacks.on_seed(seed, index + 1, 3)
            callbacks.on_plan(experiments)
            callbacks.on_experiment(experiments[0], 0)
    last = output.getvalue().splitlines()[-2]
    assert last.startswith("seed 2 (3 of 3), experiment 1/1 fedavg: rounds")
