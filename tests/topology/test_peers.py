"""A peer's answer is checked like a client-server update: invalid ones are skipped."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from medfed.orchestration.grid import Reply
from medfed.topology.peers import PeerState, train
from medfed.types import TrainResult, TrainTask


class HostileGrid:
    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        task = tasks["a"]
        return [
            TrainResult("a", task.round, {"w": torch.full((2,), float("nan"))}, 1),  # not finite
            TrainResult("b", task.round, task.weights, 1),  # sent no task
            TrainResult("c", task.round, {"w": torch.zeros(3)}, 1),  # wrong shape
            TrainResult("d", task.round + 1, task.weights, 1),  # another round
            TrainResult("e", task.round, task.weights, 1),
            TrainResult("e", task.round, task.weights, 2),  # a second answer
        ]

    def train_protected(self, tasks: object, invitations: object, reply: Reply) -> dict[str, object]:
        return {}

    def step(self, round: int, step: str, messages: object, reply: Reply) -> dict[str, object]:
        return {}


def test_only_valid_first_answers_to_a_task_are_kept() -> None:
    task = TrainTask(round=1, weights={"w": torch.zeros(2)})
    accepted = train(HostileGrid(), {site: task for site in "acde"})
    assert list(accepted) == ["e"] and accepted["e"].num_samples == 1


def test_a_state_starts_with_every_site_on_the_initial_model() -> None:
    start = {"w": torch.ones(1)}
    state = PeerState.start(start, ["a", "b"])
    assert state.models == {"a": start, "b": start} and state.versions == {"a": 0, "b": 0}
    assert state.seen == {"a": {"a": 0, "b": 0}, "b": {"a": 0, "b": 0}}
