from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from peer_fakes import SITES, FakeGrid


@pytest.fixture
def fake_grid() -> Callable[..., FakeGrid]:
    def make(failing: set[str] | None = None) -> FakeGrid:
        offsets = {site: float(index + 1) for index, site in enumerate(SITES)}
        samples = {site: 10 * (index + 1) for index, site in enumerate(SITES)}
        return FakeGrid(offsets, samples, failing or set())

    return make


@pytest.fixture
def start() -> dict[str, torch.Tensor]:
    return {"w": torch.zeros(2)}
