"""A running server refuses bad certificates and bad updates, and keeps serving the others."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from deploy_procs import Processes, deploy, wait_for

from medfed.deployment.status import read_status
from medfed.orchestration.metrics_log import MetricsLog, Split
from medfed.provision import revoke
from medfed.provision.certs import create_ca, issue, read_identity, write_identity
from medfed.transport.chunking import digest
from medfed.transport.client import FetchedTask, SiteChannel
from medfed.transport.payload import encode_result
from medfed.transport.protobuf import Kind
from medfed.transport.tls import TlsFiles, channel_credentials
from medfed.transport.wire import medfed_pb2 as pb
from medfed.transport.wire import medfed_pb2_grpc as pb_grpc
from medfed.types import TrainResult

pytestmark = pytest.mark.integration  # starts real medfed processes

JOB_SITES = ["hospital_a", "hospital_b", "hospital_c"]


class Federation:
    def __init__(self, kits: Path, port: int, state: Path) -> None:
        self.kits, self.port, self.state = kits, port, state

    def tls(self, site: str) -> TlsFiles:
        folder = self.kits / site
        return TlsFiles(folder / "site.crt", folder / "site.key", folder / "ca.crt")

    def channel(self, site: str, tls: TlsFiles | None = None) -> SiteChannel:
        return SiteChannel(
            f"127.0.0.1:{self.port}",
            site=site,
            tls=tls or self.tls(site),
            server_name="localhost",
            timeout_s=20,
        )

    def stub(self, site: str) -> tuple[grpc.Channel, pb_grpc.FederationStub]:
        options = [("grpc.ssl_target_name_override", "localhost")]
        channel = grpc.secure_channel(
            f"127.0.0.1:{self.port}", channel_credentials(self.tls(site)), options=options
        )
        return channel, pb_grpc.FederationStub(channel)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("refusals")
    # evaluate_every 0, provenance off: no step between the rounds these hand-driven sites expect.
    federation = deploy(
        root,
        provisioned=[*JOB_SITES, "hospital_d"],
        sites=JOB_SITES,
        federation={"rounds": 3, "min_sites": 1, "evaluate_every": 0},
        round_timeout_s=90,
        provenance=False,
    )
    group = Processes(root / "logs")
    try:
        federation.start_server(group, listening=True)
        yield Federation(federation.kits, federation.port, federation.state)
    finally:
        group.kill_all()


def _fetch(federation: Federation, site: str) -> FetchedTask:
    with federation.channel(site) as channel:
        answer = channel.fetch()
    assert isinstance(answer, FetchedTask), answer
    return answer


def _raw_submit(federation: Federation, site: str, messages: list[pb.Chunk]) -> pb.SubmitReply:
    channel, stub = federation.stub(site)
    with channel:
        return stub.SubmitResult(iter(messages), timeout=20)


def _result_stream(
    task_id: str, payload: bytes, *, round: int = 1, total: int | None = None, sha: bytes | None = None
) -> list[pb.Chunk]:
    header = pb.Header(
        schema_version=1,
        kind=pb.KIND_RESULT,
        round=round,
        task_id=task_id,
        total_bytes=len(payload) if total is None else total,
        sha256=digest(payload) if sha is None else sha,
    )
    return [pb.Chunk(header=header), pb.Chunk(data=payload)]


def _result(fetched: FetchedTask, site: str, **changes: object) -> TrainResult:
    weights = {name: tensor.clone() for name, tensor in fetched.task.weights.items()}
    return TrainResult(site=site, round=fetched.task.round, weights=weights, num_samples=3, **changes)  # type: ignore[arg-type]


def test_bad_updates_are_rejected_and_the_others_served(federation: Federation) -> None:
    task = _fetch(federation, "hospital_a")
    assert task.task.round == 1
    good = encode_result(_result(task, "hospital_a"))
    cases = {
        "malformed": _result_stream(task.task_id, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all"),
        "truncated": _result_stream(task.task_id, good[:-100], total=len(good), sha=digest(good)),
        "oversized": _result_stream(task.task_id, good, total=10**12),
        "longer than declared": _result_stream(task.task_id, good, total=100),
        "wrong digest": _result_stream(task.task_id, good, sha=b"0" * 32),
        "no header": [pb.Chunk(data=good)],
    }
    for name, messages in cases.items():
        reply = _raw_submit(federation, "hospital_a", messages)
        assert not reply.accepted, name
        assert reply.reason, name
    # A wrong shape is this site's (rejected) answer for the round.
    weights = dict(_result(task, "hospital_a").weights)
    first = next(iter(weights))
    weights[first] = torch.zeros(3, 3)
    with federation.channel("hospital_a") as channel:
        outcome = channel.submit(task.task_id, TrainResult("hospital_a", 1, weights, 3))
        assert not outcome.accepted and "shape" in outcome.reason
        assert channel.fetch() is Kind.WAIT
    nan_task = _fetch(federation, "hospital_b")
    poisoned = _result(nan_task, "hospital_b")
    poisoned.weights[first].fill_(float("nan"))
    with federation.channel("hospital_b") as channel:
        outcome = channel.submit(nan_task.task_id, poisoned)
    assert not outcome.accepted and "NaN" in outcome.reason
    honest = _fetch(federation, "hospital_c")
    with federation.channel("hospital_c") as channel:
        assert channel.submit(honest.task_id, _result(honest, "hospital_c")).accepted
        # Round 1 closes with hospital_c alone; round 2 is served, and a stale update refused.
        follow_up = _fetch(federation, "hospital_c")
        assert follow_up.task.round == 2
        stale = channel.submit(honest.task_id, _result(honest, "hospital_c"))
        assert not stale.accepted and "stale" in stale.reason
    # The refusals are on the record: status.json (the reason) and round 1's metric rows.
    wait_for(lambda: len(read_status(federation.state).rejected) == 2, timeout=10, what="status.json")
    rejected = read_status(federation.state).rejected
    assert rejected["hospital_a"].startswith("round 1: ") and "shape" in rejected["hospital_a"]
    assert "NaN" in rejected["hospital_b"]
    absent = [
        (row.site, row.metric)
        for row in MetricsLog(federation.state).rows()
        if row.split == Split.PARTICIPATION and row.round == 1
    ]
    assert absent == [("hospital_a", "rejected"), ("hospital_b", "rejected")]


def _refused(federation: Federation, tls: TlsFiles) -> grpc.RpcError:
    with federation.channel("hospital_a", tls=tls) as channel, pytest.raises(grpc.RpcError) as caught:
        channel.fetch()
    return caught.value


def test_foreign_expired_and_revoked_certificates_are_refused(federation: Federation, tmp_path: Path) -> None:
    ca_dir = federation.kits / "ca"
    foreign_ca = create_ca("intruder", days=10)
    foreign = issue(foreign_ca, "hospital_a", role="client", days=10)
    write_identity(foreign, tmp_path / "foreign.crt", tmp_path / "foreign.key")
    error = _refused(
        federation, TlsFiles(tmp_path / "foreign.crt", tmp_path / "foreign.key", ca_dir / "ca.crt")
    )
    assert error.code() is grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails

    project_ca = read_identity(ca_dir / "ca.crt", ca_dir / "ca.key")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    expired = issue(project_ca, "hospital_a", role="client", days=1, not_before=start)
    write_identity(expired, tmp_path / "expired.crt", tmp_path / "expired.key")
    error = _refused(
        federation, TlsFiles(tmp_path / "expired.crt", tmp_path / "expired.key", ca_dir / "ca.crt")
    )
    assert error.code() is grpc.StatusCode.UNAVAILABLE

    # hospital_d has a valid certificate but is not part of the job; once revoked it is refused
    # as unauthenticated by the running server (the CRL is reloaded on change).
    error = _refused(federation, federation.tls("hospital_d"))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    revoke(federation.kits, "hospital_d")
    error = _refused(federation, federation.tls("hospital_d"))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (error.details() or "")
