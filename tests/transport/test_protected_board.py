"""The server's secure-aggregation connector on a board, with sites played by threads: drop-outs
in the middle of the protocol and forged senders, without gRPC."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch

from medfed.errors import UpdateRejected
from medfed.privacy.protected_sum import is_protected_aggregate
from medfed.privacy.secagg.messages import AdvertiseKeys, SecAggInvitation
from medfed.privacy.secagg.rounds import (
    CONSISTENCY,
    MASKED_INPUT,
    UNMASK_SIGNED,
    SecureAggregationRound,
    SecureAggregationSite,
)
from medfed.transport.board import PostedTask, RoundBoard
from medfed.transport.grid import GrpcGrid
from medfed.transport.payload import decode_task
from medfed.transport.protobuf import decode_message, encode_message
from medfed.types import TrainResult, TrainTask

SITES = {"a": 1.0, "b": 2.0, "c": 4.0, "d": 8.0}  # each site's trained value; each has 2 samples
TASK = TrainTask(round=1, weights={"w": torch.zeros(3), "b": torch.zeros(1)})

Forge = Callable[[bytes], bytes]


def _site(
    board: RoundBoard, name: str, *, silent_from: str | None = None, forge: Forge | None = None
) -> None:
    """Answers the board's postings for ``name`` until it is told to stop or falls silent."""
    protected = None
    while True:
        posted = board.task_for(name, timeout_s=5)
        if not isinstance(posted, PostedTask):
            return
        if posted.step == silent_from:
            return  # drops out: never answers this step
        if posted.step:
            request = decode_message(protected.requests[posted.step], posted.payload)  # type: ignore[union-attr]
            reply = encode_message(protected.answer(posted.step, request))  # type: ignore[union-attr]
        else:
            task = decode_task(posted.payload)
            trained = {key: torch.full_like(t, SITES[name]) for key, t in task.weights.items()}
            invitation = decode_message(SecAggInvitation, posted.protocol)
            protected = SecureAggregationSite(task, invitation, TrainResult(name, 1, trained, 2))
            upload = encode_message(protected.upload())
            reply = upload if forge is None else forge(upload)
        try:
            board.receive(name, posted.task_id, reply)
        except UpdateRejected:
            if forge is None:
                raise  # an honest site is never refused: that is a bug, and fails the test
            return  # the forger is refused: out of the round


def _round(**behaviour: dict) -> list[TrainResult]:
    board = RoundBoard()
    grid = GrpcGrid(board, round_timeout_s=10, step_timeout_s=2)
    secure_round = SecureAggregationRound(threshold_fraction=0.5)
    errors: list[BaseException] = []

    def site(name: str) -> None:
        try:
            _site(board, name, **behaviour.get(name, {}))
        except BaseException as error:  # an unexpected error in a site fails the test
            errors.append(error)

    threads = [threading.Thread(target=site, args=(name,)) for name in SITES]
    for thread in threads:
        thread.start()
    try:
        results = secure_round(grid, {name: TASK for name in SITES})
    finally:
        board.finish()
        for thread in threads:
            thread.join(timeout=10)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.mark.parametrize(
    ("silent_from", "in_sum"),
    [
        # c shared its keys but sent no masked input: its pairwise masks are removed, its input left out.
        (MASKED_INPUT, ["a", "b", "d"]),
        # c sent its masked input and then left, before or after signing the survivor list:
        # its input is in the sum all the same.
        (CONSISTENCY, ["a", "b", "c", "d"]),
        (UNMASK_SIGNED, ["a", "b", "c", "d"]),
    ],
)
def test_the_sum_survives_a_site_dropping_out_mid_protocol(silent_from: str, in_sum: list[str]) -> None:
    results = _round(c={"silent_from": silent_from})  # 4 sites, threshold 3: one may drop out
    assert len(results) == 1 and is_protected_aggregate(results[0])
    expected = sum(SITES[name] for name in in_sum) / len(in_sum)
    torch.testing.assert_close(results[0].weights["w"], torch.full((3,), expected), atol=1e-6, rtol=0)
    assert results[0].num_samples == 2 * len(in_sum)


def test_too_many_drop_outs_give_no_result_rather_than_a_wrong_sum() -> None:
    assert _round(c={"silent_from": MASKED_INPUT}, d={"silent_from": UNMASK_SIGNED}) == []


def _claim_client_1(advert: bytes) -> bytes:
    message = decode_message(AdvertiseKeys, advert)
    return encode_message(AdvertiseKeys(message.session, 1, message.c_public, message.s_public))


@pytest.mark.parametrize("impostor", ["b", "d"])
def test_a_site_posing_as_another_client_is_refused_and_left_out(impostor: str) -> None:
    results = _round(**{impostor: {"forge": _claim_client_1}})
    others = [value for name, value in SITES.items() if name != impostor]
    torch.testing.assert_close(results[0].weights["w"], torch.full((3,), sum(others) / 3), atol=1e-6, rtol=0)
