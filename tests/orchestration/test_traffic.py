"""Bytes per site: the safetensors payloads a deployment would send, counted per round."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from medfed.orchestration.grid import Reply
from medfed.orchestration.traffic import MeteredGrid, transfer_rows
from medfed.topology.peers import Transfer
from medfed.transport.payload import encode_result, encode_task
from medfed.types import TrainResult, TrainTask

WEIGHTS = {"w": torch.zeros(100)}


class EchoGrid:
    """Every site but ``offline`` answers with the model it was sent."""

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        return [
            TrainResult(site, task.round, task.weights, 5)
            for site, task in tasks.items()
            if site != "offline"
        ]

    def train_protected(self, tasks: object, invitations: object, reply: Reply) -> dict[str, object]:
        return {}

    def step(self, round: int, step: str, messages: object, reply: Reply) -> dict[str, object]:
        return {}


def test_a_metered_grid_counts_tasks_received_and_results_sent_then_restarts() -> None:
    grid = MeteredGrid(EchoGrid())
    task = TrainTask(round=1, weights=WEIGHTS)
    grid.train({"a": task, "offline": task})
    rows = {(row.site, row.metric): row.value for row in grid.take_rows("x", 1)}
    result = len(encode_result(TrainResult("a", 1, WEIGHTS, 5)))
    assert rows == {
        ("a", "bytes_sent"): result,
        ("a", "bytes_received"): len(encode_task(task)),
        ("offline", "bytes_sent"): 0.0,
        ("offline", "bytes_received"): len(encode_task(task)),
    }
    assert grid.take_rows("x", 2) == []


def test_transfers_are_counted_for_sender_and_receiver() -> None:
    model = TrainResult("a", 3, WEIGHTS, 7)
    rows = transfer_rows("x", 1, [Transfer("a", "b", model), Transfer("a", "c", model)])
    size = float(len(encode_result(model)))
    assert {(row.site, row.metric): row.value for row in rows} == {
        ("a", "bytes_sent"): 2 * size,
        ("b", "bytes_sent"): 0.0,
        ("c", "bytes_sent"): 0.0,
        ("a", "bytes_received"): 0.0,
        ("b", "bytes_received"): size,
        ("c", "bytes_received"): size,
    }
    assert size > 400  # 100 float32 values and the metadata
