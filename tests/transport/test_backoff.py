"""Exponential backoff with jitter; re-sending an upload the server was too busy to take."""

from __future__ import annotations

import grpc
import pytest

from medfed.deployment.client import send_when_admitted
from medfed.transport.backoff import Backoff
from medfed.transport.protobuf import SubmitOutcome


def test_delays_grow_to_the_cap_and_reset() -> None:
    backoff = Backoff(initial=1, maximum=8, factor=2, jitter=0)
    assert [backoff.next_delay() for _ in range(5)] == [1, 2, 4, 8, 8]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_jitter_stays_within_its_fraction() -> None:
    backoff = Backoff(initial=4, maximum=4, jitter=0.5, seed=1)
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(2 <= delay <= 4 for delay in delays) and len(set(delays)) > 100


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"initial": 5, "maximum": 1}, {"factor": 0.5}, {"jitter": 2}]
)
def test_bad_arguments_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


class _Refusal(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def test_an_upload_refused_as_busy_is_sent_again_and_other_failures_are_not() -> None:
    refusals = [_Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED)] * 2

    def send() -> SubmitOutcome:
        if refusals:
            raise refusals.pop()
        return SubmitOutcome(accepted=True)

    quick = Backoff(initial=0.01, maximum=0.01, jitter=0)
    assert send_when_admitted(send, backoff=quick).accepted and not refusals
    refusals.extend([_Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED)] * 3)
    with pytest.raises(grpc.RpcError):
        send_when_admitted(send, backoff=quick, attempts=3)
    refusals[:] = [_Refusal(grpc.StatusCode.UNAVAILABLE)]
    with pytest.raises(grpc.RpcError):
        send_when_admitted(send, backoff=quick)
    assert not refusals
