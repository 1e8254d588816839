"""Peer-to-peer deployment: ``medfed peer`` sites as real processes over mutual TLS on loopback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from deploy_procs import SITES, free_port, make_data, make_kits, processes, wait_for
from peer_procs import (
    PEER_MODEL,
    assert_same_weights,
    peer_final,
    peer_run_folder,
    peer_state_dir,
    start_peer,
)
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.models import build_model
from medfed.orchestration.site import cpu_weights
from medfed.provision import revoke

pytestmark = pytest.mark.integration  # starts real medfed processes


def _setup(
    tmp_path: Path, *, rounds: int, finish_timeout_s: float, wait_for_peers_s: float = 600
) -> tuple[Path, Path, Path, dict[str, Path]]:
    kits = make_kits(tmp_path, free_port())
    data = make_data(tmp_path, {"hospital_a": 6, "hospital_b": 5, "hospital_c": 5})
    peers = tmp_path / "peers.yaml"
    peers.write_text(yaml.safe_dump({site: f"127.0.0.1:{free_port()}" for site in SITES}))
    job = tmp_path / "job.yaml"
    settings = {
        "name": "p2p",
        "seed": 5,
        "model": PEER_MODEL,
        "training": {"local_epochs": 1, "batch_size": 4, "lr": 0.01},
        "federation": {"rounds": rounds, "topology": "braintorrent"},
        "call_timeout_s": 10,
        "finish_timeout_s": finish_timeout_s,
        "wait_for_peers_s": wait_for_peers_s,
    }
    job.write_text(yaml.safe_dump(settings))
    return kits, job, peers, data


def _merged(log: str) -> list[str]:
    """The ``merged {...}`` part of each round line of a peer's log."""
    return re.findall(r"round \d+: merged (\{.*?\})", log)


def test_a_revoked_peer_is_refused_by_the_others(tmp_path: Path) -> None:
    kits, job, peers, data = _setup(tmp_path, rounds=2, finish_timeout_s=15)
    revoke(kits, "hospital_c")  # refreshes every kit's crl.pem
    with processes(tmp_path / "logs") as group:
        running = [start_peer(group, kits, job, peers, data, site) for site in SITES]
        for site, process in zip(SITES, running, strict=True):
            assert process.wait(timeout=240) == 0, group.log(site)
    for site in ("hospital_a", "hospital_b"):
        log = group.log(site)
        assert "refused a peer" in log and "revoked" in log, log
        assert "peer 'hospital_c' skipped: answer refused" in log and "revoked" in log, log
        assert not any("hospital_c" in merged for merged in _merged(log)), log
        assert peer_final(kits, site)[1] == ["hospital_a", "hospital_b"]
    assert_same_weights(peer_final(kits, "hospital_a")[0], peer_final(kits, "hospital_b")[0])
    assert "it refuses this site" in group.log("hospital_c")
    assert peer_final(kits, "hospital_c")[1] == ["hospital_c"]


def test_an_offline_peer_is_skipped_catches_up_when_restarted_and_all_agree(tmp_path: Path) -> None:
    """Three peers reach one trained consensus, although one of them was killed after its first
    round and restarted once the others had finished their rounds."""
    rounds = 5
    kits, job, peers, data = _setup(tmp_path, rounds=rounds, finish_timeout_s=180)
    with processes(tmp_path / "logs") as group:
        running = {site: start_peer(group, kits, job, peers, data, site) for site in SITES}
        checkpoints = peer_run_folder(kits, "hospital_c") / "checkpoints"
        wait_for(lambda: list(checkpoints.glob("round_*")), timeout=180, what="hospital_c's first round")
        # killed only once the others started their rounds: a peer that never reached hospital_c
        # would wait wait_for_peers_s (600 s here) for it before its first round
        for site in ("hospital_a", "hospital_b"):
            wait_for(lambda site=site: "round 1: " in group.log(site), timeout=180, what=f"{site}'s round 1")
        group.kill(running["hospital_c"])
        for site in ("hospital_a", "hospital_b"):
            wait_for(
                lambda site=site: f"round {rounds}: " in group.log(site), timeout=180, what=f"{site} done"
            )
            wait_for(lambda site=site: "peer 'hospital_c' skipped" in group.log(site), timeout=60)
        running["hospital_c"] = start_peer(group, kits, job, peers, data, "hospital_c")
        for site, process in running.items():
            assert process.wait(timeout=240) == 0, group.log(site)
    restarted = group.log("hospital_c").split("resuming after round", 1)
    assert len(restarted) == 2, group.log("hospital_c")
    assert any(f"'hospital_a': {rounds}" in merged for merged in _merged(restarted[1])), restarted[1]
    for site in SITES:
        weights, members = peer_final(kits, site)
        assert members == SITES
        assert_same_weights(weights, peer_final(kits, "hospital_a")[0])
    initial = cpu_weights(build_model("unet", PEER_MODEL["params"], seed=5))
    assert any(not torch.equal(initial[name], weights[name]) for name in initial)
    # Each peer kept its own chain (hospital_c's continued after its restart) and, fetched over
    # the Peer service, a copy of each other peer's: each state directory verifies on its own,
    # every merge's inputs included, and every copy is its owner's chain.
    for site in SITES:
        state = peer_state_dir(kits, site)
        chains = state / "provenance" / "p2p" / "peers"
        rounds_recorded = {
            json.loads(line)["round"] for line in (chains / f"{site}.jsonl").read_text().splitlines()
        }
        assert rounds_recorded == set(range(1, rounds + 1)), (site, rounds_recorded)
        verified = CliRunner().invoke(app, ["ledger", "verify", str(state)])
        assert verified.exit_code == 0, (site, verified.output)
        assert "every merge's inputs are recorded" in verified.output
        assert "diverged" not in group.log(site) and "chain from" not in group.log(site), group.log(site)
        for owner in SITES:
            owned = peer_state_dir(kits, owner) / "provenance" / "p2p" / "peers" / f"{owner}.jsonl"
            assert (chains / f"{owner}.jsonl").read_bytes() == owned.read_bytes(), (site, owner)


def test_the_others_finish_without_a_peer_that_stays_offline(tmp_path: Path) -> None:
    # hospital_c may die before a slower peer ever reached it: that peer then starts without it
    # after wait_for_peers_s, which must be well inside the bounded wait below
    kits, job, peers, data = _setup(tmp_path, rounds=3, finish_timeout_s=5, wait_for_peers_s=45)
    with processes(tmp_path / "logs") as group:
        running = {site: start_peer(group, kits, job, peers, data, site) for site in SITES}
        checkpoints = peer_run_folder(kits, "hospital_c") / "checkpoints"
        wait_for(lambda: list(checkpoints.glob("round_*")), timeout=180, what="hospital_c's first round")
        group.kill(running.pop("hospital_c"))
        for site, process in running.items():
            assert process.wait(timeout=240) == 0, group.log(site)
    for site in running:
        assert "no final model from peer 'hospital_c'" in group.log(site)
        assert peer_final(kits, site)[1] == ["hospital_a", "hospital_b"]
    assert_same_weights(peer_final(kits, "hospital_a")[0], peer_final(kits, "hospital_b")[0])
