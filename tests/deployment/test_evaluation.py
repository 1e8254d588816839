"""Federated evaluation without gRPC: the metrics payload, the site's held-out split, the site's
answer to an evaluation step, and the server's collection on the board."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from site_helpers import tiny_job, tiny_site

from medfed.config.schema import FederationConfig
from medfed.data import build_dataset
from medfed.deployment.client import run_client
from medfed.deployment.evaluation import (
    EVALUATE,
    SiteEvaluation,
    accept_metrics,
    decode_metrics,
    encode_metrics,
    holdout_split,
)
from medfed.deployment.job import parse_site_job
from medfed.deployment.site_builder import SiteBuilder, SiteOptions
from medfed.errors import DataError, UpdateRejected
from medfed.models import build_model
from medfed.orchestration.site import cpu_weights
from medfed.training import evaluate_cases
from medfed.transport.board import PostedTask, RoundBoard
from medfed.transport.client import FetchedStep
from medfed.transport.errors import PayloadError
from medfed.transport.payload import decode_task, encode_task
from medfed.transport.protobuf import Kind, SubmitOutcome
from medfed.types import ServerState, TrainTask

SEED = 3


def _job(strategy: str = "fedavg", **federation: int) -> str:
    return tiny_job(
        SEED,
        model={"norm": "batch"},
        training={"optimizer": "sgd", "lr": 0.05},
        strategy={"name": strategy},
        federation={"rounds": 2, **federation},
    )


# ----- the metrics payload ---------------------------------------------------------------------
def test_metrics_round_trip_and_undefined_values_stay_at_the_site() -> None:
    payload = encode_metrics({"dice": 0.75, "hd95": math.nan})
    assert json.loads(payload) == {"dice": 0.75}
    assert decode_metrics(payload, task="segmentation") == {"dice": 0.75}
    assert decode_metrics(b'{"hd95": 3, "dice": 0}', task="segmentation") == {"hd95": 3.0, "dice": 0.0}
    both = {"accuracy": 1.0, "auc": 0.5, "sensitivity": 0.0, "specificity": 1.0}
    assert decode_metrics(encode_metrics(both), task="classification") == both


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe\x00", "not JSON"),
        (b"\x80\x04\x95pickle", "not JSON"),
        (b"", "not JSON"),
        (b'{"dice": 0.5', "not JSON"),
        (b'{"dice": NaN}', "not JSON"),
        (b'{"dice": Infinity}', "not JSON"),
        (b"[0.5]", "JSON object"),
        (b"0.5", "JSON object"),
        (b'{"dice": "0.5"}', "number"),
        (b'{"dice": true}', "number"),
        (b'{"dice": null}', "number"),
        (b'{"dice": {"x": 1}}', "number"),
        (b'{"dice": 1.5}', "outside"),
        (b'{"dice": -0.01}', "outside"),
        (b'{"hd95": -1}', "outside"),
        (b'{"dice": 1e400}', "outside"),
        (b'{"hd95": 1' + b"0" * 400 + b"}", "outside"),
        (b'{"loss": 0.1}', "unknown metric 'loss'"),
        (b'{"accuracy": 0.9}', "unknown metric 'accuracy'"),  # not a segmentation metric
    ],
)
def test_malformed_metrics_are_refused(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        decode_metrics(payload, task="segmentation")
    with pytest.raises(UpdateRejected, match=reason):
        accept_metrics("segmentation")("hospital_a", payload)


# ----- the server's half -----------------------------------------------------------------------
def test_the_board_keeps_good_metrics_and_a_refused_reply_counts_as_the_sites_answer() -> None:
    board = RoundBoard()
    for site in ("a", "b", "c"):
        assert board.task_for(site, timeout_s=0) is None  # heard from: reachable
    evaluation = SiteEvaluation(
        board, sites=["a", "b", "c", "z"], task="segmentation", timeout_s=5, seen_within_s=60
    )
    assert evaluation.reachable() == ["a", "b", "c"]  # z never called: not asked
    weights = {"w": torch.arange(4.0)}
    answers = {"a": encode_metrics({"dice": 0.5}), "b": b'{"dice": 2.0}'}

    def answer() -> None:
        for site, payload in answers.items():
            posted = board.task_for(site, timeout_s=5)
            assert isinstance(posted, PostedTask) and posted.step == EVALUATE and posted.round == 4
            assert torch.equal(decode_task(posted.payload).weights["w"], weights["w"])
            if site == "b":
                with pytest.raises(UpdateRejected, match="outside"):
                    board.receive(site, posted.task_id, payload)
                assert board.task_for(site, timeout_s=0) is None  # refused, and not asked again
            else:
                board.receive(site, posted.task_id, payload)
        posted = board.task_for("c", timeout_s=5)
        assert isinstance(posted, PostedTask)
        board.decline("c", posted.task_id, "nothing held out")

    thread = threading.Thread(target=answer)
    thread.start()
    assert evaluation(ServerState(round=4, weights=weights)) == {"a": {"dice": 0.5}}
    thread.join()


def test_evaluation_follows_simulations_rule() -> None:
    every_two = FederationConfig(rounds=5, evaluate_every=2)
    assert [r for r in range(1, 6) if every_two.evaluates_after(r)] == [2, 4, 5]
    last_only = FederationConfig(rounds=5, evaluate_every=0)
    assert [r for r in range(1, 6) if last_only.evaluates_after(r)] == [5]


# ----- the site's split ------------------------------------------------------------------------
def test_holdout_split_is_deterministic_disjoint_and_complete(tmp_path: Path) -> None:
    site = tiny_site(tmp_path, 10)
    train, held_out = holdout_split(site, 0.2, SEED)
    assert (len(train.cases), len(held_out.cases)) == (8, 2)
    ids = lambda data: [case.case_id for case in data.cases]  # noqa: E731
    assert not set(ids(train)) & set(ids(held_out))
    assert sorted(ids(train) + ids(held_out)) == sorted(ids(site))
    assert holdout_split(site, 0.2, SEED) == (train, held_out)
    assert holdout_split(site, 0.0, SEED) == (site, replace(site, cases=()))
    one = replace(site, cases=site.cases[:1])
    assert holdout_split(one, 0.2, SEED) == (one, replace(site, cases=()))
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="holdout"):
            holdout_split(site, bad, SEED)
        with pytest.raises(ValueError, match="holdout"):
            SiteOptions(state_dir=tmp_path, holdout=bad)


def test_held_out_cases_do_not_train_and_a_site_with_too_few_evaluates_nothing(tmp_path: Path) -> None:
    site = tiny_site(tmp_path, 10)
    assert SiteBuilder(site, SiteOptions(tmp_path / "s1")).site_for(_job()).num_samples == 8
    assert SiteBuilder(site, SiteOptions(tmp_path / "s2", holdout=0.0)).site_for(_job()).num_samples == 10
    lonely = SiteBuilder(replace(site, cases=site.cases[:1]), SiteOptions(tmp_path / "s3"))
    task = TrainTask(round=1, weights=cpu_weights(lonely.site_for(_job()).model))
    with pytest.raises(DataError, match="no held-out cases"):
        lonely.evaluate(_job(), task)


# ----- the site's answer -----------------------------------------------------------------------
class _Channel:
    """Plays the server for ``run_client``: hands out ``steps``, then says the job is done."""

    def __init__(self, steps: list[FetchedStep]) -> None:
        self.steps = steps
        self.answers: dict[str, bytes] = {}
        self.declined: dict[str, str] = {}

    def fetch(self) -> FetchedStep | Kind:
        return self.steps.pop(0) if self.steps else Kind.DONE

    def answer(self, task_id: str, round: int, payload: bytes) -> SubmitOutcome:
        self.answers[task_id] = payload
        return SubmitOutcome(accepted=True)

    def decline(self, task_id: str, round: int, reason: str) -> SubmitOutcome:
        self.declined[task_id] = reason
        return SubmitOutcome(accepted=True)

    def close(self) -> None:
        pass


def test_a_site_answers_an_evaluation_step_with_its_fedbn_model_and_training_is_unchanged(
    tmp_path: Path,
) -> None:
    site = tiny_site(tmp_path, 10)
    job = _job("fedbn")
    builder = SiteBuilder(site, SiteOptions(tmp_path / "state"))
    local = builder.site_for(job)
    start = cpu_weights(local.model)
    local.train(TrainTask(round=1, weights=start))
    global_model = {
        name: tensor + 0.01 if tensor.is_floating_point() else tensor for name, tensor in start.items()
    }
    message = encode_task(TrainTask(round=1, weights=global_model))
    steps = [
        FetchedStep("t1", 1, EVALUATE, message, job),
        FetchedStep("t2", 1, EVALUATE, b"garbage", job),
        FetchedStep("t3", 2, EVALUATE, message, job),  # the round of the step and of the model differ
    ]
    channel = _Channel(steps)
    state_before = {name: tensor.clone() for name, tensor in local.state.weights.items()}
    assert run_client(lambda: channel, builder) == 0  # type: ignore[arg-type, return-value]

    metrics = decode_metrics(channel.answers["t1"], task="segmentation")
    assert set(channel.declined) == {"t2", "t3"} and "round" in channel.declined["t3"]
    personal = local.strategy.site_model(global_model, local.state)
    assert any(not torch.equal(personal[k], global_model[k]) for k in local.state.weights)  # own BN stats
    spec = parse_site_job(job).model
    model = build_model(spec.name, spec.params, seed=SEED)
    model.load_state_dict(personal)
    _, held_out = holdout_split(site, 0.2, SEED)
    dataset = build_dataset(held_out.cases, task="segmentation", augment=False, seed=SEED)
    assert metrics == pytest.approx(
        {
            "dice": evaluate_cases(model, dataset, task="segmentation", batch_size=4, surface_distance=False)[
                0
            ]["dice"]
        }
    )
    assert all(torch.equal(local.state.weights[k], v) for k, v in state_before.items())

    # Training after an evaluation gives the same update as training without one.
    fresh = SiteBuilder(site, SiteOptions(tmp_path / "fresh")).site_for(job)
    fresh.train(TrainTask(round=1, weights=start))
    task = TrainTask(round=2, weights=global_model)
    after_eval, plain = local.train(task), fresh.train(task)
    for name, tensor in plain.weights.items():
        torch.testing.assert_close(after_eval.weights[name], tensor, rtol=0, atol=0, msg=name)
