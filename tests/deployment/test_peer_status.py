"""``medfed status`` on a ``medfed peer`` site's state folder: rounds, versions, consensus, chains."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.deployment.peer_status import PeerJobStatus, peer_jobs
from medfed.orchestration.checkpoint import Checkpoint, save_checkpoint, save_round
from medfed.topology.peers import PeerState, saved_states
from medfed.types import ServerState

SITES = ["hospital_a", "hospital_b", "hospital_c"]


def _peer_state(state_dir: Path, *, final: bool) -> None:
    """A peer job 'p2p' after two rounds: hospital_a trained twice, hospital_b once; hospital_a
    holds its own chain and a copy of hospital_b's."""
    model = {"w": torch.zeros(2)}
    state = PeerState.start(model, SITES)
    versions = {"hospital_a": 2, "hospital_b": 1, "hospital_c": 0}
    state = replace(state, round=2, trainings=3, versions=versions)
    run = state_dir / "peer" / "p2p"
    save_round(run / "checkpoints", Checkpoint(*saved_states(state, model)), keep_last=None)
    if final:
        metadata = {"consensus_of": json.dumps(SITES[:2])}
        save_checkpoint(run / "final.safetensors", Checkpoint(ServerState(2, model), metadata=metadata))
    chains = state_dir / "provenance" / "p2p" / "peers"
    chains.mkdir(parents=True)
    (chains / "hospital_a.jsonl").write_text("{}\n{}\n{}\n")
    (chains / "hospital_b.jsonl").write_text("{}\n")


def test_a_peer_state_folder_reads_as_rounds_versions_consensus_and_chains(tmp_path: Path) -> None:
    _peer_state(tmp_path, final=True)
    assert peer_jobs(tmp_path) == [
        PeerJobStatus(
            job="p2p",
            rounds_done=2,
            versions={"hospital_a": 2, "hospital_b": 1, "hospital_c": 0},
            consensus_of=["hospital_a", "hospital_b"],
            chain_entries={"hospital_a": 3, "hospital_b": 1},
        )
    ]
    assert peer_jobs(tmp_path / "elsewhere") == []


def test_medfed_status_shows_a_peer_site(tmp_path: Path) -> None:
    _peer_state(tmp_path, final=False)
    result = CliRunner().invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "peer job p2p: 2 rounds done; final consensus of: -" in output
    assert "│ hospital_a │ 2 │ 3 │" in output and "│ hospital_c │ 0 │ - │" in output
