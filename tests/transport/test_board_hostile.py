"""The board against a hostile site: its numbers, its bytes and its decline reasons."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import save

from medfed.errors import UpdateRejected
from medfed.transport.board import MAX_REASON_CHARS, RoundBoard
from medfed.transport.errors import PayloadError
from medfed.transport.payload import encode_result
from medfed.types import TrainResult, TrainTask

WEIGHTS = {"w": torch.zeros(2, 2)}


def _board(sites: list[str]) -> tuple[RoundBoard, str]:
    board = RoundBoard()
    board.post(1, {site: TrainTask(round=1, weights=WEIGHTS) for site in sites})
    posted = board.task_for(sites[0], timeout_s=0.1)
    return board, posted.task_id  # type: ignore[union-attr]


def _payload(num_samples: str, metrics: str) -> bytes:
    metadata = {"round": "1", "schema_version": "1", "num_samples": num_samples, "metrics": metrics}
    return save({"weights/w": torch.ones(2, 2)}, metadata=metadata)


@pytest.mark.parametrize(
    ("num_samples", "metrics", "reason"),
    [
        (
            "1" + "0" * 400,
            "{}",
            "num_samples must be a finite number in \\[1, 1e\\+09\\], got an integer of about 401 digits",
        ),
        ("3", json.dumps({"loss": 10**400}), "metric 'loss' must be a finite number .* about 401 digits"),
        ("3", '{"loss": NaN}', "metric 'loss' must be a finite number"),
        ("3", '{"loss": -Infinity}', "metric 'loss' must be a finite number"),
    ],
)
def test_numbers_out_of_bounds_are_refused_as_the_sites_answer(
    num_samples: str, metrics: str, reason: str
) -> None:
    board, task_id = _board(["a", "b"])
    with pytest.raises(UpdateRejected, match=reason):
        board.receive("a", task_id, _payload(num_samples, metrics))
    board.receive("b", task_id, encode_result(TrainResult("b", 1, {"w": torch.ones(2, 2)}, 3)))
    assert list(board.collect(1)) == ["b"]  # a's refused answer closed its part of the round


def test_a_decline_reason_is_escaped_and_bounded_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    board, task_id = _board(["a"])
    reason = "budget spent\nINFO medfed.orchestration.loop: round 99 done" + "x" * (1 << 20)
    with caplog.at_level(logging.WARNING):
        board.decline("a", task_id, reason)
    [record] = [r for r in caplog.records if "declined" in r.getMessage()]
    line = record.getMessage()
    assert "\n" not in line and "budget spent\\nINFO medfed.orchestration.loop: round 99 done" in line
    assert len(line) < MAX_REASON_CHARS + 100 and f"({len(reason)} characters)" in line
    assert board.collect(0.1) == {}


def test_an_answer_that_raises_anything_while_read_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    board = RoundBoard()

    def accept(site: str, payload: bytes) -> object:
        raise OverflowError("int too large\nINFO round 99 done")

    board.post(1, {"a": TrainTask(round=1, weights=WEIGHTS)}, accept=accept)
    task_id = board.task_for("a", timeout_s=0.1).task_id  # type: ignore[union-attr]
    with pytest.raises(UpdateRejected, match="unreadable answer \\(OverflowError\\)"):
        board.receive("a", task_id, b"anything")
    assert board.collect(0.1) == {}
    assert "failed: OverflowError: int too large\\nINFO round 99 done" in caplog.text


def test_a_payload_error_quoting_the_sites_bytes_is_escaped_and_bounded() -> None:
    board, task_id = _board(["a"])
    forged = save(
        {"weights/w": torch.ones(2, 2), "x" * 5000 + "\nINFO round 99 done": torch.ones(1)},
        metadata={"round": "1"},
    )
    with pytest.raises(PayloadError) as caught:
        board.receive("a", task_id, forged)
    message = str(caught.value)
    assert message.startswith("unexpected tensor key 'xxx") and "\n" not in message and len(message) < 600
