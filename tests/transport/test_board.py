"""The round board: offers, submissions, deadlines and stale results, without gRPC."""

from __future__ import annotations

import threading

import pytest
import torch

from medfed.errors import UpdateRejected
from medfed.orchestration.grid import Absence
from medfed.orchestration.validation import CheckedResult
from medfed.transport.board import DONE, MAX_REASON_CHARS, PostedTask, RoundBoard
from medfed.transport.grid import GrpcGrid
from medfed.transport.payload import decode_task, encode_result
from medfed.types import TrainResult, TrainTask

WEIGHTS = {"w": torch.zeros(2, 2)}


def _result(site: str, round: int = 1, value: float = 1.0) -> TrainResult:
    return TrainResult(site=site, round=round, weights={"w": torch.full((2, 2), value)}, num_samples=2)


def _posted(sites: list[str], round: int = 1) -> RoundBoard:
    board = RoundBoard()
    task = TrainTask(round=round, weights=WEIGHTS)
    board.post(round, {site: task for site in sites})
    return board


def _submit(board: RoundBoard, task_id: str, result: TrainResult) -> None:
    board.receive(result.site, task_id, encode_result(result))


def _collect(board: RoundBoard, timeout_s: float) -> list[TrainResult]:
    return list(board.collect(timeout_s).values())


def _task_for(board: RoundBoard, site: str) -> PostedTask:
    posted = board.task_for(site, timeout_s=0.1)
    assert isinstance(posted, PostedTask)
    return posted


def test_offer_carries_the_encoded_task_only_for_asked_sites() -> None:
    board = _posted(["a", "b"])
    posted = _task_for(board, "a")
    assert posted.round == 1 and torch.equal(decode_task(posted.payload).weights["w"], WEIGHTS["w"])
    assert board.task_for("z", timeout_s=0.05) is None


def test_results_are_collected_in_task_order_and_once() -> None:
    board = _posted(["a", "b"])
    task_id = _task_for(board, "a").task_id
    _submit(board, task_id, _result("b", value=2.0))
    _submit(board, task_id, _result("a"))
    with pytest.raises(UpdateRejected, match="no open task"):
        _submit(board, task_id, _result("a"))
    assert board.task_for("a", timeout_s=0.05) is None  # answered: nothing more this round
    assert [r.site for r in _collect(board, 1)] == ["a", "b"]


def test_accepted_results_are_marked_checked_for_the_round_loop() -> None:
    board = _posted(["a"])
    _submit(board, _task_for(board, "a").task_id, _result("a"))
    (result,) = _collect(board, 1)
    assert isinstance(result, CheckedResult) and result.site == "a" and result.num_samples == 2


def test_invalid_update_counts_as_answer_and_is_left_out() -> None:
    board = _posted(["a", "b"])
    task_id = _task_for(board, "a").task_id
    with pytest.raises(UpdateRejected, match="NaN"):
        _submit(board, task_id, _result("a", value=float("nan")))
    _submit(board, task_id, _result("b"))
    assert [r.site for r in _collect(board, 1)] == ["b"]


def test_deadline_closes_the_round_and_late_or_stale_results_are_refused() -> None:
    board = _posted(["a", "b"])
    task_id = _task_for(board, "a").task_id
    _submit(board, task_id, _result("a"))
    assert [r.site for r in _collect(board, 0.1)] == ["a"]
    with pytest.raises(UpdateRejected, match="stale"):
        _submit(board, task_id, _result("b"))
    board.post(2, {"b": TrainTask(round=2, weights=WEIGHTS)})
    with pytest.raises(UpdateRejected, match="stale"):
        _submit(board, task_id, _result("b", round=2))


def test_wrong_round_is_rejected_by_validation() -> None:
    board = _posted(["a"], round=3)
    task_id = _task_for(board, "a").task_id
    with pytest.raises(UpdateRejected, match="round"):
        _submit(board, task_id, _result("a", round=2))


