"""Exponential backoff with jitter."""

from __future__ import annotations

import pytest

from medfed.transport.backoff import Backoff


def test_delays_grow_to_the_cap_and_reset() -> None:
    backoff = Backoff(initial=1, maximum=8, factor=2, jitter=0)
    assert [backoff.next_delay() for _ in range(5)] == [1, 2, 4, 8, 8]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_jitter_stays_within_its_fraction() -> None:
    backoff = Backoff(initial=4, maximum=4, jitter=0.5, seed=1)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(2 <= delay <= 4 for delay in delays) and len(set(delays)) > 100


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 5, "maximum": 1}, {"factor": 0.5}, {"jitter": 2}])
def test_bad_arguments_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
