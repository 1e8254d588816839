"""One site holding a valid kit sends hostile results to a real server over mutual TLS: every
one is refused, the server neither crashes nor logs the site's text raw, and the job finishes
with the honest site's finite model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from deploy_procs import deploy, processes
from safetensors.torch import save

from medfed.orchestration.checkpoint import checkpoint_path, load_checkpoint
from medfed.orchestration.validation import non_finite_keys
from medfed.transport.client import FetchedStep, FetchedTask, SiteChannel
from medfed.transport.protobuf import Kind
from medfed.transport.tls import TlsFiles
from medfed.types import TrainResult

SITES = ["hospital_a", "hospital_b"]
FORGED = "budget spent\n2026-11-29 12:00:00 INFO medfed.orchestration.loop: round 99 done"


def _channel(kits: Path, site: str, port: int) -> SiteChannel:
    tls = TlsFiles(kits / site / "site.crt", kits / site / "site.key", kits / site / "ca.crt")
    return SiteChannel(f"127.0.0.1:{port}", site=site, tls=tls, server_name="localhost", timeout_s=20)


def _task(channel: SiteChannel) -> FetchedTask:
    """The next task, asking again while the server says ``WAIT``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = channel.fetch()
        if isinstance(answer, FetchedTask):
            return answer
        assert answer is Kind.WAIT, answer
    raise AssertionError("no task within 60 s")


def _until_done(channels: list[SiteChannel]) -> None:
    """Asks on every channel until each is told the job is done; declines the final evaluation."""
    deadline = time.monotonic() + 60
    while channels:
        assert time.monotonic() < deadline, "the job did not end within 60 s"
        answers = {channel: channel.fetch() for channel in channels}
        for channel, answer in answers.items():
            if isinstance(answer, FetchedStep):
                channel.decline(answer.task_id, answer.round, "no held-out cases")
        channels = [channel for channel, answer in answers.items() if answer is not Kind.DONE]


def _honest(task: FetchedTask, site: str, **changes: object) -> TrainResult:
    weights = {name: tensor.clone() for name, tensor in task.task.weights.items()}
    fields: dict[str, object] = {"weights": weights, "num_samples": 3, "metrics": {"loss": 0.5}, **changes}
    return TrainResult(site=site, round=task.task.round, **fields)  # type: ignore[arg-type]


def _huge_metric(task: FetchedTask) -> bytes:
    """A result whose ``loss`` is a 401-digit integer (``encode_result`` could not even write it)."""
    tensors = {f"weights/{name}": tensor.contiguous() for name, tensor in task.task.weights.items()}
    metadata = {
        "round": str(task.task.round),
        "schema_version": "1",
        "num_samples": "3",
        "metrics": json.dumps({"loss": 10**400}),
    }
    return save(tensors, metadata=metadata)


@pytest.mark.integration
def test_a_hostile_site_cannot_stop_the_server(tmp_path: Path) -> None:
    federation = deploy(
        tmp_path,
        provisioned=SITES,
        sites=SITES,
        federation={"rounds": 4, "min_sites": 1, "evaluate_every": 0},
        round_timeout_s=60,
        provenance=False,  # no ledger steps between the rounds these hand-driven sites expect
    )
    kits, port, state = federation.kits, federation.port, federation.state
    with processes(tmp_path / "logs") as group:
        server = federation.start_server(group, listening=True)
        with _channel(kits, "hospital_a", port) as evil, _channel(kits, "hospital_b", port) as honest:
            refusals = []
            for round in range(1, 5):
                task = _task(evil)
                assert task.task.round == round
                if round == 1:
                    refusals.append(
                        evil.submit(task.task_id, _honest(task, "hospital_a", num_samples=10**400))
                    )
                elif round == 2:
                    huge = {
                        name: torch.full_like(t, 1e38) if t.is_floating_point() else t
                        for name, t in task.task.weights.items()
                    }
                    refusals.append(evil.submit(task.task_id, _honest(task, "hospital_a", weights=huge)))
                elif round == 3:
                    refusals.append(evil.answer(task.task_id, round, _huge_metric(task)))
                else:
                    assert evil.decline(task.task_id, round, FORGED + "x" * (1 << 20)).accepted
                good = _task(honest)
                assert good.task.round == round
                assert honest.submit(good.task_id, _honest(good, "hospital_b")).accepted
            _until_done([evil, honest])
        assert server.wait(timeout=60) == 0, group.log("server")[-3000:]
    reasons = [outcome.reason for outcome in refusals]
    assert not any(outcome.accepted for outcome in refusals), reasons
    assert "num_samples must be a finite number in [1, 1e+09]" in reasons[0]
    assert "has values of magnitude above" in reasons[1]
    assert "metric 'loss' must be a finite number" in reasons[2]
    final = load_checkpoint(checkpoint_path(state / "checkpoints", 4))
    assert final.metadata["participants"] == "hospital_b" and not non_finite_keys(final.server.weights)
    log = group.log("server")
    assert "Traceback" not in log
    forged = [line for line in log.splitlines() if "round 99 done" in line]
    assert len(forged) == 1 and "declined: budget spent\\n2026" in forged[0]
    assert max(len(line) for line in log.splitlines()) < 2000
