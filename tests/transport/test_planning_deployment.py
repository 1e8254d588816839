"""The study plan over the gRPC deployment: real processes, mutual TLS, fingerprints before
round 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from deploy_procs import SITES, deploy, processes, wait_all

pytestmark = pytest.mark.integration  # starts real medfed processes


def test_sites_send_fingerprints_and_train_with_the_planned_job(tmp_path: Path) -> None:
    federation = deploy(
        tmp_path, dict.fromkeys(SITES, 4), federation={"rounds": 1, "min_sites": 3}, preprocessing="auto"
    )
    state = federation.state
    with processes(tmp_path / "logs") as group:
        wait_all(group, federation.start_all(group), timeout=300, site_timeout=60)
    for site in SITES:
        assert "sent this site's fingerprint for the study plan" in group.log(site)
    plan = json.loads((state / "plan.json").read_text())
    assert plan["sites"] == SITES and plan["spacing"] == [1.0, 1.0]  # the 2D slices' in-plane spacing
    assert plan["patch_size"] == [16, 16] and plan["channels"] == 1
    kept = yaml.safe_load((state / "job.yaml").read_text())
    assert kept["preprocessing"]["patch_size"] == [16, 16]
    assert kept["model"]["params"]["out_channels"] == plan["num_classes"]
