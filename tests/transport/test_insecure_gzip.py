"""Plain-text (``--insecure``) mode with gzip: the site is named by call metadata."""

from __future__ import annotations

import grpc
import pytest
import torch

from medfed.transport.board import RoundBoard
from medfed.transport.client import FetchedTask, SiteChannel
from medfed.transport.protobuf import Kind
from medfed.transport.server import FederationServicer, start_server
from medfed.types import TrainResult, TrainTask


def test_insecure_gzip_round_trip_and_unknown_site_refused() -> None:
    board = RoundBoard()
    servicer = FederationServicer(board, sites=["a"], job_json='{"seed": 1}', authenticate=None, poll_s=0.2)
    server, port = start_server(servicer, address="127.0.0.1:0", credentials=None, gzip=True)
    try:
        weights = {"w": torch.arange(6.0).reshape(2, 3)}
        board.post(1, {"a": TrainTask(round=1, weights=weights, config={"lr": 0.5})})
        with SiteChannel(f"127.0.0.1:{port}", site="a", tls=None, gzip=True) as channel:
            got = channel.fetch()
            assert isinstance(got, FetchedTask) and got.job_json == '{"seed": 1}'
            assert torch.equal(got.task.weights["w"], weights["w"]) and got.task.config == {"lr": 0.5}
            result = TrainResult(site="ignored", round=1, weights={"w": weights["w"] + 1}, num_samples=2)
            assert channel.submit(got.task_id, result).accepted
            assert list(board.collect(timeout_s=1)) == ["a"]
            assert channel.fetch() is Kind.WAIT
            board.finish()
            assert channel.fetch() is Kind.DONE
        with SiteChannel(f"127.0.0.1:{port}", site="intruder", tls=None) as channel:
            with pytest.raises(grpc.RpcError) as caught:
                channel.fetch()
            assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    finally:
        server.stop(grace=None)
