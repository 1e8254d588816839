"""Cyclic weight transfer and gossip averaging under ``medfed peer``: three sites as real processes
over mutual TLS on loopback, each keeping its own provenance chain."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_procs import SITES, free_port, make_data, make_kits, processes
from peer_procs import PEER_MODEL, assert_same_weights, peer_final, peer_state_dir, start_peer
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.privacy.dp.ledger import load_ledger
from medfed.provenance.entries import Entry, parse_entry

pytestmark = pytest.mark.integration  # starts real medfed processes

ROUNDS = 2


def _run(tmp_path: Path, topology: dict[str, object], **job: object) -> Path:
    """The three sites running ``topology`` for ``ROUNDS`` rounds to the end; the kits folder."""
    kits = make_kits(tmp_path, free_port())
    data = make_data(tmp_path, {"hospital_a": 6, "hospital_b": 5, "hospital_c": 5})
    peers = tmp_path / "peers.yaml"
    peers.write_text(yaml.safe_dump({site: f"127.0.0.1:{free_port()}" for site in SITES}))
    settings = {
        "name": "p2p",
        "seed": 5,
        "model": PEER_MODEL,
        "training": {"local_epochs": 1, "batch_size": 4, "lr": 0.01},
        "federation": {"rounds": ROUNDS, "topology": topology},
        "call_timeout_s": 10,
        "finish_timeout_s": 120,
        "wait_for_peers_s": 120,
        **job,
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(settings))
    with processes(tmp_path / "logs") as group:
        running = {site: start_peer(group, kits, tmp_path / "job.yaml", peers, data, site) for site in SITES}
        for site, process in running.items():
            assert process.wait(timeout=300) == 0, group.log(site)
    for site in SITES:
        weights, members = peer_final(kits, site)
        assert members == SITES, group.log(site)
        assert_same_weights(weights, peer_final(kits, "hospital_a")[0])
    return kits


def _chains(kits: Path) -> dict[str, list[Entry]]:
    """Every peer's chain as each site holds it after the run (its own and, replicated over the
    Peer service, a copy of every other's): each state directory verifies on its own and all
    hold the same chains. Its entries by peer."""
    held = {}
    for site in SITES:
        state = peer_state_dir(kits, site)
        verified = CliRunner().invoke(app, ["ledger", "verify", str(state)])
        assert verified.exit_code == 0, (site, verified.output)
        folder = state / "provenance" / "p2p" / "peers"
        held[site] = {owner: (folder / f"{owner}.jsonl").read_bytes() for owner in SITES}
        assert held[site] == held["hospital_a"], site
    return {
        owner: [parse_entry(line) for line in text.splitlines()] for owner, text in held["hospital_a"].items()
    }


def test_cyclic_passes_one_model_in_the_job_s_random_order_with_dp_sgd(tmp_path: Path) -> None:
    privacy = {"epsilon": 50.0, "dp_sgd": {"noise": "fixed", "noise_multiplier": 1.0}}
    kits = _run(tmp_path, {"name": "cyclic", "order": "random"}, privacy=privacy)
    entries = _chains(kits)
    for site, chain in entries.items():  # one training per cycle, no merge: the model travels whole
        assert [(entry.kind, entry.round) for entry in chain] == [("update", 1), ("update", 2)], site
    for site in SITES:  # each DP-SGD training was charged to the site's own budget ledger
        [ledger] = (peer_state_dir(kits, site) / "privacy").glob(f"{site}-*.jsonl")
        releases = load_ledger(ledger).releases
        assert len(releases) == ROUNDS, site


def test_gossip_mixes_each_site_with_its_neighbours_every_round(tmp_path: Path) -> None:
    kits = _run(tmp_path, {"name": "gossip", "graph": "ring"})
    entries = _chains(kits)
    updates = {
        (e.signer, e.round): e.digest for chain in entries.values() for e in chain if e.kind == "update"
    }
    assert sorted(updates) == [(site, round) for site in SITES for round in range(1, ROUNDS + 1)]
    for site, chain in entries.items():
        merges = [entry for entry in chain if entry.kind == "aggregate"]
        assert [merge.round for merge in merges] == list(range(1, ROUNDS + 1)), site
        for merge in merges:  # on a ring of three every site mixes with both others' models of its round
            own, *others = merge.inputs
            assert own == updates[site, merge.round]
            assert sorted(others) == sorted(updates[peer, merge.round] for peer in SITES if peer != site)
