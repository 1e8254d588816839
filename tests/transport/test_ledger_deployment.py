"""The provenance ledger of a deployed job: a server and two sites as real processes over mutual
TLS; every site signs its own entries and keeps a copy that matches the server's."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_procs import deploy, processes, site_state_dir, wait_all

from medfed.provenance.verify import recorded_model, verify

pytestmark = pytest.mark.integration  # starts real medfed processes

SITES = ["hospital_a", "hospital_b"]


def test_each_site_signs_its_entries_and_its_copy_matches_the_servers(tmp_path: Path) -> None:
    federation = deploy(
        tmp_path, {"hospital_a": 5, "hospital_b": 4}, federation={"rounds": 2, "min_sites": 2}
    )
    kits, state = federation.kits, federation.state
    with processes(tmp_path / "logs") as group:
        wait_all(group, federation.start_all(group), timeout=180)

    [found] = verify(state)
    entries = found.ledger.entries
    assert [(entry.kind, entry.signer) for entry in entries] == [
        ("update", "hospital_a"),
        ("update", "hospital_b"),
        ("aggregate", "server"),
    ] * 2
    assert recorded_model([found], state / "checkpoints" / "round_0002.safetensors") == entries[-1]
    for site in SITES:
        [copy] = sorted((site_state_dir(kits, site) / "provenance").glob("*/ledger.jsonl"))
        [mine] = verify(copy)
        assert mine.ledger.head() == found.ledger.head()
