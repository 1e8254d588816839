"""Peer-to-peer deployment: ``medfed peer`` sites as real processes over mutual TLS on loopback."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from deploy_procs import SITES, Processes, free_port, make_data, make_kits, processes, wait_for

from medfed.models import build_model
from medfed.orchestration.checkpoint import load_checkpoint
from medfed.orchestration.site import cpu_weights
from medfed.provision import revoke
from medfed.types import Weights

pytestmark = pytest.mark.integration  # starts real medfed processes

MODEL = {"name": "unet", "params": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}


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
        "model": MODEL,
        "training": {"local_epochs": 1, "batch_size": 4, "lr": 0.01},
        "federation": {"rounds": rounds, "topology": "braintorrent"},
        "call_timeout_s": 10,
        "finish_timeout_s": finish_timeout_s,
        "wait_for_peers_s": wait_for_peers_s,
    }
    job.write_text(yaml.safe_dump(settings))
    return kits, job, peers, data


def _start(
    group: Processes, kits: Path, job: Path, peers: Path, data: dict[str, Path], site: str
) -> subprocess.Popen[bytes]:
    state = kits.parent / "peer-state" / site
    args = ["--kit", str(kits / site), "--job", str(job), "--data", str(data[site]), "--peers", str(peers)]
    return group.start(site, "peer", *args, "--state-dir", str(state))


def _run_folder(kits: Path, site: str) -> Path:
    return kits.parent / "peer-state" / site / "peer" / "p2p"


def _final(kits: Path, site: str) -> tuple[Weights, list[str]]:
    checkpoint = load_checkpoint(_run_folder(kits, site) / "final.safetensors")
    return checkpoint.server.weights, json.loads(checkpoint.metadata["consensus_of"])


def _assert_same(first: Weights, second: Weights) -> None:
    assert sorted(first) == sorted(second)
    for name in first:
        assert torch.equal(first[name], second[name]), name


def _ledger_verify(target: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-c",
        "from medfed.cli.app import main; main()",
        "ledger",
        "verify",
        str(target),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _gathered_chains(kits: Path, into: Path) -> Path:
    """Every peer's own provenance chain, copied into one folder with the signer list."""
    for site in SITES:
        provenance = kits.parent / "peer-state" / site / "provenance"
        shutil.copytree(
            provenance / "p2p" / "peers", into / "provenance" / "p2p" / "peers", dirs_exist_ok=True
        )
        shutil.copyfile(provenance / "signers.json", into / "provenance" / "signers.json")
    return into


def _merged(log: str) -> list[str]:
    """The ``merged {...}`` part of each round line of a peer's log."""
    return re.findall(r"round \d+: merged (\{.*?\})", log)


def test_a_revoked_peer_is_refused_by_the_others(tmp_path: Path) -> None:
    kits, job, peers, data = _setup(tmp_path, rounds=2, finish_timeout_s=15)
    revoke(kits, "hospital_c")  # refreshes every kit's crl.pem
    with processes(tmp_path / "logs") as group:
        running = [_start(group, kits, job, peers, data, site) for site in SITES]
        for site, process in zip(SITES, running, strict=True):
            assert process.wait(timeout=240) == 0, group.log(site)
    for site in ("hospital_a", "hospital_b"):
        log = group.log(site)
        assert "refused a peer" in log and "revoked" in log, log
        assert "peer 'hospital_c' skipped: answer refused" in log and "revoked" in log, log
        assert not any("hospital_c" in merged for merged in _merged(log)), log
        assert _final(kits, site)[1] == ["hospital_a", "hospital_b"]
    _assert_same(_final(kits, "hospital_a")[0], _final(kits, "hospital_b")[0])
    assert "it refuses this site" in group.log("hospital_c")
    assert _final(kits, "hospital_c")[1] == ["hospital_c"]


def test_an_offline_peer_is_skipped_catches_up_when_restarted_and_all_agree(tmp_path: Path) -> None:
    """Three peers reach one trained consensus, although one of them was killed after its first
    round and restarted once the others had finished their rounds."""
    rounds = 5
    kits, job, peers, data = _setup(tmp_path, rounds=rounds, finish_timeout_s=180)
    with processes(tmp_path / "logs") as group:
        running = {site: _start(group, kits, job, peers, data, site) for site in SITES}
        checkpoints = _run_folder(kits, "hospital_c") / "checkpoints"
        wait_for(lambda: list(checkpoints.glob("round_*")), timeout=180, what="hospital_c's first round")
        group.kill(running["hospital_c"])
        for site in ("hospital_a", "hospital_b"):
            wait_for(
                lambda site=site: f"round {rounds}: " in group.log(site), timeout=180, what=f"{site} done"
            )
            wait_for(lambda site=site: "peer 'hospital_c' skipped" in group.log(site), timeout=60)
        running["hospital_c"] = _start(group, kits, job, peers, data, "hospital_c")
        for site, process in running.items():
            assert process.wait(timeout=240) == 0, group.log(site)
    restarted = group.log("hospital_c").split("resuming after round", 1)
    assert len(restarted) == 2, group.log("hospital_c")
    assert any(f"'hospital_a': {rounds}" in merged for merged in _merged(restarted[1])), restarted[1]
    for site in SITES:
        weights, members = _final(kits, site)
        assert members == SITES
        _assert_same(weights, _final(kits, "hospital_a")[0])
    initial = cpu_weights(build_model("unet", MODEL["params"], seed=5))
    assert any(not torch.equal(initial[name], weights[name]) for name in initial)
    # Each peer kept its own chain (hospital_c's continued after its restart); together the
    # chains verify, every merge's inputs included; one peer's alone lacks its peers' updates.
    chains = _gathered_chains(kits, tmp_path / "chains")
    for site in SITES:
        rounds_recorded = {
            json.loads(line)["round"]
            for line in (chains / "provenance" / "p2p" / "peers" / f"{site}.jsonl").read_text().splitlines()
        }
        assert rounds_recorded == set(range(1, rounds + 1)), (site, rounds_recorded)
    verified = _ledger_verify(chains)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "every merge's inputs are recorded" in verified.stdout
    alone = _ledger_verify(kits.parent / "peer-state" / "hospital_a")
    assert alone.returncode == 2 and "in none of the 1 peer chains" in alone.stdout + alone.stderr


def test_the_others_finish_without_a_peer_that_stays_offline(tmp_path: Path) -> None:
    # hospital_c may die before a slower peer ever reached it: that peer then starts without it
    # after wait_for_peers_s, which must be well inside the bounded wait below
    kits, job, peers, data = _setup(tmp_path, rounds=3, finish_timeout_s=5, wait_for_peers_s=45)
    with processes(tmp_path / "logs") as group:
        running = {site: _start(group, kits, job, peers, data, site) for site in SITES}
        checkpoints = _run_folder(kits, "hospital_c") / "checkpoints"
        wait_for(lambda: list(checkpoints.glob("round_*")), timeout=180, what="hospital_c's first round")
        group.kill(running.pop("hospital_c"))
        for site, process in running.items():
            assert process.wait(timeout=240) == 0, group.log(site)
    for site in running:
        assert "no final model from peer 'hospital_c'" in group.log(site)
        assert _final(kits, site)[1] == ["hospital_a", "hospital_b"]
    _assert_same(_final(kits, "hospital_a")[0], _final(kits, "hospital_b")[0])
