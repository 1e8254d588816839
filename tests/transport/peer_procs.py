"""What the real-process ``medfed peer`` tests share: the tiny model, starting a peer, and
reading its final consensus."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch
from deploy_procs import Processes

from medfed.orchestration.checkpoint import load_checkpoint
from medfed.types import Weights

PEER_MODEL = {"name": "unet", "params": {"channels": [4, 8], "strides": [2], "num_res_units": 0}}
"""A two-level U-Net: a peer's round takes about a second."""


def peer_state_dir(kits: Path, site: str) -> Path:
    """``site``'s ``--state-dir``, next to the kits."""
    return kits.parent / "peer-state" / site


def start_peer(
    group: Processes, kits: Path, job: Path, peers: Path, data: dict[str, Path], site: str
) -> subprocess.Popen[bytes]:
    """``medfed peer`` for ``site`` with its kit, the job, the peer list and its data."""
    args = ["--kit", str(kits / site), "--job", str(job), "--data", str(data[site]), "--peers", str(peers)]
    return group.start(site, "peer", *args, "--state-dir", str(peer_state_dir(kits, site)))


def peer_run_folder(kits: Path, site: str, job: str = "p2p") -> Path:
    """Where ``site`` keeps the checkpoints and final model of ``job``."""
    return peer_state_dir(kits, site) / "peer" / job


def peer_final(kits: Path, site: str) -> tuple[Weights, list[str]]:
    """``site``'s final consensus and the sites it is the consensus of."""
    checkpoint = load_checkpoint(peer_run_folder(kits, site) / "final.safetensors")
    return checkpoint.server.weights, json.loads(checkpoint.metadata["consensus_of"])


def assert_same_weights(first: Weights, second: Weights) -> None:
    """The two models hold the same tensors, bit for bit."""
    assert sorted(first) == sorted(second)
    for name in first:
        assert torch.equal(first[name], second[name]), name
