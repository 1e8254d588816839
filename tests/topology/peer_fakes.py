"""A fake grid for the topology tests."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from medfed.orchestration.grid import Reply
from medfed.types import TrainResult, TrainTask


class FakeGrid:
    """Sites whose training adds ``offset[site]`` to the model; ``failing`` sites never answer."""

    def __init__(self, offsets: Mapping[str, float], samples: Mapping[str, int], failing: set[str]) -> None:
        self.offsets, self.samples, self.failing = dict(offsets), dict(samples), failing
        self.calls: list[tuple[str, int, torch.Tensor]] = []

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        results = []
        for site, task in tasks.items():
            self.calls.append((site, task.round, task.weights["w"].clone()))
            if site in self.failing:
                continue
            weights = {"w": task.weights["w"] + self.offsets[site]}
            results.append(TrainResult(site, task.round, weights, self.samples[site]))
        return results

    def train_protected(self, tasks: object, invitations: object, reply: Reply) -> dict[str, object]:
        raise AssertionError("not used")

    def step(self, round: int, step: str, messages: object, reply: Reply) -> dict[str, object]:
        raise AssertionError("not used")


SITES = ("a", "b", "c", "d")