def test_poller_wakes_up_on_post_and_on_finish() -> None:
    board = RoundBoard()
    answers: list[object] = []
    poller = threading.Thread(target=lambda: answers.append(board.task_for("a", timeout_s=5)))
    poller.start()
    board.post(1, {"a": TrainTask(round=1, weights=WEIGHTS)})
    poller.join(timeout=5)
    assert isinstance(answers[0], PostedTask)
    board.finish()
    assert board.task_for("a", timeout_s=5) == DONE
    assert board.wait_told_done(["a"], timeout_s=0.1)
    assert not board.wait_told_done(["a", "b"], timeout_s=0.05)


def test_grid_returns_results_that_arrive_before_the_deadline() -> None:
    board = RoundBoard()
    connector = GrpcGrid(board, round_timeout_s=5, step_timeout_s=5)

    def site() -> None:
        posted = board.task_for("a", timeout_s=5)
        assert isinstance(posted, PostedTask)
        _submit(board, posted.task_id, _result("a"))

    worker = threading.Thread(target=site)
    worker.start()
    results = connector.train({"a": TrainTask(round=1, weights=WEIGHTS)})
    worker.join(timeout=5)
    assert [r.site for r in results] == ["a"]
    assert connector.train({}) == []
    with pytest.raises(ValueError):
        GrpcGrid(board, round_timeout_s=0, step_timeout_s=5)


def test_a_decline_reason_is_kept_as_one_short_escaped_line_per_site() -> None:
    board = _posted(["a", "b"], round=3)
    task_id = _task_for(board, "a").task_id
    sent = "site policy: no DP-SGD\nINFO forged line \x1b[31m" + "x" * 10_000
    board.decline("a", task_id, sent)
    reason = board.declines()["a"]
    assert reason.startswith("round 3: site policy: no DP-SGD\\nINFO forged line \\x1b[31m")
    assert len(reason) <= len("round 3: ") + MAX_REASON_CHARS + 30 and reason.isprintable()
    assert reason.endswith(f"... ({len(sent)} characters)")
    assert board.task_for("a", timeout_s=0.05) is None  # answered for the round: not asked again
    assert "b" not in board.declines()


def test_each_drop_out_of_a_round_is_kept_with_why_and_a_rejection_with_its_reason() -> None:
    board = _posted(["a", "b", "c", "d"], round=4)
    task_id = _task_for(board, "a").task_id
    _submit(board, task_id, _result("a", round=4))
    with pytest.raises(UpdateRejected, match="round"):
        _submit(board, task_id, _result("b", round=3))  # fails validation
    board.decline("c", task_id, "budget spent")
    assert len(_collect(board, 0.05)) == 1  # d never answers
    assert board.absences(4) == {"b": Absence.REJECTED, "c": Absence.DECLINED, "d": Absence.NO_ANSWER}
    assert board.absences(3) == {}
    assert board.rejections()["b"].startswith("round 4: ") and "round" in board.rejections()["b"][9:]
    assert set(board.rejections()) == {"b"}
    with pytest.raises(UpdateRejected, match="stale"):
        _submit(board, task_id, _result("d", round=4))  # to a closed posting: logged only
    assert set(board.rejections()) == {"b"}
    board.post(4, {"a": TrainTask(round=4, weights=WEIGHTS)})  # the round tried again
    assert board.absences(4) == {}


def test_a_step_after_the_round_evaluation_or_ledger_is_no_drop_out_but_a_protocol_step_is() -> None:
    board = _posted(["a", "b"], round=2)
    task_id = _task_for(board, "a").task_id
    for site in ("a", "b"):
        _submit(board, task_id, _result(site, round=2))
    _collect(board, 1)
    board.post_step(2, "evaluate", {"a": b"", "b": b""}, accept=lambda site, payload: payload, reply_limit=10)
    board.decline("a", _task_for(board, "a").task_id, "no held-out cases")
    board.collect(0.05)  # b does not answer
    assert board.absences(2) == {}
    board.post_step(
        2,
        "secagg/unmask",
        {"a": b"", "b": b""},
        accept=lambda site, payload: payload,
        reply_limit=10,
        in_round=True,
    )
    board.collect(0.05)
    assert board.absences(2) == {"a": Absence.NO_ANSWER, "b": Absence.NO_ANSWER}
