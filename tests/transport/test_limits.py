"""Per-site limits of the server: calls, uploads, upload memory, read deadlines."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc
from collections.abc import Iterator

import grpc
import pytest
import torch

from medfed.transport.board import RoundBoard
from medfed.transport.errors import ServerBusy
from medfed.transport.limits import Admission, ServerLimits, Watchdog
from medfed.transport.protobuf import DataPiece, FederationCalls, Kind, Message, payload_stream, task_request
from medfed.transport.server import GRPC_OPTIONS, SITE_METADATA_KEY, FederationServicer, start_server
from medfed.types import TrainTask

MIB = 1024 * 1024


def test_calls_and_uploads_beyond_a_sites_share_are_refused() -> None:
    admission = Admission(
        ServerLimits(calls_per_site=2, uploads_per_site=1, upload_bytes=100, read_timeout_s=0.2)
    )
    with admission.call("a"), admission.call("a"):
        with pytest.raises(ServerBusy, match="2 calls open"), admission.call("a"):
            pass
        with admission.call("b"):  # another site is not affected
            pass
    with admission.upload("a", 60):
        with pytest.raises(ServerBusy, match="1 uploads running"), admission.upload("a", 1):
            pass
        started = time.monotonic()
        with pytest.raises(ServerBusy, match="60 bytes of uploads"), admission.upload("b", 41):
            pass
        assert 0.1 <= time.monotonic() - started < 1.0  # waited half the read timeout
        with admission.upload("b", 40):
            pass
    with admission.upload("a", 10**6):  # alone, an upload larger than the budget is admitted
        pass
    with admission.call("a"), admission.call("a"):  # every slot was given back
        pass


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ServerLimits(uploads_per_site=0)
    with pytest.raises(ValueError, match="read_timeout_s"):
        ServerLimits(read_timeout_s=0)
    assert ServerLimits(calls_per_site=4, spare_workers=8).workers(3) == 20


def test_the_watchdog_cancels_a_silent_call_only() -> None:
    watchdog = Watchdog(0.3, tick_s=0.05)
    silent, lively = threading.Event(), threading.Event()
    with watchdog.watch(silent.set), watchdog.watch(lively.set) as renew:
        for _ in range(10):
            time.sleep(0.1)
            renew()
    assert silent.is_set() and not lively.is_set()


class _Server:
    """An in-process plain-text server with small limits; sites name themselves."""

    def __init__(self, limits: ServerLimits) -> None:
        board = RoundBoard(max_update_bytes=16 * MIB)
        self.servicer = FederationServicer(
            board, sites=["a", "b", "c"], job_json="{}", authenticate=None, limits=limits
        )
        self.server, port = start_server(self.servicer, address="127.0.0.1:0", credentials=None)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS)
        self.calls = FederationCalls(self.channel)

    def upload(self, site: str, messages: Iterator[Message]) -> grpc.Future:
        return self.calls.submit_result.future(messages, metadata=((SITE_METADATA_KEY, site),), timeout=30)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(grace=0).wait(5)


def _trickle(payload: bytes, release: threading.Event) -> Iterator[Message]:
    """An upload that sends its header, then empty chunks (alive, but slow) until ``release``."""
    stream = payload_stream(Kind.RESULT, payload, round=1, task_id="t")
    yield next(stream)
    while not release.wait(0.1):
        yield DataPiece(memoryview(b""))
    yield from stream


def test_concurrent_uploads_are_capped_and_their_memory_returns() -> None:
    size = 6 * MIB
    server = _Server(ServerLimits(uploads_per_site=2, upload_bytes=4 * size, read_timeout_s=2))
    payloads = [bytes([n]) * size for n in range(6)]
    release = threading.Event()
    try:
        gc.collect()
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        uploads = [
            server.upload(site, _trickle(payload, release))
            for site, payload in zip("aaabbc", payloads, strict=False)
        ]
        deadline = time.monotonic() + 10
        while sum(upload.done() for upload in uploads) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = [upload for upload in uploads if upload.done()]
        release.set()
        replies = [upload.result() for upload in uploads if upload not in refused]
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        release.set()
        server.close()
    print(
        f"burst of 6 x {size // MIB} MiB: traced peak +{(peak - baseline) / MIB:.1f} MiB, after +{(after - baseline) / MIB:.2f} MiB"
    )
    assert len(refused) == 2  # a's third (two per site), and one over the 4-upload budget
    assert all(upload.exception().code() is grpc.StatusCode.RESOURCE_EXHAUSTED for upload in refused)
    assert len(replies) == 4 and all("stale" in reply.reason for reply in replies)  # read, checked, refused
    assert after - baseline < 1 * MIB


def test_a_silent_upload_is_cancelled_after_the_read_timeout() -> None:
    server = _Server(ServerLimits(read_timeout_s=0.5))
    release = threading.Event()

    def stalled() -> Iterator[Message]:
        yield next(payload_stream(Kind.RESULT, b"x" * 100, round=1, task_id="t"))
        release.wait(30)

    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as caught:
            server.upload("a", stalled()).result()
        assert caught.value.code() is grpc.StatusCode.CANCELLED
        assert time.monotonic() - started < 5
    finally:
        release.set()
        server.close()


def test_a_download_the_site_does_not_take_is_cancelled_and_its_slot_freed() -> None:
    server = _Server(ServerLimits(read_timeout_s=0.5))
    server.servicer.board.post(1, {"a": TrainTask(round=1, weights={"w": torch.zeros(8 * MIB)})})  # 32 MiB
    try:
        stream = server.calls.get_task(task_request(), metadata=((SITE_METADATA_KEY, "a"),), timeout=30)
        next(stream)  # the header; then the site takes nothing more
        deadline = time.monotonic() + 5
        while server.servicer.admission.open_calls("a") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.servicer.admission.open_calls("a") == 0
        with pytest.raises(grpc.RpcError) as caught:
            list(stream)
        assert caught.value.code() is grpc.StatusCode.CANCELLED
    finally:
        server.close()
