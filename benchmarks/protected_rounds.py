"""One deployed round over gRPC: plain FedAvg vs secure aggregation vs CKKS; prints ratios.

A real ``FederationServicer`` on loopback (plain text, to time the protocols rather than TLS)
and ``--sites`` site threads running the real ``medfed client`` loop (``run_client``) with the
real site builder, whose training is replaced by adding seeded noise to the task's weights, so
what is timed is transport plus protocol. For each kind of round, measured in one run:
  * wall time of the round (tasks posted until the aggregate is returned) / the plain round's;
  * bytes each site sends to the server (all its answers in the round) / the plain round's.
Secure aggregation runs as deployed: anonymous sites (no kits) with the ConsistencyCheck, so
five message rounds; CKKS adds one decryption step at one site.

Run: ``python benchmarks/protected_rounds.py [--sites 10] [--params 1000000]``.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medfed.data import SiteData
from medfed.deployment.client import run_client
from medfed.deployment.job import JobConfig, site_job_json
from medfed.deployment.site_builder import SiteBuilder, SiteOptions
from medfed.orchestration.grid import train_in_clear
from medfed.privacy import ckks
from medfed.privacy.ckks_rounds import EncryptedAggregationRound
from medfed.privacy.secagg.rounds import SecureAggregationRound
from medfed.transport.board import RoundBoard
from medfed.transport.client import SiteChannel
from medfed.transport.grid import GrpcGrid
from medfed.transport.server import FederationServicer, start_server
from medfed.types import TrainResult, TrainTask

TIMEOUT_S = 600.0


class _CountingBoard(RoundBoard):
    """A board that counts the bytes each site sends."""

    def __init__(self) -> None:
        super().__init__()
        self.received: dict[str, int] = {}

    def receive(self, site: str, task_id: str, payload: bytes) -> Any:
        self.received[site] = self.received.get(site, 0) + len(payload)
        return super().receive(site, task_id, payload)


class _NoiseSite:
    """Stands in for a ``LocalSite``: its 'training' adds seeded noise to the task's weights."""

    trainer = None

    def __init__(self, name: str, num_samples: int) -> None:
        self.name, self.samples = name, num_samples

    def train(self, task: TrainTask) -> TrainResult:
        generator = torch.Generator().manual_seed(self.samples)
        weights = {
            key: t + 0.01 * torch.randn(t.shape, generator=generator) for key, t in task.weights.items()
        }
        return TrainResult(self.name, task.round, weights, self.samples)


class _Builder(SiteBuilder):
    """The real builder (protected rounds, options) around a ``_NoiseSite``."""

    def __init__(self, site: _NoiseSite, options: SiteOptions) -> None:
        super().__init__(SiteData(site.name, ()), options)
        self.site = site

    def site_for(self, job_json: str) -> Any:
        return self.site

    def save_state(self) -> None:
        return None


def one_round(kind: str, sites: int, params: int) -> tuple[float, float]:
    """Seconds of one ``kind`` round and the mean bytes a site sent."""
    privacy = {
        "plain": {},
        "secure": {"secure_aggregation": {"threshold_fraction": 0.5}},
        "ckks": {"encryption": {"scheme": "ckks"}},
    }
    job = JobConfig(name="bench", privacy=privacy[kind], poll_s=1.0)
    names = [f"site_{index:02d}" for index in range(sites)]
    board = _CountingBoard()
    servicer = FederationServicer(
        board, sites=names, job_json=site_job_json(job), authenticate=None, poll_s=1.0
    )
    server, port = start_server(servicer, address="127.0.0.1:0", credentials=None)
    site_context = ckks.create_context() if kind == "ckks" else None
    grid = GrpcGrid(board, round_timeout_s=TIMEOUT_S, step_timeout_s=TIMEOUT_S)
    if kind == "plain":
        collect: Any = train_in_clear
    elif kind == "secure":
        collect = SecureAggregationRound(threshold_fraction=0.5)
    else:
        assert site_context is not None
        public = ckks.deserialize_context(ckks.serialize_context(site_context, include_secret_key=False))
        collect = EncryptedAggregationRound(public)
    threads = [
        threading.Thread(target=_site, args=(name, 10 * (index + 1), port, site_context), daemon=True)
        for index, name in enumerate(names)
    ]
    for thread in threads:
        thread.start()
    task = TrainTask(round=1, weights={"w": torch.zeros(params)})
    try:
        start = time.perf_counter()
        results = collect(grid, {name: task for name in names})
        seconds = time.perf_counter() - start
        assert len(results) == 1 if kind != "plain" else len(results) == sites, f"{kind}: {results}"
    finally:
        board.finish()
        for thread in threads:
            thread.join(timeout=30)
        server.stop(grace=1).wait()
    return seconds, sum(board.received.values()) / sites


def _site(name: str, samples: int, port: int, context: Any) -> None:
    builder = _Builder(
        _NoiseSite(name, samples), SiteOptions(state_dir=Path("."), ckks_context=context, holdout=0.0)
    )
    run_client(lambda: SiteChannel(f"127.0.0.1:{port}", site=name, tls=None), builder, max_failures=5)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--params", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    print(f"{args.sites} sites x {args.params:,} float32 parameters, one round over gRPC on loopback")
    plain_s, plain_bytes = one_round("plain", args.sites, args.params)
    print(f"plain FedAvg: {plain_s:.2f} s, {plain_bytes:,.0f} B sent per site")
    for kind, label in (("secure", "secure aggregation"), ("ckks", "CKKS")):
        seconds, sent = one_round(kind, args.sites, args.params)
        print(
            f"{label}: time/plain {seconds / plain_s:.1f}x ({seconds:.2f} s), "
            f"bytes sent per site/plain {sent / plain_bytes:.2f}x ({sent:,.0f} B)"
        )


if __name__ == "__main__":
    main()
