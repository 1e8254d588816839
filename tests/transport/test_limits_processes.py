"""One site cannot break a running server: undecodable messages, stalled streams (real server
process, mutual TLS on loopback)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from deploy_procs import Processes, deploy, processes, wait_for

from medfed.transport.chunking import digest
from medfed.transport.client import FetchedStep, FetchedTask, SiteChannel
from medfed.transport.protobuf import Kind
from medfed.transport.tls import TlsFiles, channel_credentials
from medfed.transport.wire import medfed_pb2 as pb
from medfed.types import TrainResult

pytestmark = pytest.mark.integration

SUBMIT = "/medfed.v1.Federation/SubmitResult"
GET_TASK = "/medfed.v1.Federation/GetTask"
STALLED = 40


def _tls(kits: Path, site: str) -> TlsFiles:
    return TlsFiles(kits / site / "site.crt", kits / site / "site.key", kits / site / "ca.crt")


def _raw_channel(kits: Path, site: str, port: int) -> grpc.Channel:
    options = [("grpc.ssl_target_name_override", "localhost")]
    return grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(_tls(kits, site)), options=options)


def _site(kits: Path, site: str, port: int) -> SiteChannel:
    return SiteChannel(
        f"127.0.0.1:{port}", site=site, tls=_tls(kits, site), server_name="localhost", timeout_s=20
    )


def _start(group: Processes, tmp_path: Path, sites: list[str]) -> tuple[Path, int]:
    federation = deploy(
        tmp_path,
        provisioned=sites,
        sites=sites,
        federation={"rounds": 1, "min_sites": 1, "evaluate_every": 0},
        provenance=False,  # no ledger steps between the rounds these hand-driven sites expect
    )
    federation.start_server(group, listening=True)
    return federation.kits, federation.port


def _answer(channel: SiteChannel, site: str) -> None:
    """Fetches the site's task and answers it with the task's own weights."""
    task = channel.fetch()
    assert isinstance(task, FetchedTask), task
    weights = {name: tensor.clone() for name, tensor in task.task.weights.items()}
    assert channel.submit(task.task_id, TrainResult(site, task.task.round, weights, 3)).accepted


def _decline_steps(channel: SiteChannel) -> object:
    """The server's answer to a fetch; a protocol step (the final evaluation) is declined."""
    answer = channel.fetch()
    if isinstance(answer, FetchedStep):
        channel.decline(answer.task_id, answer.round, "not evaluating in this test")
    return answer


def test_undecodable_messages_leave_the_server_free_to_exit(tmp_path: Path) -> None:
    with processes(tmp_path / "logs") as group:
        kits, port = _start(group, tmp_path, ["hospital_a"])
        identity = lambda raw: raw  # send bytes as they are
        with _raw_channel(kits, "hospital_a", port) as raw:  # stays connected until the end
            submit = raw.stream_unary(SUBMIT, request_serializer=identity, response_deserializer=identity)
            get_task = raw.unary_stream(GET_TASK, request_serializer=identity, response_deserializer=identity)
            refusals = []
            for call in (
                lambda: submit(iter([b"\xff\xff\xff"]), timeout=10),
                lambda: list(get_task(b"\xff\xff", timeout=10)),
            ):
                try:
                    call()
                except grpc.RpcError as error:
                    refusals.append(error.code())
            with _site(kits, "hospital_a", port) as channel:
                _answer(channel, "hospital_a")
                wait_for(lambda: _decline_steps(channel) is Kind.DONE, timeout=30, what="the job's end")
            assert group.running[0].wait(timeout=30) == 0, group.log("server")
        assert refusals == [
            grpc.StatusCode.INVALID_ARGUMENT
        ]  # the bad request; the bad chunk got a refusing reply


def _stalled_upload(release: threading.Event) -> Iterator[bytes]:
    header = pb.Header(
        schema_version=1, kind=pb.KIND_RESULT, round=1, task_id="x", total_bytes=10, sha256=digest(b"0" * 10)
    )
    yield pb.Chunk(header=header).SerializeToString()
    release.wait(60)


def test_a_stalling_site_does_not_delay_the_others(tmp_path: Path) -> None:
    with processes(tmp_path / "logs") as group:
        kits, port = _start(group, tmp_path, ["hospital_a", "hospital_b"])
        with _site(kits, "hospital_a", port) as honest:
            started = time.monotonic()
            assert isinstance(honest.fetch(), FetchedTask)
            baseline = time.monotonic() - started
            release = threading.Event()
            identity = lambda raw: raw
            with _raw_channel(kits, "hospital_b", port) as raw:
                submit = raw.stream_unary(SUBMIT, request_serializer=identity, response_deserializer=identity)
                stalled = [submit.future(_stalled_upload(release), timeout=60) for _ in range(STALLED)]
                deadline = time.monotonic() + 10  # the excess is refused at once; before: never
                while sum(call.done() for call in stalled) < STALLED - 4 and time.monotonic() < deadline:
                    time.sleep(0.05)
                started = time.monotonic()
                assert isinstance(honest.fetch(), FetchedTask)
                latency = time.monotonic() - started
                refused = [call for call in stalled if call.done()]
                release.set()
        print(f"hospital_a's fetch: {baseline:.3f} s alone, {latency:.3f} s beside {STALLED} stalled streams")
        assert latency < 3.0, (baseline, latency)
        assert len(refused) >= STALLED - 4
        assert all(call.exception().code() is grpc.StatusCode.RESOURCE_EXHAUSTED for call in refused)
