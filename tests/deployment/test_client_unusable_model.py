"""A site that is sent an unusable global model, or whose training diverges, declines the round
with the reason and keeps serving instead of exiting."""

from __future__ import annotations

import torch

from medfed.deployment.client import run_client
from medfed.transport.client import FetchedTask
from medfed.transport.protobuf import Kind, SubmitOutcome
from medfed.types import TrainTask


class _Channel:
    """Plays the server: hands out ``fetched_tasks``, then says the job is done."""

    def __init__(self, fetched_tasks: list[FetchedTask]) -> None:
        self.fetched_tasks = fetched_tasks
        self.declined: dict[str, str] = {}

    def fetch(self) -> FetchedTask | Kind:
        return self.fetched_tasks.pop(0) if self.fetched_tasks else Kind.DONE

    def decline(self, task_id: str, round: int, reason: str) -> SubmitOutcome:
        self.declined[task_id] = reason
        return SubmitOutcome(accepted=True)

    def close(self) -> None:
        pass


class _DivergingSite:
    trainer = None

    def __init__(self) -> None:
        self.trained: list[int] = []

    def train(self, task: TrainTask) -> None:
        self.trained.append(task.round)
        raise FloatingPointError("local training diverged: the loss is not finite; lower lr")


class _Builder:
    def __init__(self) -> None:
        self.site = _DivergingSite()

    def train(self, job_json: str, task: TrainTask) -> None:
        self.site.train(task)


def test_a_non_finite_model_is_declined_untrained_and_divergence_is_declined() -> None:
    poisoned = {"w": torch.tensor([1.0, float("inf")]), "n": torch.tensor(3)}
    scaffold_task = TrainTask(
        round=2, weights={"w": torch.ones(2)}, extra={"control": {"w": torch.tensor([float("nan"), 0.0])}}
    )
    channel = _Channel(
        [
            FetchedTask("t1", "{}", TrainTask(round=1, weights=poisoned)),
            FetchedTask("t2", "{}", scaffold_task),
            FetchedTask("t3", "{}", TrainTask(round=3, weights={"w": torch.ones(2)})),
        ]
    )
    builder = _Builder()
    assert run_client(lambda: channel, builder) == 0  # type: ignore[arg-type, return-value]
    assert channel.declined == {
        "t1": "the global model of round 1 is not finite in ['w']",
        "t2": "the global model of round 2 is not finite in ['control/w']",
        "t3": "local training diverged: the loss is not finite; lower lr",
    }
    assert builder.site.trained == [3]
