"""The round loop against hostile results: one site's update can end neither the round loop nor
the run, and no non-finite model is accepted or checkpointed."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from medfed.orchestration import loop
from medfed.orchestration.checkpoint import (
    Checkpoint,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from medfed.orchestration.loop import AggregationFailed, RoundPlan, run_round, run_rounds
from medfed.orchestration.validation import checked_result, non_finite_keys
from medfed.strategies import FedAvg, Scaffold
from medfed.types import ServerState, TrainResult, TrainTask

Answer = Callable[[str, TrainTask], TrainResult]
MODEL = {"conv.weight": torch.zeros(2, 3), "bn.num_batches_tracked": torch.tensor(0)}


class Scripted:
    """Sites that answer each task with a fixed function of it."""

    def __init__(self, answers: Mapping[str, Answer]) -> None:
        self.answers = answers

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        return [self.answers[site](site, task) for site, task in tasks.items()]


def honest(step: float, **changes: object) -> Answer:
    def answer(site: str, task: TrainTask) -> TrainResult:
        weights = {k: t + step if t.is_floating_point() else t + 1 for k, t in task.weights.items()}
        result = TrainResult(site, task.round, weights, num_samples=10, metrics={"loss": 0.5, "steps": 3.0})
        return replace(result, **changes)  # type: ignore[arg-type]

    return answer


def _plan(answers: Mapping[str, Answer], rounds: int = 3) -> RoundPlan:
    return RoundPlan(rounds=rounds, sites=sorted(answers), min_sites=2)


HOSTILE = {
    "huge weights": lambda site, task: replace(
        honest(1.0)(site, task),
        weights={"conv.weight": torch.full((2, 3), 1e38), "bn.num_batches_tracked": torch.tensor(1)},
    ),
    "huge num_samples": honest(1.0, num_samples=10**400),
    "huge metric": honest(1.0, metrics={"loss": 10**400}),
    "NaN metric": honest(1.0, metrics={"loss": float("nan")}),
    "infinite metric": honest(1.0, metrics={"steps": float("inf")}),
}


@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_one_hostile_site_is_left_out_and_the_run_finishes_finite(attack: str, tmp_path: Path) -> None:
    answers = {"a": honest(1.0), "b": honest(3.0), "evil": HOSTILE[attack]}
    saved: list[list[str]] = []

    def checkpoint(state: ServerState, results: list[TrainResult]) -> None:
        save_checkpoint(checkpoint_path(tmp_path, state.round), Checkpoint(state))
        saved.append([r.site for r in results])

    final = run_rounds(FedAvg(), FedAvg().init(MODEL), _plan(answers), Scripted(answers), on_round=checkpoint)
    # Each round is the mean of a (+1) and b (+3) only: +2 per round.
    torch.testing.assert_close(final.weights["conv.weight"], torch.full((2, 3), 6.0))
    assert saved == [["a", "b"]] * 3
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and not non_finite_keys(load_checkpoint(latest).server.weights)


def _scaffold_answer(delta: Callable[[TrainTask], dict[str, dict[str, torch.Tensor]]]) -> Answer:
    return lambda site, task: replace(honest(1.0)(site, task), extra=delta(task))


def test_scaffold_results_without_a_fitting_delta_control_are_left_out() -> None:
    def zeros(task: TrainTask) -> dict[str, dict[str, torch.Tensor]]:
        return {"delta_control": {"conv.weight": torch.zeros(2, 3)}}

    answers = {
        "a": _scaffold_answer(zeros),
        "b": _scaffold_answer(zeros),
        "missing": honest(1.0),
        "misshapen": _scaffold_answer(lambda task: {"delta_control": {"conv.weight": torch.zeros(7)}}),
        "extra key": _scaffold_answer(
            lambda task: {
                "delta_control": {"conv.weight": torch.zeros(2, 3), "bn.num_batches_tracked": torch.zeros(1)}
            }
        ),
    }
    strategy = Scaffold()
    state, results = run_round(strategy, strategy.init(MODEL), _plan(answers), Scripted(answers))
    assert [r.site for r in results] == ["a", "b"]
    torch.testing.assert_close(state.weights["conv.weight"], torch.ones(2, 3))


def test_results_checked_where_they_arrived_are_not_scanned_again_but_their_extras_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scanned: list[str] = []
    monkeypatch.setattr(loop, "validate_result", lambda result, *args, **kwargs: scanned.append(result.site))

    def checked(answer: Answer) -> Answer:
        return lambda site, task: checked_result(answer(site, task), task.weights, round=task.round)

    fitting = _scaffold_answer(lambda task: {"delta_control": {"conv.weight": torch.zeros(2, 3)}})
    answers = {
        "a": checked(fitting),
        "b": checked(fitting),
        "missing": checked(honest(1.0)),
        "plain": fitting,
    }
    strategy = Scaffold()
    _, results = run_round(strategy, strategy.init(MODEL), _plan(answers), Scripted(answers))
    assert [r.site for r in results] == ["a", "b", "plain"]
    assert scanned == ["plain"]


def test_a_non_finite_aggregate_is_refused_and_nothing_is_checkpointed(tmp_path: Path) -> None:
    # float16 tops out at 65504: 100 * 1000 samples overflows the weighted sum, yet every
    # update is valid on its own.
    model = {"w": torch.zeros(2, dtype=torch.float16)}
    answers = {site: honest(100.0, num_samples=1000) for site in ("a", "b")}
    state = FedAvg().init(model)
    with pytest.raises(AggregationFailed, match="round 1: the aggregated state is not finite in \\['w'\\]"):
        run_rounds(
            FedAvg(),
            state,
            _plan(answers),
            Scripted(answers),
            on_round=lambda s, r: pytest.fail("checkpointed"),
            max_attempts=2,
        )


class FailsOnce(FedAvg):
    """FedAvg whose first aggregation raises as a hostile input slipping past validation might."""

    def __init__(self) -> None:
        self.calls = 0

    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("The size of tensor a (3) must match the size of tensor b (7)\nat dimension 1")
        return super().aggregate(state, results, num_sites)


def test_an_exception_inside_aggregate_fails_the_round_which_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers = {"a": honest(1.0), "b": honest(3.0)}
    strategy = FailsOnce()
    with pytest.raises(AggregationFailed, match="aggregation failed: RuntimeError: The size"):
        run_round(strategy, strategy.init(MODEL), _plan(answers), Scripted(answers))
    strategy = FailsOnce()
    final = run_rounds(
        strategy, strategy.init(MODEL), _plan(answers, rounds=2), Scripted(answers), max_attempts=2
    )
    assert final.round == 2 and strategy.calls == 3
    assert (
        "attempt 1 of 2" in caplog.text
        and "must match the size of tensor b (7)\\nat dimension 1" in caplog.text
    )
