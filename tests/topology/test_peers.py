"""A peer's answer is checked like a client-server update: invalid ones are skipped."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch

from medfed.errors import CheckpointError
from medfed.orchestration.grid import Reply
from medfed.topology.peers import PeerState, restored_state, saved_states, train
from medfed.types import ServerState, SiteState, TrainResult, TrainTask


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


def test_a_saved_state_restores_to_the_same_state() -> None:
    state = PeerState(
        round=3,
        trainings=7,
        models={"a": {"w": torch.ones(2)}, "b": {"w": torch.zeros(2)}},
        samples={"a": 4, "b": 9},
        versions={"a": 2, "b": 5},
        seen={"a": {"a": 2, "b": 4}, "b": {"a": 1, "b": 5}},
        holder="b",
    )
    server, sites = saved_states(state, {"w": torch.full((2,), 0.5)})
    assert server.round == 3 and torch.equal(server.weights["w"], torch.full((2,), 0.5))
    assert _same(restored_state(server, sites), state)


def _same(a: PeerState, b: PeerState) -> bool:
    models_equal = all(torch.equal(a.models[s]["w"], b.models[s]["w"]) for s in b.models)
    return models_equal and (a.round, a.trainings, a.samples, a.versions, a.seen, a.holder) == (
        b.round,
        b.trainings,
        b.samples,
        b.versions,
        b.seen,
        b.holder,
    )


def test_a_client_server_checkpoint_is_not_a_peer_state() -> None:
    with pytest.raises(CheckpointError, match="peer-to-peer"):
        restored_state(ServerState(1, {"w": torch.ones(1)}), {"a": SiteState()})
