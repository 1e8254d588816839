"""Recording peer-to-peer rounds in the provenance ledger (``LedgerRecorder.record_peers``): every
training is an update, every merge an aggregate signed by its site, citing updates of the ledger,
for each topology and over rounds in which a site trains twice, fails, or never trains."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from peer_fakes import SITES, FakeGrid

from medfed.orchestration.recording import LedgerRecorder, peer_entries, run_keys
from medfed.provenance import weights_digest
from medfed.topology.braintorrent import BrainTorrent
from medfed.topology.cyclic import CyclicTransfer
from medfed.topology.gossip import Gossip
from medfed.topology.graphs import build_graph
from medfed.topology.peers import PeerRound, PeerState, Topology, run_topology

TOPOLOGIES: dict[str, Topology] = {
    "braintorrent": BrainTorrent(seed=5, pulls_per_round=6),
    "cyclic": CyclicTransfer(seed=0, order="random"),
    "gossip": Gossip(graph=build_graph("ring", SITES)),
}


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_every_training_and_merge_is_recorded_and_every_copy_accepts_it(
    name: str, tmp_path: Path, fake_grid: Callable[..., FakeGrid]
) -> None:
    keys, signers = run_keys(tmp_path, SITES)
    recorder = LedgerRecorder(tmp_path / "provenance" / name, keys, signers, SITES)
    grid = fake_grid(failing={"d"})
    records: list[PeerRound] = []

    def record(round: PeerRound) -> None:
        records.append(round)
        recorder.record_peers(round, {site: {"epsilon": 0.5} for site in SITES})

    run_topology(
        TOPOLOGIES[name], PeerState.start({"w": torch.zeros(2)}, SITES), grid, rounds=3, on_round=record
    )

    entries = recorder.ledger.entries  # each appended only after the ledger's checks
    assert [e.signer for e in entries if e.kind == "update"] == [
        r.site for rec in records for r in rec.results
    ]
    assert [e.signer for e in entries if e.kind == "aggregate"] == [
        m.site for rec in records for m in rec.merges
    ]
    assert all(copy.head() == recorder.ledger.head() for copy in recorder.copies.values())
    assert "d" not in {e.signer for e in entries}  # it never trained: nothing to record
    assert all(e.privacy == ({"epsilon": 0.5} if e.kind == "update" else {}) for e in entries)
    assert (name == "cyclic") == (not any(rec.merges for rec in records))  # cyclic never merges
    trained = [sorted(r.site for r in rec.results) for rec in records]
    assert name != "braintorrent" or any(len(set(sites)) < len(sites) for sites in trained)  # twice


def test_a_merge_cites_the_models_it_averaged_and_states_its_output(
    fake_grid: Callable[..., FakeGrid], start: dict[str, torch.Tensor]
) -> None:
    record = Gossip(graph=build_graph("complete", SITES)).run_round(
        PeerState.start(start, SITES), fake_grid()
    )
    [*updates, merge, _, _, _] = peer_entries(record, 1, {})
    assert [e.kind for e in updates] == ["update"] * len(SITES) and merge.kind == "aggregate"
    assert merge.signer == "a" and sorted(merge.inputs) == sorted(e.digest for e in updates)
    assert merge.digest == weights_digest(record.state.models["a"]) and merge.round == 1
