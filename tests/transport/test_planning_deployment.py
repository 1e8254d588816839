"""The study plan over the gRPC deployment: real processes, mutual TLS, fingerprints before
round 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from deploy_procs import (
    SITES,
    client_args,
    free_port,
    make_data,
    make_kits,
    processes,
    server_args,
    write_job,
)

pytestmark = pytest.mark.integration  # starts real medfed processes


def test_sites_send_fingerprints_and_train_with_the_planned_job(tmp_path: Path) -> None:
    port = free_port()
    kits = make_kits(tmp_path, port)
    data = make_data(tmp_path, dict.fromkeys(SITES, 4))
    job = write_job(tmp_path / "job.yaml", federation={"rounds": 1, "min_sites": 3}, preprocessing="auto")
    state = tmp_path / "state"
    with processes(tmp_path / "logs") as group:
        server = group.start("server", *server_args(kits, job, state, port))
        clients = [group.start(site, *client_args(kits, site, data[site], port)) for site in SITES]
        assert server.wait(timeout=300) == 0, group.log("server")
        for site, client in zip(SITES, clients, strict=True):
            assert client.wait(timeout=60) == 0, group.log(site)
            assert "sent this site's fingerprint for the study plan" in group.log(site)
    plan = json.loads((state / "plan.json").read_text())
    assert plan["sites"] == SITES and plan["spacing"] == [1.0, 1.0]  # the 2D slices' in-plane spacing
    assert plan["patch_size"] == [16, 16] and plan["channels"] == 1
    kept = yaml.safe_load((state / "job.yaml").read_text())
    assert kept["preprocessing"]["patch_size"] == [16, 16]
    assert kept["model"]["params"]["out_channels"] == plan["num_classes"]
